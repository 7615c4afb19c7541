"""`judgeloop evaluate`: score the responses of several systems with one or more judges, and turn the
verdicts into an evaluation of the systems (``evaluation.json``).

Steps: read the responses (one line per prompt and system), keep the prompts every system answered,
build the items each judge grades (one per response for pointwise and binary judges; one per pair of
systems and prompt for pairwise judges: each system against the baseline, or all pairs), score them
through the serving path into an append-only verdicts file per judge (a rerun scores only what is
missing), read the optional human labels, and estimate (estimators.py). Bad input stops the run with
one line naming file, line and field (exit 2), before anything already scored could be lost.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data.errors import DataError, JudgeloopError, Problem
from data.jsonl import iter_json_lines, pydantic_problems, read_jsonl, write_jsonl
from data.labels import LabelError, LabelSpace
from data.paths import CONFIGS_DIR, REPO_ROOT
from data.provenance import sha256_file
from data.schema import Item, JudgeRef, Verdict
from data.spec import JudgeSpec
from judge.registry import Registry
from serve.batch import score_file
from serve.config import load_serve_config
from serve.service import start_judges
from workflows.evaluate import estimators as est
from workflows.evaluate.result import (
    TIE_CONVENTION,
    Corrected,
    CorrectedRanking,
    CriterionResult,
    DatasetInfo,
    Evaluation,
    Interval,
    JudgeInfo,
    PairedDifference,
    Provenance,
    RankRow,
    SystemScore,
    WinRate,
)

PROMPT_FIELDS = ("instruction", "input", "context", "reference")
SEP = "::"


# ---------------------------------------------------------------- the responses


class ResponseRow(BaseModel):
    """One system's response to one prompt, with the prompt's fields."""

    model_config = ConfigDict(extra="forbid")

    prompt_id: str = Field(min_length=1)
    system: str = Field(min_length=1)
    response: str
    instruction: str
    input: Optional[str] = None
    context: Optional[str] = None
    reference: Optional[str] = None
    meta: dict = Field(default_factory=dict)


@dataclass
class Responses:
    path: str
    rows: dict[tuple[str, str], ResponseRow]  # (prompt_id, system) -> row
    prompts: dict[str, ResponseRow]  # prompt_id -> the first row (its prompt fields)
    systems: list[str]
    common: list[str]  # prompt ids every system answered, in first-seen order
    missing: dict[str, list[str]] = field(default_factory=dict)

    def sha256(self) -> str:
        return sha256_file(self.path)


def load_responses(path: str | Path) -> Responses:
    """Read and check the responses file: each line names its prompt and system once; a prompt's fields
    are the same on every line; systems missing prompts are named (the run keeps the common prompts)."""
    path = str(path)
    rows: dict[tuple[str, str], ResponseRow] = {}
    first_line: dict[tuple[str, str], int] = {}
    prompts: dict[str, ResponseRow] = {}
    prompt_line: dict[str, int] = {}
    systems: list[str] = []
    for lineno, obj in iter_json_lines(path):
        if isinstance(obj.get("prompt_id"), int) and not isinstance(obj.get("prompt_id"), bool):
            obj["prompt_id"] = str(obj["prompt_id"])
        try:
            row = ResponseRow.model_validate(obj)
        except ValidationError as exc:
            raise DataError(problems=pydantic_problems(exc, path, lineno)) from None
        if SEP in row.prompt_id or SEP in row.system:
            bad = "prompt_id" if SEP in row.prompt_id else "system"
            raise DataError(f"must not contain '{SEP}' (item ids are built with it)", path=path, line=lineno, field=bad)
        key = (row.prompt_id, row.system)
        if key in rows:
            raise DataError(
                f"duplicate response of system '{row.system}' to prompt '{row.prompt_id}' "
                f"(first on line {first_line[key]})",
                path=path,
                line=lineno,
                field="prompt_id",
                hint="keep one response per (prompt_id, system)",
            )
        if row.prompt_id in prompts:
            first = prompts[row.prompt_id]
            for name in PROMPT_FIELDS:
                if getattr(row, name) != getattr(first, name):
                    raise DataError(
                        f"prompt '{row.prompt_id}' has another {name} than on line {prompt_line[row.prompt_id]}",
                        path=path,
                        line=lineno,
                        field=name,
                        hint="the same prompt_id must carry the same prompt fields for every system",
                    )
        else:
            prompts[row.prompt_id] = row
            prompt_line[row.prompt_id] = lineno
        if row.system not in systems:
            systems.append(row.system)
        rows[key] = row
        first_line[key] = lineno
    missing = {s: [p for p in prompts if (p, s) not in rows] for s in systems}
    missing = {s: ps for s, ps in missing.items() if ps}
    common = [p for p in prompts if all((p, s) in rows for s in systems)]
    if not common:
        raise DataError(
            "no prompt was answered by every system, so there is nothing to compare",
            path=path,
            field="prompt_id",
            hint="; ".join(f"{s} lacks {len(ps)} prompt(s)" for s, ps in missing.items()),
        )
    return Responses(path, rows, prompts, systems, common, missing)


# ---------------------------------------------------------------- items for a judge


def _orient(prompt_id: str, x: str, y: str) -> tuple[str, str]:
    """Which system is response_a: fixed by a hash, so about half the pairs put each first."""
    h = hashlib.sha256(f"{prompt_id}{SEP}{x}{SEP}{y}".encode()).digest()[0]
    return (x, y) if h % 2 == 0 else (y, x)


def pair_id(prompt_id: str, x: str, y: str) -> str:
    lo, hi = sorted((x, y))
    return f"{prompt_id}{SEP}{lo}{SEP}{hi}"


def point_id(prompt_id: str, system: str) -> str:
    return f"{prompt_id}{SEP}{system}"


def pairs_for(systems: Sequence[str], mode: str, baseline: str | None) -> list[tuple[str, str]]:
    """(system, opponent) pairs to compare: each system against the baseline, or all pairs."""
    if mode == "baseline":
        return [(s, baseline) for s in systems if s != baseline]
    return [(x, y) for i, x in enumerate(systems) for y in systems[i + 1 :]]


def build_items(resp: Responses, kind: str, pairs: list[tuple[str, str]]) -> list[Item]:
    items = []
    for p in resp.common:
        prompt = resp.prompts[p]
        base = {name: getattr(prompt, name) for name in PROMPT_FIELDS}
        if kind == "pairwise":
            for x, y in pairs:
                a, b = _orient(p, x, y)
                items.append(
                    Item(
                        id=pair_id(p, x, y),
                        group=p,
                        kind="pairwise",
                        response_a=resp.rows[(p, a)].response,
                        response_b=resp.rows[(p, b)].response,
                        meta={"prompt_id": p, "system_a": a, "system_b": b},
                        **base,
                    )
                )
        else:
            for s in resp.systems:
                items.append(
                    Item(
                        id=point_id(p, s),
                        group=p,
                        kind=kind,
                        response=resp.rows[(p, s)].response,
                        meta={"prompt_id": p, "system": s},
                        **base,
                    )
                )
    return items


# ---------------------------------------------------------------- judges and scoring


@dataclass
class JudgeHandle:
    """A judge ready to score: its spec, its reference, and a function scoring a batch of items."""

    name: str
    spec: JudgeSpec
    ref: JudgeRef
    score_batch: Callable[[list[Item]], list[Verdict]]
    version: str | None = None


def verdicts_path(out: Path, judge: JudgeHandle) -> Path:
    return out / "verdicts" / f"{judge.spec.name}-{judge.ref.fingerprint[:12]}.jsonl"


def score(items: list[Item], judge: JudgeHandle, out: Path, progress: bool = False) -> dict[str, Verdict]:
    """Score the items not yet in this judge's verdicts file (append-only, keyed by item id; a rerun
    resumes), then return the verdicts of these items."""
    items_path = out / "items" / f"{judge.spec.name}.jsonl"
    write_jsonl(items_path, items)
    vpath = verdicts_path(out, judge)
    summary = score_file(items_path, vpath, judge.score_batch, judge.ref, progress=progress)
    if summary.scored:
        print(f"{judge.name}: scored {summary.scored} item(s), {summary.skipped} already in {vpath}", file=sys.stderr)
    wanted = {it.id for it in items}
    return {v.id: v for v in read_jsonl(vpath, Verdict) if v.id in wanted}


def judge_handle(service) -> JudgeHandle:
    """A started judge (serve/service.py's JudgeService) as a JudgeHandle."""

    def score_batch(batch: list[Item]) -> list[Verdict]:
        return list(service.score_stream(batch))

    return JudgeHandle(service.key, service.spec, service.ref, score_batch, service.judge.version)


def open_judges(judges: list[str], engine: str, serve_config: str | None, overrides: Sequence[str] = ()):
    """Start the judges through the serving path (serve.service.start_judges); a context manager
    yielding JudgeHandles. ``overrides``: serving config fields (``--vllm.port=N``)."""

    @contextmanager
    def _ctx():
        cfg = load_serve_config(serve_config or CONFIGS_DIR / "serve" / "cpu.yaml", [f"--engine={engine}", *overrides])
        with start_judges(cfg, judges=judges, candidates=[]) as serving:
            yield [judge_handle(svc) for svc in serving.services.values()]

    return _ctx()


# ---------------------------------------------------------------- human labels


@dataclass
class HumanLabels:
    path: str
    by_criterion: dict[str, dict[str, list]]  # criterion -> item id -> labels
    sha256: str = ""


def load_labels(
    paths: str | Path | Sequence[str | Path], criteria: dict[str, tuple[JudgeSpec, set[str]]]
) -> HumanLabels:
    """Human labels of evaluated items, from one or more files: JSONL lines ``{"id", "label" | "labels",
    "criterion"?}`` (the items ``judgeloop review import`` writes are such lines too: their criterion is in
    ``meta.criterion``), or a label sample's Label Studio JSON export or filled CSV (the review manifest
    beside it names the criterion; see labelsample.py).

    ``criteria``: criterion -> (its judge's spec, the ids of its items). Every label must be in the
    criterion's label space and every id one of its items."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: dict[str, dict[str, list]] = {c: {} for c in criteria}
    for path in paths:
        if Path(path).suffix.lower() in (".json", ".csv"):
            _review_labels(str(path), criteria, out)
        else:
            _jsonl_labels(str(path), criteria, out)
    digest = hashlib.sha256("".join(sha256_file(p) for p in paths).encode()).hexdigest() if len(paths) > 1 else ""
    return HumanLabels(", ".join(map(str, paths)), out, digest or sha256_file(paths[0]))


def _review_ids(path: str) -> set[str]:
    """The review_ids of a Label Studio export or review CSV (empty when unreadable: the reader says why)."""
    from workflows import review

    try:
        if path.lower().endswith(".csv"):
            return {row["review_id"] for _, row in review.read_review_table(Path(path))}
        tasks = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        return {t["data"]["review_id"] for t in tasks if isinstance(t.get("data"), dict) and "review_id" in t["data"]}
    except (DataError, ValueError, TypeError, AttributeError, KeyError):
        return set()


def _review_labels(path: str, criteria: dict[str, tuple[JudgeSpec, set[str]]], out: dict) -> None:
    """A label sample's Label Studio export or review CSV, read by the review import (workflows/review.py). Its
    criterion: the one the review manifest beside it names, else the one criterion whose items it labels."""
    from workflows import review

    manifest_path = Path(path).parent / review.MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    crit = (manifest.get("evaluate") or {}).get("criterion")
    if crit is None:
        ids = _review_ids(path)
        fits = [c for c, (_, its) in criteria.items() if ids and ids <= its]
        if len(fits) != 1:
            raise DataError(
                "cannot tell which criterion these labels are for: "
                + ("its tasks are items of several criteria" if fits else "not a label sample of this run"),
                path=path,
                field="review_id",
                hint=f"put it beside the sample's {review.MANIFEST}, or give JSONL lines: id, label|labels, criterion",
            )
        crit = fits[0]
    if crit not in criteria:
        raise DataError(
            f"'{crit}' is not a criterion of this run (it has {', '.join(criteria)})",
            path=str(manifest_path),
            field="evaluate.criterion",
        )
    spec, ids = criteria[crit]
    problems: list = []
    reader = review.read_review_csv if path.lower().endswith(".csv") else review.read_label_studio
    got = reader(Path(path), LabelSpace(spec.kind, spec.labels), problems)
    for rid in got:
        if rid not in ids:
            problems.append(Problem(f"item '{rid}' is not in this run's items of '{crit}'", path, None, "review_id"))
    if problems:
        raise DataError(problems=problems)
    for rid, labels in got.items():
        if labels:
            out[crit].setdefault(rid, []).extend(labels)


def _jsonl_labels(path: str, criteria: dict[str, tuple[JudgeSpec, set[str]]], out: dict) -> None:
    for lineno, obj in iter_json_lines(path):
        reviewed = isinstance(obj.get("meta"), dict) and "review" in obj["meta"]  # from `judgeloop review import`
        crit = obj.get("criterion") or (obj["meta"].get("criterion") if reviewed else None)
        if crit is None:
            if len(criteria) != 1:
                raise DataError(
                    f"is missing: this run has several criteria ({', '.join(criteria)})",
                    path=path,
                    line=lineno,
                    field="criterion",
                )
            crit = next(iter(criteria))
        if crit not in criteria:
            raise DataError(
                f"'{crit}' is not a criterion of this run (it has {', '.join(criteria)})",
                path=path,
                line=lineno,
                field="criterion",
            )
        spec, ids = criteria[crit]
        item_id = obj.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise DataError("is missing or not a string", path=path, line=lineno, field="id")
        if item_id not in ids:
            raise DataError(
                f"item '{item_id}' is not in this run's items of '{crit}'",
                path=path,
                line=lineno,
                field="id",
                hint=f"ids look like {next(iter(sorted(ids)))}",
            )
        unknown = set(obj) - {"id", "label", "labels", "criterion", "annotator", "meta"}
        if unknown and not reviewed:
            raise DataError("is not a known field", path=path, line=lineno, field=sorted(unknown)[0])
        raw = obj.get("labels", [obj["label"]] if "label" in obj else None)
        if not isinstance(raw, list) or not raw:
            raise DataError(
                "is missing: give 'label' or a non-empty 'labels' list", path=path, line=lineno, field="label"
            )
        space = LabelSpace(spec.kind, spec.labels)
        checked = []
        for k, value in enumerate(raw):
            if value is None:
                continue
            try:
                checked.append(space.check(value))
            except LabelError as exc:
                where = "labels" if "labels" in obj else "label"
                raise DataError(
                    f"{exc.first.message} (the judge '{spec.name}' of '{crit}' has labels {spec.labels})",
                    path=path,
                    line=lineno,
                    field=f"{where}[{k}]" if where == "labels" else where,
                ) from None
        if checked:
            out[crit].setdefault(item_id, []).extend(checked)


# ---------------------------------------------------------------- values per item


def pair_outcome(label, system: str, item: Item) -> float:
    """The outcome from ``system``'s side of a pairwise label in the item's A/B terms."""
    if label == "tie":
        return 0.5
    winner = item.meta["system_a"] if label == "A" else item.meta["system_b"]
    return 1.0 if winner == system else 0.0


def judge_value(v: Verdict | None, item: Item, kind: str, system: str | None, soft: bool) -> float:
    if v is None or v.error or v.verdict is None:
        return math.nan
    if kind == "pairwise":
        if soft and v.probs:
            mine = "A" if item.meta["system_a"] == system else "B"
            return v.probs.get(mine, 0.0) + 0.5 * v.probs.get("tie", 0.0)
        return pair_outcome(v.verdict, system, item)
    if kind == "binary":
        if soft and v.probs:
            return float(v.probs.get("yes", 0.0))
        return 1.0 if str(v.verdict).lower() == "yes" else 0.0
    if soft and v.score is not None:
        return float(v.score)
    return float(v.verdict)


def human_value(labels: list, item: Item, kind: str, system: str | None) -> float:
    if kind == "pairwise":
        return float(np.mean([pair_outcome(lab, system, item) for lab in labels]))
    if kind == "binary":
        return float(np.mean([1.0 if str(lab).lower() == "yes" else 0.0 for lab in labels]))
    return float(np.mean([float(lab) for lab in labels]))


# ---------------------------------------------------------------- estimation


def _iv(d: dict | est.Interval | None) -> Interval | None:
    if d is None:
        return None
    d = d.as_dict() if isinstance(d, est.Interval) else d

    def clean(x):
        return None if x is None or not math.isfinite(x) else float(x)

    return Interval(estimate=clean(d["estimate"]), lo=clean(d["lo"]), hi=clean(d["hi"]), n=int(d["n"]))


def value_bounds(spec: JudgeSpec) -> tuple[float, float] | None:
    """The range a figure of this judge's values can take: [0, 1] for win and pass rates, the score scale's."""
    if spec.kind != "pointwise":
        return (0.0, 1.0)
    try:
        scores = [float(x) for x in spec.labels]
    except (TypeError, ValueError):
        return None
    return (min(scores), max(scores))


def _correction(
    human: dict[str, list],
    items: list[Item],
    judge_vals: np.ndarray,
    spec: JudgeSpec,
    system: str | None,
    alpha: float,
) -> Corrected | None:
    """PPI++ over these items (one system's, or one pair's) from the labelled ones among them."""
    labelled = [i for i, it in enumerate(items) if it.id in human and not math.isnan(judge_vals[i])]
    if not labelled:
        return None
    lab = set(labelled)
    kind = spec.kind
    y = np.array([human_value(human[items[i].id], items[i], kind, system) for i in labelled])
    f = judge_vals[labelled]
    fu = np.array([judge_vals[i] for i in range(len(items)) if i not in lab and not math.isnan(judge_vals[i])])
    out = est.ppi_mean(y, f, fu, alpha, bounds=value_bounds(spec))
    return Corrected(
        corrected=_iv(out["corrected"]),
        human=_iv(out["human"]),
        n_labelled=out["n_labelled"],
        n_effective=out.get("n_effective"),
    )


@dataclass
class CriterionData:
    """What the estimates of one criterion are computed from (also what history keeps per prompt)."""

    criterion: str
    judge: JudgeHandle
    mode: str  # pointwise | baseline | all_pairs
    items: list[Item]
    verdicts: dict[str, Verdict]
    per_prompt: dict[str, dict[str, float]] = field(default_factory=dict)  # series -> prompt -> value


def estimate_criterion(
    data: CriterionData,
    resp: Responses,
    human: dict[str, list] | None,
    *,
    baseline: str | None,
    soft: bool,
    weights: np.ndarray,
    alpha: float,
) -> CriterionResult:
    spec = data.judge.spec
    kind = spec.kind
    prompts = resp.common
    pidx = {p: k for k, p in enumerate(prompts)}
    systems = resp.systems
    errors = sum(1 for it in data.items if (v := data.verdicts.get(it.id)) is None or v.error)
    common = dict(
        criterion=data.criterion,
        judge=JudgeInfo(
            name=data.judge.name,
            spec=spec.name,
            kind=kind,
            labels=list(spec.labels),
            fingerprint=data.judge.ref.fingerprint,
            version=data.judge.version,
        ),
        n_prompts=len(prompts),
        n_verdict_errors=errors,
    )
    if kind != "pairwise":
        by_sys: dict[str, list[Item]] = {s: [] for s in systems}
        for it in data.items:
            by_sys[it.meta["system"]].append(it)
        mat = np.full((len(systems), len(prompts)), np.nan)
        rows = []
        for si, s in enumerate(systems):
            its = by_sys[s]
            vals = np.array([judge_value(data.verdicts.get(it.id), it, kind, s, soft) for it in its])
            for it, x in zip(its, vals):
                mat[si, pidx[it.meta["prompt_id"]]] = x
            data.per_prompt[s] = {p: float(mat[si, k]) for p, k in pidx.items() if not math.isnan(mat[si, k])}
            rows.append((s, its, vals))
        ivs = est.mean_intervals(mat, weights, alpha)
        scores = [
            SystemScore(
                system=s,
                judge=_iv(iv),
                correction=_correction(human, its, vals, spec, s, alpha) if human else None,
            )
            for (s, its, vals), iv in zip(rows, ivs)
        ]
        diffs = [PairedDifference.model_validate(d) for d in est.paired_differences(mat, weights, systems, alpha)]
        for d in diffs:
            d.difference = _iv(d.difference.model_dump())
        return CriterionResult(
            metric="pass_rate" if kind == "binary" else "mean_score",
            mode="pointwise",
            systems=scores,
            paired_differences=diffs,
            **common,
        )

    pairs = pairs_for(systems, data.mode, baseline)
    by_pair = {pair_id("", x, y): [] for x, y in pairs}
    for it in data.items:
        by_pair[SEP + SEP.join(sorted((it.meta["system_a"], it.meta["system_b"])))].append(it)
    k = len(systems)
    sidx = {s: i for i, s in enumerate(systems)}
    outcomes = np.full((k, k, len(prompts)), np.nan)
    wins_rows, mats, metas = [], [], []
    for x, y in pairs:
        its = by_pair[pair_id("", x, y)]
        vals = np.array([judge_value(data.verdicts.get(it.id), it, kind, x, soft) for it in its])
        hard = np.array([judge_value(data.verdicts.get(it.id), it, kind, x, False) for it in its])
        row = np.full(len(prompts), np.nan)
        for it, val in zip(its, vals):
            row[pidx[it.meta["prompt_id"]]] = val
        i, j = sidx[x], sidx[y]
        if i < j:
            outcomes[i, j] = row
        else:
            outcomes[j, i] = 1 - row
        data.per_prompt[f"{x} vs {y}"] = {p: float(row[q]) for p, q in pidx.items() if not math.isnan(row[q])}
        mats.append(row)
        metas.append((x, y, its, vals, hard))
    ivs = est.mean_intervals(np.stack(mats), weights, alpha) if mats else []
    for (x, y, its, vals, hard), iv in zip(metas, ivs):
        counts = est.outcome_counts(hard)
        wins_rows.append(
            WinRate(
                system=x,
                opponent=y,
                judge=_iv(iv),
                wins=counts["wins"],
                ties=counts["ties"],
                losses=counts["losses"],
                tie_rate=None if not counts["n"] else counts["tie_rate"],
                correction=_correction(human, its, vals, spec, x, alpha) if human else None,
            )
        )
    ranking, correction = [], None
    if k >= 3:
        anchor = baseline if data.mode == "baseline" else None
        ranking = _rank_rows(est.bradley_terry_intervals(outcomes, weights, systems, anchor=anchor, alpha=alpha))
        if human:
            correction = _ranking_correction(human, metas, systems, anchor, alpha, weights.shape[0], kind)
    return CriterionResult(
        metric="win_rate",
        mode=data.mode,
        win_rates=wins_rows,
        ranking=ranking,
        ranking_correction=correction,
        **common,
    )


def _rank_rows(rows: list[dict]) -> list[RankRow]:
    """The estimators' ranking dicts as the result's rows."""
    return [
        RankRow(
            system=r["system"],
            strength=_iv(r["strength"]),
            rank=r["rank"],
            rank_lo=r["rank_lo"],
            rank_hi=r["rank_hi"],
        )
        for r in rows
    ]


def _ranking_correction(
    human: dict[str, list], metas: list, systems: list[str], anchor: str | None, alpha: float, n_boot: int, kind: str
) -> CorrectedRanking | None:
    """The Bradley-Terry ranking corrected with the labelled items of every compared pair."""
    sidx = {s: i for i, s in enumerate(systems)}
    lab_pairs, ys, fs, unl_pairs, fus = [], [], [], [], []
    for x, y, its, vals, _hard in metas:
        for it, val in zip(its, vals):
            if math.isnan(val):
                continue
            if it.id in human:
                lab_pairs.append((sidx[x], sidx[y]))
                ys.append(human_value(human[it.id], it, kind, x))
                fs.append(val)
            else:
                unl_pairs.append((sidx[x], sidx[y]))
                fus.append(val)
    out = est.ppi_bradley_terry(
        np.array(lab_pairs),
        np.array(ys),
        np.array(fs),
        np.array(unl_pairs),
        np.array(fus),
        systems,
        anchor=anchor,
        alpha=alpha,
        n_resamples=n_boot,
    )
    if out["corrected"] is None:
        return None
    return CorrectedRanking(
        corrected=_rank_rows(out["corrected"]),
        human=_rank_rows(out["human"]),
        n_labelled=out["n_labelled"],
        n_effective=out["n_effective"],
        lam=out["lam"],
    )


# ---------------------------------------------------------------- the whole run


@dataclass
class RunOptions:
    baseline: str | None = None
    all_pairs: bool = False
    labels: str | list[str] | None = None
    label_sample: int | None = None
    soft: bool = False
    seed: int = 0
    n_boot: int = 1000
    alpha: float = 0.05
    command: str | None = None
    registry: str | None = None


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def check_options(resp: Responses, opts: RunOptions, kinds: Sequence[str]) -> str:
    """The pairwise mode, after checking the baseline; raises on an unknown baseline or too few systems."""
    if opts.baseline is not None and opts.baseline not in resp.systems:
        raise JudgeloopError(
            f"unknown baseline system '{opts.baseline}': {resp.path} has {', '.join(resp.systems)}",
            field="--baseline",
        )
    if "pairwise" in kinds:
        if len(resp.systems) < 2:
            raise JudgeloopError(
                f"a pairwise judge compares systems, and {resp.path} has only '{resp.systems[0]}'",
                field="--judge",
            )
        if opts.baseline is None and not opts.all_pairs:
            raise JudgeloopError(
                "a pairwise judge needs --baseline SYSTEM (each system against it) or --all-pairs (a ranking)",
                field="--baseline",
            )
    return "all_pairs" if opts.all_pairs else "baseline"


def validated_on(fingerprint: str | None, registry: str | None) -> str | None:
    """The human data a registered judge was validated on (its newest attached validation), if any."""
    if not fingerprint:
        return None
    try:
        entry = Registry(registry).find_fingerprint(fingerprint)
    except (JudgeloopError, OSError, ValueError, KeyError):
        return None
    if not entry or not entry.get("validations"):
        return None
    v = entry["validations"][-1]
    ds = v.get("dataset") or {}
    fig = v.get("value")
    name = f"{ds.get('name') or '?'} ({ds.get('split') or '?'})"
    return name + (f": {v.get('metric')} {fig:.3f}" if isinstance(fig, (int, float)) else "")


def notice_for(corrected: bool, criteria: list[CriterionResult], labels: HumanLabels | None) -> str:
    if corrected:
        n = sum(len(v) for v in labels.by_criterion.values()) if labels else 0
        return (
            f"Corrected for the judge's errors with {n} human-labelled item(s) (PPI++). The judge-only figures "
            "stand beside the corrected ones for comparison; read the corrected ones."
        )
    where = "; ".join(f"{c.judge.name}: {c.judge.validated_on or 'no validation on record'}" for c in criteria)
    return (
        "NOT CORRECTED: these figures are the judge's estimates, not the truth. No human labels of these "
        f"responses were given, so the judge's own errors are not accounted for. Judges validated on: {where}. "
        "Label a random subset (judgeloop evaluate --label-sample N, then --labels FILE) to correct them."
    )


def evaluate_run(
    responses: str | Path | Responses,
    judges: list[JudgeHandle],
    out: str | Path,
    opts: RunOptions,
    *,
    progress: bool = False,
) -> tuple[Evaluation, list[CriterionData]]:
    """The workflow up to ``evaluation.json`` (written to OUT); returns it and the per-criterion data."""
    out = Path(out)
    resp = responses if isinstance(responses, Responses) else load_responses(responses)
    mode = check_options(resp, opts, [j.spec.kind for j in judges])
    warnings = []
    for s, ps in resp.missing.items():
        shown = ", ".join(ps[:10]) + (f" and {len(ps) - 10} more" if len(ps) > 10 else "")
        warnings.append(
            f"system '{s}' lacks {len(ps)} prompt(s) ({shown}): every system is evaluated on the "
            f"{len(resp.common)} prompts all of them answered"
        )
    names = [j.spec.name for j in judges]
    crit_names = [j.spec.name if names.count(j.spec.name) == 1 else j.name for j in judges]
    # every item of every criterion first, so the labels file is checked before any scoring
    plans = []
    for crit, judge in zip(crit_names, judges):
        kind = judge.spec.kind
        cmode = "pointwise" if kind != "pairwise" else mode
        items = build_items(resp, kind, pairs_for(resp.systems, cmode, opts.baseline) if kind == "pairwise" else [])
        plans.append((crit, judge, cmode, items))
    labels = None
    if opts.labels:
        labels = load_labels(opts.labels, {c: (j.spec, {it.id for it in its}) for c, j, _, its in plans})
    if opts.label_sample:
        from workflows.evaluate import labelsample  # it builds on this module

        labelsample.check_earlier(out, crit_names, opts.label_sample, opts.seed)  # before anything is scored
    datas = []
    for crit, judge, cmode, items in plans:
        verdicts = score(items, judge, out, progress=progress)
        datas.append(CriterionData(crit, judge, cmode, items, verdicts))
    if opts.label_sample:
        for line in labelsample.export_label_sample(datas, out, opts.label_sample, opts.seed, resp.sha256()):
            print(line)
    weights = est.bootstrap_weights(len(resp.common), opts.n_boot, opts.seed)
    results = []
    for data in datas:
        human = labels.by_criterion.get(data.criterion) if labels else None
        res = estimate_criterion(
            data, resp, human or None, baseline=opts.baseline, soft=opts.soft, weights=weights, alpha=opts.alpha
        )
        res.judge.validated_on = validated_on(data.judge.ref.fingerprint, opts.registry)
        if res.n_verdict_errors:
            warnings.append(
                f"{data.criterion}: {res.n_verdict_errors} item(s) have no verdict (errors in "
                f"{verdicts_path(out, data.judge)}); they are left out of the figures"
            )
        results.append(res)
    corrected = bool(labels and any(labels.by_criterion.values()))
    now = datetime.now(timezone.utc)
    run_id = (
        now.strftime("%Y%m%dT%H%M%S") + "-" + hashlib.sha256(f"{now.isoformat()}{resp.path}".encode()).hexdigest()[:6]
    )
    evaluation = Evaluation(
        run_id=run_id,
        corrected=corrected,
        notice=notice_for(corrected, results, labels),
        conventions=[
            TIE_CONVENTION,
            f"95% intervals from {opts.n_boot} bootstrap replicates over prompts (seed {opts.seed}); the same "
            "replicates for every system, so differences are paired",
            "corrected = PPI++ (ppi-python ppi_mean_ci, power-tuned lambda): the judge on the unlabelled items plus "
            "a rectifier from the labelled ones; human = the labelled items alone; n_effective = "
            "n_labelled * var(human) / var(corrected)",
            "judge figures use the judge's " + ("probabilities (expected outcome)" if opts.soft else "verdicts"),
            "ranking: Bradley-Terry strengths (choix), a tie counting half a win to each side",
        ],
        baseline=opts.baseline,
        dataset=DatasetInfo(
            path=str(resp.path),
            sha256=resp.sha256(),
            systems=resp.systems,
            n_prompts=len(resp.prompts),
            n_common=len(resp.common),
            missing=resp.missing,
        ),
        criteria=results,
        labels=(
            {"path": labels.path, "sha256": labels.sha256, "items": {c: len(v) for c, v in labels.by_criterion.items()}}
            if labels
            else None
        ),
        warnings=warnings,
        provenance=Provenance(
            command=opts.command,
            git_commit=git_commit(),
            created_at=now.isoformat(timespec="seconds"),
            seed=opts.seed,
            n_boot=opts.n_boot,
            alpha=opts.alpha,
        ),
    )
    evaluation.write(out / "evaluation.json")
    return evaluation, datas
