"""Human review of live verdicts: `judgeloop review export` and `judgeloop review import`.

Export picks N logged production items of one judge for people to label: a *targeted* share
(swap-inconsistent verdicts first, then the lowest confidence) and a *uniform random* share
drawn from every other item of the window. It writes a Label Studio import file
(``review-tasks.json``, with ``labeling-config.xml`` for the project), the same tasks as CSV
(``review.csv``, a ``label`` column to fill; add ``label_2``... for more reviewers), and
``review-manifest.json``: each task's item, the judge's verdict and its sampling stratum.
The judge's verdict is never shown to reviewers. A CSV cell that a spreadsheet would take for a
formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is written with a
leading ``'`` (OWASP's advice against CSV injection), as is a cell that starts with ``'`` itself; the
import strips exactly that one ``'`` again, so the round trip is lossless. An export never overwrites
an earlier one (its ``review.csv`` may hold a reviewer's labels).

Import reads a Label Studio JSON export or the filled CSV back into canonical labelled items
(labels checked against the spec's label space; every problem named by file, line and field;
nothing is written unless all is well). Each item keeps the judge's verdict and its stratum in
``meta.review``, so the items both train the next candidate and measure the live agreement.

Live agreement (``live_agreement``) is post-stratified, which weights the random share
correctly: the targeted stratum is a census of the hardest items, the random share a uniform
sample of the rest, so each stratum's agreement is weighted by its share of the window's
items (the random share stands for the whole rest of the traffic). The interval is a bootstrap
within each stratum. The random share's own agreement (unbiased for the untargeted traffic) is
reported too.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from data.errors import DataError, Problem
from data.jsonl import read_jsonl, write_jsonl
from data.labels import LabelSpace, aggregate
from data.schema import PROMPT_FIELDS, RESPONSE_FIELDS, TEXT_FIELDS, Item
from data.spec import load_spec
from data.splits import seeded_sample
from eval.bootstrap import GroupBootstrap, interval
from judge.agreement import human_class
from serve.config import LiveConfig
from serve.verdict_log import read_rows

MANIFEST = "review-manifest.json"
TASKS = "review-tasks.json"
CSV_FILE = "review.csv"
LABEL_CONFIG = "labeling-config.xml"
TARGETED, RANDOM = "targeted", "random"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet evaluates (OWASP: CSV injection)
CSV_ESCAPE = "'"


# --- export -------------------------------------------------------------------------------------


def csv_cell(value: str) -> str:
    """A text as a CSV cell no spreadsheet evaluates: a ``'`` before a formula start (and before a
    leading ``'``, so that ``csv_text`` can strip exactly the one it added)."""
    return CSV_ESCAPE + value if value.startswith((*FORMULA_START, CSV_ESCAPE)) else value


def csv_text(cell: str) -> str:
    """The text a ``csv_cell`` was written from (a reviewer's typed label passes unchanged)."""
    return cell[len(CSV_ESCAPE) :] if cell.startswith(CSV_ESCAPE) else cell


