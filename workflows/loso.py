"""`judgeloop loso`: leave-one-source-out, the figure a recipe is chosen by.

For each pairwise source S of the recipe's ``data.train``: train the recipe on the others (``data.train`` without
S, and ``data.exclude_instructions_of=[S]``, so no instruction S shares with another source is trained on), then score
every item of S (all its splits; a seeded sample of whole groups with ``--max-items``) with the fold's merged judge
through vLLM and validate it with the eval harness, pick-the-longer as a paired reference. One row per source:
the judge's agreement, pick-the-longer's, the judge minus it, the judge's accuracy where people preferred the
shorter response, and beyond-length, each with its group-bootstrap interval; ``loso.json`` (a typed model),
``loso.md`` and each fold's ``validation.json`` and report under OUT/<source>/.

Every fold is one `judgeloop train` command (printed, and in each row), and a rerun reuses finished folds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

from data.dataset_registry import get_dataset, load_reference_verdicts
from data.errors import JudgeloopError
from data.jsonl import read_jsonl
from data.paths import CONFIGS_DIR
from data.provenance import git_commit, library_versions, sha256_file
from data.schema import Item
from data.splits import SPLITS, seeded_groups
from eval.bias import longer_rule_verdicts
from eval.gate import write_result
from eval.harness import evaluate
from eval.report import write_report
from eval.result import Interval, ValidationResult
from judge.loading import load_judge
from train.config import is_file_source, load_train_config
from train.data import prepared_folder
from workflows import steps

log = logging.getLogger("judgeloop")
SCHEMA_VERSION = 1
LONGER = "pick-the-longer"
MIN_ITEMS_FOR_TARGETS = 100  # the quality bar applies to left-out sources with at least this many non-tie items


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FoldPart(_Model):
    part: str = Field(description="a value of the items' meta.source within the left-out source")
    n: int = Field(description="its non-tie items")
    judge: Interval = Field(description="the fold judge's agreement on them")
    longer: Optional[float] = Field(description="pick-the-longer's agreement on those where lengths differ")


class FoldReference(_Model):
    n: int = Field(description="non-tie items it has a verdict for")
    agreement: Interval = Field(description="its agreement with the human aggregate on them")
    judge_minus: Interval = Field(description="paired: the fold judge minus it, on the same items")


class FoldRow(_Model):
    source: str = Field(description="the source left out: trained on by no fold judge, validated here")
    n_items: int = Field(description="items of the source scored")
    n: int = Field(description="items with a human A or B (not a tie): what the agreement figures are over")
    no_verdict: int = Field(description="scored items without a usable verdict")
    truncated: int = Field(description="verdicts whose prompt was cut to fit")
    judge: Interval = Field(description="the fold judge's agreement with the human aggregate")
    longer: Optional[float] = Field(description="pick-the-longer's agreement on the items where lengths differ")
    judge_minus_longer: Optional[Interval] = Field(description="paired: judge minus pick-the-longer, same items")
    shorter_preferred: Optional[Interval] = Field(description="the judge's agreement where people chose the shorter")
    n_shorter_preferred: int
    beyond_length: Optional[Interval] = Field(
        description="nats per item the judge's odds add to a logistic fit of the human choice on the length ratio"
    )
    meets: Optional[bool] = Field(
        description="above pick-the-longer (interval), >= 0.50 where the shorter was preferred, beyond-length lower "
        f"bound > 0; null under {MIN_ITEMS_FOR_TARGETS} non-tie items"
    )
    judge_fingerprint: str
    git_commit: Optional[str] = Field(
        default=None,
        description="the code the fold's judge trained with: its card's commit (HEAD when training started, '+dirty')",
    )
    references: dict[str, FoldReference] = Field(
        default={},
        description="the source's own reference judges (registered with the dataset, e.g. PandaLM-7B for pandalm)",
    )
    parts: list[FoldPart] = Field(
        default=[], description="per part of a source made of several (meta.source), e.g. hhh-alignment's four"
    )
    train_command: str = Field(description="the fold's training, as one command")
    validation: str = Field(description="the fold's validation.json")


class LosoResult(_Model):
    schema_version: int = SCHEMA_VERSION
    created: str
    recipe: str
    recipe_sha256: str
    overrides: list[str] = Field(description="train overrides given to every fold")
    sources: list[str]
    max_items: Optional[int] = Field(description="items per left-out source (whole groups, seeded); null = all")
    rows: list[FoldRow]
    git_commit: Optional[str] = Field(description="HEAD when the run started ('+dirty' with local changes)")
    versions: dict[str, str]
    seconds: float


def fold_overrides(source: str, recipe: Path, out: Path, overrides: Sequence[str]) -> list[str]:
    """The train overrides of the fold that leaves ``source`` out: the recipe's sources (after the user's
    overrides) without it, their caps, shares (data.mix) and dev sources without it, its instructions held out."""
    data = load_train_config(recipe, list(overrides)).data
    train = [s for s in data.train if s != source]
    caps = ", ".join(f"{json.dumps(k)}: {v}" for k, v in data.max_items.items() if k != source)
    mix = {k: v for k, v in data.mix.items() if k != source}
    if all(s in mix for s in train):  # no source left to fill the rest: the fold trains them as they come
        mix = {}
    return [
        *overrides,
        f"--output_dir={out / source / 'train'}",
        f"--data.train=[{','.join(train)}]",
        f"--data.dev=[{','.join(s for s in data.dev if s != source)}]",
        f"--data.max_items={{{caps}}}",
        f"--data.mix={json.dumps(mix)}",
        f"--data.exclude_instructions_of=[{','.join([*data.exclude_instructions_of, source])}]",
    ]


def source_items(source: str, recipe: Path, overrides: Sequence[str], max_items: int | None, seed: int) -> list[Item]:
    """Every item of a left-out source, all its splits (reserved ones excepted), as the recipe prepares them."""
    cfg = load_train_config(recipe, list(overrides))
    folder = prepared_folder(source, cfg.data, log.info)
    items = [it for split in SPLITS for it in read_jsonl(folder / f"{split}.jsonl", Item)]
    return seeded_groups(items, max_items, seed)


def source_references(source: str) -> dict[str, list]:
    """The verdicts of the judges registered with a source (PandaLM's: GPT-3.5 and PandaLM-7B), so a fold judge is
    compared with them on the same items."""
    return {name: list(load_reference_verdicts(source, name)) for name in get_dataset(source).reference_judges}


def _interval(x) -> Interval | None:
    return Interval(value=x.value, ci_low=x.ci_low, ci_high=x.ci_high) if x is not None else None


def fold_row(
    source: str, result: ValidationResult, command: str, validation: Path, commit: str | None = None
) -> FoldRow:
    lc = result.length_control
    ref = result.reference_judges.get(LONGER)
    diff = ref.judge_minus_reference.diff if ref else None
    shorter = lc.intervals.acc_shorter_preferred if lc else None
    beyond = lc.beyond_length.gain if lc and lc.beyond_length else None
    meets = None
    if result.n >= MIN_ITEMS_FOR_TARGETS:
        meets = bool(
            diff is not None
            and (diff.ci_low or 0) > 0
            and shorter is not None
            and (shorter.value or 0) >= 0.5
            and beyond is not None
            and (beyond.ci_low or 0) > 0
        )
    by_part = result.slices.get("source", {})
    longer_by_part = ref.slices.get("source", {}) if ref else {}
    parts = [
        FoldPart(
            part=name,
            n=row.n,
            judge=_interval(row.accuracy),
            longer=longer_by_part[name].accuracy.value if name in longer_by_part else None,
        )
        for name, row in by_part.items()
    ]
    return FoldRow(
        source=source,
        n_items=result.n_items,
        n=result.n,
        no_verdict=result.errors.no_verdict,
        truncated=result.errors.truncated,
        judge=_interval(result.metrics["accuracy"]),
        longer=ref.metrics["accuracy"].value if ref else None,
        judge_minus_longer=_interval(diff),
        shorter_preferred=_interval(shorter),
        n_shorter_preferred=lc.n_shorter_preferred if lc else 0,
        beyond_length=_interval(beyond),
        meets=meets,
        judge_fingerprint=result.judge.fingerprint or "",
        git_commit=commit,
        references={
            name: FoldReference(
                n=r.n,
                agreement=_interval(r.metrics["accuracy"]),
                judge_minus=_interval(r.judge_minus_reference.diff),
            )
            for name, r in result.reference_judges.items()
            if name != LONGER
        },
        parts=parts if len(parts) > 1 else [],
        train_command=command,
        validation=str(validation),
    )


def run_fold(
    source: str,
    recipe: Path,
    out: Path,
    overrides: Sequence[str],
    serve_config: Path,
    max_items: int | None,
    seed: int,
) -> FoldRow:
    fold = fold_overrides(source, recipe, out, overrides)
    command = " ".join(["judgeloop train", str(recipe), *fold])
    log.info(f"fold '{source}': {command}")
    run_dir = steps.train_in_child(recipe, fold)  # a rerun reuses a finished fold: its card says which code trained it
    commit = json.loads((run_dir / "card.json").read_text()).get("git_commit")
    merged = steps.merged(run_dir)
    spec = load_judge(merged).spec
    items = source_items(source, recipe, fold, max_items, seed)
    log.info(f"fold '{source}': scoring {len(items)} items of {source} with {merged}")
    verdicts = steps.score_with_vllm(str(merged), items, out / source / "verdicts.jsonl", serve_config)
    result = evaluate(
        items,
        verdicts,
        spec,
        judge_info={"version": f"loso-{source}"},
        dataset_info={"name": source, "split": "all" if max_items is None else f"sample of {len(items)}"},
        reference_verdicts={LONGER: longer_rule_verdicts(items), **source_references(source)},
        seed=seed,
        n_boot=1000,
    )
    validation = out / source / "validation.json"
    write_result(validation, result)
    write_report(result, out / source / "report")
    return fold_row(source, result, command, validation, commit)


def _fmt(x: Interval | None, sign: str = "") -> str:
    if x is None or x.value is None:
        return "n/a"
    if x.ci_low is None:
        return f"{x.value:{sign}.3f}"
    return f"{x.value:{sign}.3f} [{x.ci_low:{sign}.3f}, {x.ci_high:{sign}.3f}]"


def _parts_table(rows: list[FoldRow]) -> list[str]:
    """The left-out sources made of several parts, part by part (no intervals for pick-the-longer: a rule)."""
    lines = [
        f"| {r.source} | {p.part.replace('|', '/')} | {p.n} | {_fmt(p.judge)} | {_fmt_rate(p.longer)} |"
        for r in rows
        for p in r.parts
    ]
    if not lines:
        return []
    return [
        "Within a left-out source made of several parts (the items' meta.source):",
        "",
        "| left out | part | items (non-tie) | judge | pick-the-longer |",
        "|---|---|---|---|---|",
        *lines,
        "",
    ]


def _references_table(rows: list[FoldRow]) -> list[str]:
    """The left-out sources that come with their own reference judges: the fold judge against each."""
    lines = [
        f"| {r.source} | {name} | {ref.n} | {_fmt(ref.agreement)} | {_fmt(ref.judge_minus, '+')} |"
        for r in rows
        for name, ref in r.references.items()
    ]
    if not lines:
        return []
    return [
        "Against the left-out source's own reference judges, on the items each has a verdict for:",
        "",
        "| left out | reference judge | items (non-tie) | its agreement | judge - it |",
        "|---|---|---|---|---|",
        *lines,
        "",
    ]


def _fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def markdown(result: LosoResult) -> str:
    """loso.md: the table, then how it was made."""
    lines = [
        f"# Leave-one-source-out: {result.recipe}",
        "",
        "| left out | items (non-tie) | no verdict | judge | pick-the-longer | judge - longer | "
        "where the shorter was preferred (n) | beyond length (nats) | meets the bar |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result.rows:
        meets = "n/a" if r.meets is None else ("yes" if r.meets else "no")
        longer = _fmt_rate(r.longer)
        lines.append(
            f"| {r.source} | {r.n_items} ({r.n}) | {r.no_verdict} | {_fmt(r.judge)} | {longer} | "
            f"{_fmt(r.judge_minus_longer, '+')} | {_fmt(r.shorter_preferred)} ({r.n_shorter_preferred}) | "
            f"{_fmt(r.beyond_length, '+')} | {meets} |"
        )
    lines += [
        "",
        "Each row: the recipe trained on every other source (instructions shared with the left-out one dropped), "
        "scored through vLLM on the left-out source; 95% group-bootstrap intervals. The bar: above pick-the-longer "
        "(interval), >= 0.50 where people preferred the shorter response, beyond-length lower bound > 0 "
        f"(sources with >= {MIN_ITEMS_FOR_TARGETS} non-tie items).",
        "",
        *_references_table(result.rows),
        *_parts_table(result.rows),
        f"recipe {result.recipe} (sha256 {result.recipe_sha256[:12]}), overrides {' '.join(result.overrides) or '-'}, "
        f"git {result.git_commit}, {result.seconds / 60:.1f} min. Each fold's command:",
        "",
        *[
            f"- `{r.train_command}`" + (f" (git {r.git_commit})" if r.git_commit != result.git_commit else "")
            for r in result.rows
        ],
        "",
    ]
    return "\n".join(lines)


def run_loso(
    recipe: Path,
    sources: Sequence[str],
    out: Path,
    overrides: Sequence[str] = (),
    serve_config: Path | None = None,
    max_items: int | None = None,
    only: Sequence[str] = (),
    seed: int = 0,
) -> LosoResult:
    cfg = load_train_config(recipe, list(overrides))  # every config error at once, before any fold trains
    registered = [s for s in cfg.data.train if not is_file_source(s)]
    sources = list(sources) or registered
    for name in sources:
        ds = get_dataset(name)  # an unknown name: one line naming the known ones
        if name not in registered:
            raise JudgeloopError(
                f"'{name}' is not a registered dataset in the recipe's data.train ({', '.join(cfg.data.train)})",
                field="--sources",
                hint="each fold trains the recipe's data.train without one of them",
            )
        if ds.kind != "pairwise":
            raise JudgeloopError(f"'{name}' is a {ds.kind} dataset: leave-one-source-out is for pairwise sources")
    if len(cfg.data.train) < 2:
        raise JudgeloopError(
            f"the recipe trains on {', '.join(cfg.data.train)} only: a fold needs the others to train on",
            field="data.train",
            hint="name every source in data.train (--data.train=[a,b,c]); each is left out in turn",
        )
    unknown = [s for s in only if s not in sources]
    if unknown:
        raise JudgeloopError(f"{', '.join(unknown)} not among the sources left out", field="--only")
    started = time.monotonic()
    commit = git_commit()
    rows = []
    for source in [s for s in sources if not only or s in only]:
        rows.append(run_fold(source, recipe, out, overrides, serve_config or _default_serve(), max_items, seed))
        _write(out, recipe, overrides, sources, max_items, rows, started, commit)
    return _write(out, recipe, overrides, sources, max_items, rows, started, commit)


def _default_serve() -> Path:
    return CONFIGS_DIR / "serve" / "cpu.yaml"


def _write(out, recipe, overrides, sources, max_items, rows, started, commit) -> LosoResult:
    """loso.json and loso.md after every fold, so an interrupted run keeps what it finished."""
    result = LosoResult(
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        recipe=str(recipe),
        recipe_sha256=sha256_file(recipe),
        overrides=list(overrides),
        sources=list(sources),
        max_items=max_items,
        rows=rows,
        git_commit=commit,
        versions=library_versions(),
        seconds=round(time.monotonic() - started, 1),
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "loso.json").write_text(json.dumps(result.model_dump(mode="json"), indent=2) + "\n")
    (out / "loso.md").write_text(markdown(result))
    return result


def cmd_loso(args) -> int:
    """`judgeloop loso` (its flags: workflows/cli.py)."""
    sources = [s.strip() for s in (args.sources or "").split(",") if s.strip()]
    only = [s.strip() for s in (args.only or "").split(",") if s.strip()]
    out = Path(args.out)
    result = run_loso(
        Path(args.config),
        sources,
        out,
        args.overrides,
        Path(args.serve_config) if args.serve_config else None,
        args.max_items,
        only,
        args.seed,
    )
    print(markdown(result))
    print(f"wrote {out / 'loso.json'} and {out / 'loso.md'}; each fold's report: {out}/<source>/report/report.html")
    return 0


def schema_text() -> str:
    """docs/schemas/loso.schema.json: loso.json's JSON Schema (a test checks the committed file is current)."""
    schema = LosoResult.model_json_schema()
    schema["$id"] = "https://judgeloop.dev/schemas/loso.schema.json"
    schema["title"] = "judgeloop loso.json"
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":  # python -m workflows.loso --schema
    import sys

    if sys.argv[1:] != ["--schema"]:
        sys.exit("usage: python -m workflows.loso --schema")
    sys.stdout.write(schema_text())