def write_review_csv(path: Path, columns: list[str], table: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for d in table:
            writer.writerow({c: csv_cell(str(d.get(c, ""))) for c in columns})


def select(rows: list[dict], n: int, random_share: float, seed: int) -> tuple[list[tuple[dict, str, str]], dict]:
    """(row, stratum, reason) for up to ``n`` distinct items, and each stratum's size in the window."""
    latest: dict[str, dict] = {}
    for r in rows:  # oldest first: the newest verdict of each distinct item wins
        if r["error"] is None and r["verdict"] is not None and r["item"] is not None:
            latest[r["item_hash"]] = r
    pool = list(latest.values())
    n = min(n, len(pool))
    n_random = round(n * random_share)
    # swap-inconsistent first, then the least confident
    ranked = sorted(
        pool,
        key=lambda r: (
            r["consistent"] is not False,
            r["confidence"] if r["confidence"] is not None else 1.0,
            r["item_hash"],
        ),
    )
    targeted = ranked[: n - n_random]
    rest = ranked[n - n_random :]
    drawn = seeded_sample(rest, n_random, seed)  # in rank order
    chosen = [(r, TARGETED, "swap-inconsistent" if r["consistent"] is False else "low confidence") for r in targeted]
    chosen += [(r, RANDOM, "uniform random") for r in drawn]
    return chosen, {TARGETED: len(targeted), RANDOM: len(rest)}


def review_id(row: dict) -> str:
    return f"live-{row['item_hash'][:16]}"


def xml_attr(value: str) -> str:
    """A text as the inside of a double-quoted XML attribute: markup, both quotes and the whitespace that
    attribute normalisation would turn into spaces are character references (a label is shown as written)."""
    return escape(str(value), {'"': "&quot;", "'": "&apos;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def shown_fields(kind: str) -> list[str]:
    """The item texts the labeling interface shows for the item kind (each one a ``$field`` of the task data)."""
    return [*PROMPT_FIELDS, *RESPONSE_FIELDS[kind]]


def label_studio_task(rid: str, item: dict, kind: str) -> dict:
    """One Label Studio task: the review id and the item's texts. Every field the interface shows is present
    (empty when the item has none): Label Studio refuses a task that lacks a ``$field`` of the config."""
    data = {f: "" for f in shown_fields(kind)}
    data.update({f: item[f] for f in TEXT_FIELDS if item.get(f) is not None})
    return {"data": {"review_id": rid, **data}}


def labeling_config(kind: str, labels: Sequence[str]) -> str:
    """A Label Studio labeling interface for the item kind: the texts, one required single choice (every value
    escaped: a spec's label may hold any character)."""
    fields = shown_fields(kind)
    shown = "\n".join(
        f'  <Header value="{xml_attr(f.replace("_", " "))}"/>\n  <Text name="{xml_attr(f)}" value="${xml_attr(f)}"/>'
        for f in fields
    )
    choices = "\n".join(f'    <Choice value="{xml_attr(lab)}"/>' for lab in labels)
    return (
        f'<View>\n{shown}\n  <Choices name="label" toName="instruction" choice="single" required="true">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


def export_paths(out_dir: str | Path) -> dict[str, Path]:
    """Where an export's files go; raises when an earlier export is there (its CSV may hold a reviewer's labels)."""
    out = Path(out_dir)
    paths = {"csv": out / CSV_FILE, "tasks": out / TASKS, "config": out / LABEL_CONFIG, "manifest": out / MANIFEST}
    earlier = [p for p in paths.values() if p.exists()]
    if earlier:  # a filled review.csv is a reviewer's work: never overwrite an export
        raise DataError(
            "an earlier review export is here; not overwriting it",
            path=str(earlier[0]),
            hint="pass --out NEW_DIR, or remove the earlier export after importing its labels",
        )
    return paths


def write_export(paths: dict[str, Path], spec, manifest: dict) -> None:
    """The review files for the manifest's items (``manifest["items"]``: review_id -> entry with the ``item``
    dict): Label Studio tasks and the CSV (the item's texts, never the judge's verdict), the labeling config
    for the spec's kind, and the manifest that ``import_review`` reads back."""
    tasks, table = [], []
    for rid, entry in manifest["items"].items():
        item = entry["item"]
        tasks.append(label_studio_task(rid, item, spec.kind))
        table.append({"review_id": rid, **{f: item[f] for f in TEXT_FIELDS if item.get(f) is not None}})
    paths["manifest"].parent.mkdir(parents=True, exist_ok=True)
    paths["tasks"].write_text(json.dumps(tasks, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    columns = ["review_id", *[f for f in TEXT_FIELDS if any(f in d for d in table)], "label"]
    write_review_csv(paths["csv"], columns, table)
    paths["config"].write_text(labeling_config(spec.kind, spec.labels), encoding="utf-8")
    paths["manifest"].write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def export_review(
    log: str,
    judge: str,
    spec,
    n: int,
    out_dir: str | Path,
    *,
    since: float | None = None,
    until: float | None = None,
    random_share: float = 0.3,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the review tasks (Label Studio JSON, CSV), the labeling config and the manifest (never over an
    earlier export: its CSV may hold a reviewer's labels)."""
    paths = export_paths(out_dir)
    rows = read_rows(log, since=since, until=until, judge=judge, roles=["production"])
    if not rows:
        raise DataError(f"no production verdicts of '{judge}' in the window", path=str(log), field="judge")
    if all(r["item"] is None for r in rows):
        raise DataError(
            "the verdict log holds only item hashes, no item text to review",
            path=str(log),
            hint="the server ran with live.log_items=false",
        )
    chosen, sizes = select(rows, n, random_share, seed)
    export_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    entries = {}
    for row, stratum, reason in chosen:
        entries[review_id(row)] = {
            "stratum": stratum,
            "reason": reason,
            "verdict": row["verdict"],
            "confidence": row["confidence"],
            "consistent": row["consistent"],
            "fingerprint": row["fingerprint"],
            "log_row": row["row"],
            "item_hash": row["item_hash"],
            "item": row["item"],
        }
    manifest = {
        "schema_version": 1,
        "export": export_id,
        "judge": judge,
        "spec": spec.name,
        "kind": spec.kind,
        "labels": list(spec.labels),
        "log": str(log),
        "window": {"since": since, "until": until},
        "population": sum(sizes.values()),
        "strata": sizes,
        "random_share": random_share,
        "seed": seed,
        "estimator": "post-stratified (see workflows/review.py)",
        "items": entries,
    }
    write_export(paths, spec, manifest)
    return paths


# --- import -------------------------------------------------------------------------------------


def _json_line(text: str, rid: str) -> int | None:
    m = re.search(r'"review_id"\s*:\s*' + re.escape(json.dumps(rid)), text)
    return text.count("\n", 0, m.start()) + 1 if m else None


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")  # bytes: a CR inside a quoted CSV cell stays a CR
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start})", path=str(path)) from None


def _choices(ann, where: str, rid: str, path: Path, line, problems: list[Problem]) -> list | None:
    """The ``label`` choices of one Label Studio annotation, or None (a problem recorded) when malformed."""
    if not isinstance(ann, dict):
        problems.append(Problem("an annotation must be an object", str(path), line, where, f"task {rid}"))
        return None
    results = ann.get("result") or []
    if not isinstance(results, list):
        problems.append(Problem("must be a list of results", str(path), line, f"{where}.result", f"task {rid}"))
        return None
    choices = []
    for k, r in enumerate(results):
        if not isinstance(r, dict) or r.get("type") != "choices" or r.get("from_name") != "label":
            continue
        got = r.get("value").get("choices") if isinstance(r.get("value"), dict) else None
        if not isinstance(got, list):
            field = f"{where}.result[{k}].value.choices"
            problems.append(Problem("must be a list of labels", str(path), line, field, f"task {rid}"))
            return None
        choices.extend(got)
    return choices


def read_label_studio(path: Path, space: LabelSpace, problems: list[Problem]) -> dict[str, list]:
    """review_id -> the reviewers' labels, from a Label Studio JSON export (cancelled annotations skipped).

    The export is untrusted: anything that is not the shape Label Studio writes is a located problem.
    """
    text = _read_text(path)
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from None
    if not isinstance(tasks, list):
        raise DataError("expected a Label Studio JSON export (a list of tasks)", path=str(path))
    out: dict[str, list] = {}
    for i, task in enumerate(tasks):
        data = task.get("data") if isinstance(task, dict) else None
        rid = data.get("review_id") if isinstance(data, dict) else None
        if not isinstance(rid, str):
            problems.append(
                Problem(
                    "task has no data.review_id (not exported by `judgeloop review export`?)",
                    str(path),
                    None,
                    f"[{i}].data.review_id",
                )
            )
            continue
        line = _json_line(text, rid)
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list):
            problems.append(Problem("must be a list", str(path), line, f"[{i}].annotations", f"task {rid}"))
            continue
        labels = []
        for j, ann in enumerate(annotations):
            where = f"[{i}].annotations[{j}]"
            if isinstance(ann, dict) and ann.get("was_cancelled"):
                continue
            choices = _choices(ann, where, rid, path, line, problems)
            if choices is None:
                continue
            if len(choices) != 1:
                problems.append(
                    Problem(
                        f"expected one choice, got {len(choices)}", str(path), line, f"{where}.result", f"task {rid}"
                    )
                )
                continue
            try:
                labels.append(space.check(choices[0]))
            except (TypeError, ValueError) as exc:
                problems.append(Problem(str(exc), str(path), line, f"{where}.result", f"task {rid}"))
        out[rid] = labels
    return out


def label_columns(names) -> list[str]:
    return [c for c in names if isinstance(c, str) and (c == "label" or c.startswith("label_"))]


def read_review_table(path: Path):
    """(line, row) for each row of a review CSV, every cell as the text it was written from (``csv_text``)."""
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    try:
        if "review_id" not in (reader.fieldnames or []) or not label_columns(reader.fieldnames or []):
            raise DataError(
                "expected the columns review_id and label (as `judgeloop review export` wrote them)",
                path=str(path),
                line=1,
            )
        for row in reader:
            if not isinstance(row.get("review_id"), str) or None in row:
                raise DataError(
                    "a row with a different number of cells than the header",
                    path=str(path),
                    line=reader.line_num,
                    field="review_id",
                )
            yield reader.line_num, {k: csv_text(v) if isinstance(v, str) else v for k, v in row.items()}
    except csv.Error as exc:
        raise DataError(f"not a readable CSV: {exc}", path=str(path), line=reader.line_num) from None


def read_review_csv(path: Path, space: LabelSpace, problems: list[Problem]) -> dict[str, list]:
    """review_id -> the labels in the ``label``/``label_*`` columns (empty cells are no label)."""
    out: dict[str, list] = {}
    for line, row in read_review_table(path):
        labels = []
        for c in label_columns(row):
            value = (row.get(c) or "").strip()
            if not value:
                continue
            try:
                labels.append(space.check(value))
            except ValueError as exc:
                problems.append(Problem(str(exc), str(path), line, c))
        out[row["review_id"]] = labels
    return out


def import_review(
    path: str | Path, spec, out_path: str | Path, manifest_path: str | Path | None = None
) -> tuple[int, int]:
    """Reviewed labels -> canonical labelled items (``out_path``); returns (items written, tasks without a label)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    manifest_path = Path(manifest_path) if manifest_path else path.parent / MANIFEST
    if not manifest_path.is_file():
        raise DataError(
            "the review manifest is missing",
            path=str(manifest_path),
            hint="`judgeloop review export` wrote it beside the tasks; pass --manifest FILE",
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("spec") != spec.name:
        raise DataError(
            f"the review was exported for spec '{manifest.get('spec')}', not '{spec.name}'",
            path=str(manifest_path),
            field="spec",
        )
    space = spec.label_space
    problems: list[Problem] = []
    reader = read_review_csv if path.suffix.lower() == ".csv" else read_label_studio
    labels_by_id = reader(path, space, problems)
    for rid in labels_by_id:
        if rid not in manifest["items"]:
            problems.append(
                Problem(
                    f"review_id '{rid}' is not in the manifest",
                    str(path),
                    None,
                    "review_id",
                    f"manifest {manifest_path}",
                )
            )
    if problems:
        raise DataError(problems=problems)
    items, unlabelled = [], 0
    for rid, labels in labels_by_id.items():
        if not labels:
            unlabelled += 1
            continue
        entry = manifest["items"][rid]
        meta = dict(entry["item"].get("meta") or {})
        meta["review"] = {
            "export": manifest["export"],
            "judge": manifest["judge"],
            "stratum": entry["stratum"],
            "reason": entry["reason"],
            "stratum_size": manifest["strata"][entry["stratum"]],
            "population": manifest["population"],
            "verdict": entry["verdict"],
            "confidence": entry["confidence"],
            "consistent": entry["consistent"],
            "fingerprint": entry["fingerprint"],
            "item_hash": entry["item_hash"],
        }
        base = {k: v for k, v in entry["item"].items() if k not in ("id", "group", "labels", "label", "meta")}
        items.append(Item(id=rid, group=rid, labels=labels, label=aggregate(spec.kind, labels), meta=meta, **base))
    write_jsonl(out_path, items)
    return len(items), unlabelled


def read_reviewed(path: str | Path) -> list[Item]:
    items = list(read_jsonl(path, Item))
    bad = [it.id for it in items if "review" not in it.meta]
    if bad:
        raise DataError(
            f"item '{bad[0]}' has no meta.review (not from `judgeloop review import`)",
            path=str(path),
            field="meta.review",
        )
    return items


# --- live agreement -----------------------------------------------------------------------------


def live_agreement(items: Sequence[Item], space: LabelSpace, n_boot: int = 1000, seed: int = 0) -> dict:
    """Judge vs reviewers over the window, post-stratified by sampling stratum, with a 95% bootstrap interval."""

    several = len({it.meta["review"]["export"] for it in items}) > 1
    strata: dict[str, dict] = defaultdict(lambda: {"agree": [], "groups": [], "size": 0})
    for it in items:
        r = it.meta["review"]
        human = human_class(it, space)
        if human is None:
            continue  # reviewers split with no majority
        key = f"{r['export']} {r['stratum']}" if several else r["stratum"]
        s = strata[key]
        s["size"] = r["stratum_size"]
        s["agree"].append(float(str(r["verdict"]) == human))
        s["groups"].append(it.group)
    total = sum(s["size"] for s in strata.values())
    if not strata or total == 0:
        return {
            "agreement": None,
            "n_reviewed": 0,
            "strata": {},
            "random_share_agreement": None,
            "estimator": "no reviewed item has a reviewer majority",
        }
    value, reps = 0.0, np.zeros(n_boot)
    for k, s in enumerate(strata.values()):
        agree = np.array(s["agree"])
        w = GroupBootstrap(s["groups"], n_boot, seed + k).weights
        share = s["size"] / total
        value += share * agree.mean()
        with np.errstate(all="ignore"):
            reps += share * (w @ agree) / w.sum(1)
    random_items = [s for key, s in strata.items() if key.endswith(RANDOM)]
    random_agree = [a for s in random_items for a in s["agree"]]
    random_groups = [g for s in random_items for g in s["groups"]]
    return {
        "agreement": interval(value, reps).as_dict(),
        "n_reviewed": sum(len(s["agree"]) for s in strata.values()),
        "strata": {
            key: {"size": s["size"], "n_reviewed": len(s["agree"]), "agreement": float(np.mean(s["agree"]))}
            for key, s in strata.items()
        },
        "random_share_agreement": GroupBootstrap(random_groups, n_boot, seed).mean(random_agree).as_dict()
        if random_agree
        else None,
        "estimator": (
            "post-stratified: each sampling stratum's agreement (judge verdict vs reviewer majority) weighted "
            "by its share of the window's items; the targeted stratum is the hardest items, the uniform random "
            "share stands for all the rest; 95% bootstrap within strata"
        ),
    }


# --- the command --------------------------------------------------------------------------------


def cmd_export(args) -> int:
    """`judgeloop review export` (its flags: workflows/cli.py)."""
    if args.n < 1:
        raise DataError("must be at least 1", field="--n")
    if not 0 <= args.random_share <= 1:
        raise DataError("must be between 0 and 1", field="--random-share")
    spec = load_spec(args.spec or args.judge)
    since = time.time() - args.window_hours * 3600 if args.window_hours else None
    paths = export_review(
        args.log or LiveConfig().url(None),
        args.judge,
        spec,
        args.n,
        args.out,
        since=since,
        random_share=args.random_share,
        seed=args.seed,
    )
    manifest = json.loads(paths["manifest"].read_text())
    strata = defaultdict(int)
    for e in manifest["items"].values():
        strata[e["stratum"]] += 1
    print(
        f"{len(manifest['items'])} items to review ({strata[TARGETED]} targeted, {strata[RANDOM]} uniform random) "
        f"of {manifest['population']} distinct items in the window"
    )
    print(
        f"Label Studio: import {paths['tasks']} with the labeling interface {paths['config']}; or fill the "
        f"'label' column of {paths['csv']}"
    )
    print(f"then: judgeloop review import FILE --spec {spec.name} --out reviewed.jsonl")
    return 0


def cmd_import(args) -> int:
    """`judgeloop review import` (its flags: workflows/cli.py)."""
    spec = load_spec(args.spec)
    n, unlabelled = import_review(args.file, spec, args.out, args.manifest)
    print(f"wrote {n} reviewed items to {args.out}" + (f" ({unlabelled} tasks had no label yet)" if unlabelled else ""))
    return 0
