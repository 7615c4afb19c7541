"""Every criterion at once: `judgeloop train all` and `judgeloop eval all` (their flags: workflows/cli.py).

## train all
Each criterion's CPU config (``--gpu``: the shared GPU recipe with the criterion's overrides) is
trained into ``runs_dir/<criterion>`` exactly as `judgeloop train CONFIG --output_dir=...` would
(each command is printed first); criteria already trained are skipped, so a rerun finishes the
rest. The wall time of each run is recorded in ``RUNS_DIR/train_times.json``. A criterion that stops on
bad input (a dataset that cannot be read, a config error) does not stop the others: each is reported
at the end, and the command exits 2.

## eval all
For each criterion of the registry (``configs/criteria.yaml``): the test split of its datasets
(prepared with its training config's split options), its trained judge (``runs_dir/<criterion>``)
and the untuned base model answering the same spec (the run's own ``spec.yaml``: same prompt and
truncation) are scored through the scoring core on the serving engine; both are validated with
``eval.harness.evaluate`` (the judge paired against the base), the judge is gated with the
criterion's gate config, and each gets its full report (``eval.report.write_report``). The
criteria report (``eval.report.write_criteria_report``) has the summary table and a section per
criterion. A criterion without a trained judge is reported as missing with its train command.
Every judge is served by one engine for the whole run: on vLLM, one server with the base model
and every adapter as a LoRA module (as configs/serve/criteria-cpu.yaml serves them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from data.criteria import CriteriaRegistry, Criterion, load_criteria, repo_path
from data.errors import JudgeloopError, Problem
from data.jsonl import read_jsonl, write_jsonl
from data.paths import CONFIGS_DIR, JUDGE_FILE
from data.schema import Item, Verdict
from data.splits import seeded_groups
from eval.gate import check, load_gates, write_result
from eval.harness import evaluate
from eval.report import criteria_lines, failed_rules, gate_status, write_criteria_report, write_report
from eval.result import ValidationResult
from judge.loading import load_judge
from serve.config import load_serve_config
from serve.service import start_judges
from train.config import load_train_config
from train.data import load_sources
from train.trainer import train

DEFAULT_SERVE_CONFIG = CONFIGS_DIR / "serve" / "criteria-cpu.yaml"
log = logging.getLogger("judgeloop")


def test_items(c: Criterion, max_items: int | None, seed: int, progress=print) -> tuple[list[Item], dict]:
    """The criterion's test items (whole groups, a seeded sample of groups when ``max_items`` is set)
    and the dataset info of the validation result."""

    names = list(c.test or c.datasets)
    opts = load_train_config(repo_path(c.train)).data  # the training run's split seed and prepared folder
    sources = load_sources(names, "test", opts, progress)
    items = seeded_groups([it for s in sources for it in s.items], max_items, seed)
    digest = hashlib.sha256("".join(s.sha256 for s in sources).encode()).hexdigest()
    info = {
        "name": "+".join(s.name if not c.test else Path(s.name).stem for s in sources),
        "split": "test",
        "sha256": digest,
        "sources": {s.name: s.sha256 for s in sources},
        "sampled": None if max_items is None else {"max_items": max_items, "seed": seed},
    }
    return items, info


def _cached(path: Path, items: Sequence[Item], fingerprint: str) -> list[Verdict] | None:
    """Verdicts already scored by this judge for exactly these items (a rerun reuses them)."""
    if not path.exists():
        return None
    done = list(read_jsonl(path, Verdict, unique_ids=False))
    if (
        [v.id for v in done] == [it.id for it in items]
        and done
        and all(v.judge.fingerprint == fingerprint and not v.error for v in done)
    ):
        return done
    return None


def _plan(reg: CriteriaRegistry, chosen: list[Criterion], out: Path, max_items, seed, progress) -> list[dict]:

    plans = []
    for c in chosen:
        plan = {"criterion": c, "out": out / c.name, "missing": not reg.is_trained(c)}
        if plan["missing"]:
            plans.append(plan)
            continue
        run_dir = reg.run_dir(c)
        judge = load_judge(run_dir)
        base_ref = str(run_dir / "spec.yaml")  # the untuned base answering the run's own spec (same prompt)
        base = load_judge(base_ref)
        items, info = test_items(c, max_items, seed, progress)
        plan.update(judge=judge, judge_ref=str(run_dir), base=base, base_ref=base_ref, items=items, dataset=info)
        plan["verdicts"] = {
            role: _cached(out / c.name / role / "verdicts.jsonl", items, j.fingerprint)
            for role, j in (("base", base), ("judge", judge))
        }
        plans.append(plan)
    return plans


def _score(plans: list[dict], engine: str, serve_config: str | Path | None, progress) -> None:
    """Score every plan's items that are not cached yet, with one engine start for all judges."""
    todo = [p for p in plans if not p["missing"] and None in p["verdicts"].values()]
    if not todo:
        return

    cfg = load_serve_config(serve_config or DEFAULT_SERVE_CONFIG, [f"--engine={engine}"])
    base_refs = [p["base_ref"] for p in todo if p["verdicts"]["base"] is None]
    judge_refs = [p["judge_ref"] for p in todo if p["verdicts"]["judge"] is None]
    with start_judges(cfg, judges=base_refs, candidates=judge_refs, progress=progress) as serving:
        by_fingerprint = {s.judge.fingerprint: s for s in serving.services.values()}
        for p in todo:
            for role in ("base", "judge"):
                if p["verdicts"][role] is not None:
                    continue
                service = by_fingerprint[p[role].fingerprint]
                start = time.perf_counter()
                verdicts = list(service.score_stream(p["items"]))
                progress(
                    f"  {p['criterion'].name} {role}: {len(verdicts)} items scored by {service.key} "
                    f"({service.served.served_as}) in {time.perf_counter() - start:.0f} s"
                )
                path = p["out"] / role / "verdicts.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_jsonl(path, verdicts)
                p["verdicts"][role] = verdicts


def _interval(result: ValidationResult, metric: str) -> dict | None:
    """A metric's interval in its JSON form (the summary rows are written as criteria.json)."""
    figure = result.metrics.get(metric)
    return figure.model_dump() if figure else None


def _row(reg: CriteriaRegistry, p: dict, seed: int, n_boot: int, command: str) -> dict:
    """Validate base and judge for one criterion, gate the judge, write its report; the summary row."""

    c = p["criterion"]
    row = {
        "criterion": c.name,
        "spec": c.spec,
        "datasets": list(c.datasets or c.test),
        "gates": c.gates,
        "run_dir": str(reg.run_dir(c)),
        "train_command": reg.train_command(c),
    }
    if p["missing"]:
        return {**row, "status": "missing"}
    gates = load_gates(repo_path(c.gates))
    spec, items = p["judge"].spec, p["items"]
    base = evaluate(
        items,
        p["verdicts"]["base"],
        spec,
        judge_info={"version": "base"},
        dataset_info=p["dataset"],
        seed=seed,
        n_boot=n_boot,
    )
    judge = evaluate(
        items,
        p["verdicts"]["judge"],
        spec,
        judge_info={"version": p["judge"].version},
        dataset_info=p["dataset"],
        incumbent_verdicts=p["verdicts"]["base"],
        incumbent_info={"version": "base"},
        seed=seed,
        n_boot=n_boot,
    )
    judge.gate = check(judge, gates, config_path=c.gates)
    for result in (base, judge):
        result.provenance.commands = [command]
    write_result(p["out"] / "base" / "validation.json", base)
    write_result(p["out"] / "judge" / "validation.json", judge)
    report = write_report(judge, p["out"] / "report")
    ceiling = judge.human_ceiling
    comparison = judge.comparison
    base_ceiling = base.human_ceiling
    return {
        **row,
        "status": "validated",
        "kind": spec.kind,
        "metric": gates.metric,
        "n": judge.n,
        "n_items": judge.n_items,
        "fingerprint": p["judge"].fingerprint,
        "judge": _interval(judge, gates.metric),
        "base": _interval(base, gates.metric),
        "judge_accuracy": _interval(judge, "accuracy"),
        "base_accuracy": _interval(base, "accuracy"),
        "judge_minus_base": comparison.diff.model_dump() if comparison else None,
        "ceiling": None
        if not ceiling
        else {
            "humans": ceiling.metrics["accuracy"].model_dump(),
            "judge": ceiling.judge["accuracy"].model_dump(),
            "fraction": ceiling.judge_to_ceiling,
            "annotators": ceiling.annotators,
            "base": base_ceiling.judge["accuracy"].model_dump()
            if base_ceiling and "accuracy" in base_ceiling.judge
            else None,
        },
        "gate": gate_status(judge),
        "failed_rules": failed_rules(judge),
        "report": str(Path(report["html"]).relative_to(p["out"].parent)),
        "result": judge,
        "base_result": base,
    }


def validate_all(
    reg: CriteriaRegistry,
    names: list[str] | None,
    out: Path,
    *,
    engine: str = "vllm",
    serve_config: str | Path | None = None,
    max_items: int | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    command: str = "judgeloop eval all",
    progress=print,
) -> dict:
    """Validate every chosen criterion; writes OUT/<criterion>/... and the criteria report in OUT."""

    chosen = reg.select(names)
    out.mkdir(parents=True, exist_ok=True)
    plans = _plan(reg, chosen, out, max_items, seed, progress)
    _score(plans, engine, serve_config, progress)
    rows = [_row(reg, p, seed, n_boot, command) for p in plans]
    summary = {
        "criteria": reg.path,
        "runs_dir": reg.runs_dir,
        "engine": engine,
        "max_items": max_items,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "rows": rows,
    }
    paths = write_criteria_report(summary, out)
    summary["paths"] = {k: str(v) for k, v in paths.items()}
    return summary


def cmd_eval_all(args) -> int:
    """`judgeloop eval all`."""
    reg = load_criteria(args.criteria)
    out = Path(args.out) if args.out else Path(reg.runs_dir) / "report"
    names = [n for n in (args.only or "").split(",") if n]
    summary = validate_all(
        reg,
        names or None,
        out,
        engine=args.engine,
        serve_config=args.serve_config,
        max_items=args.max_items,
        seed=args.seed,
        n_boot=args.n_boot,
        command=args.command_line,
        progress=log.info,
    )
    for line in criteria_lines(summary):
        print(line)
    print(f"wrote {summary['paths']['html']}, {summary['paths']['markdown']} and {summary['paths']['json']}")
    return 0


# --- train all ------------------------------------------------------------------------------------


def train_all(
    reg: CriteriaRegistry, names: list[str] | None, *, gpu: bool = False, dry_run: bool = False, progress=print
) -> dict[str, float]:
    """Train every chosen criterion not trained yet; returns criterion -> wall seconds of this call's runs."""
    runs_dir = Path(reg.gpu_runs_dir if gpu else reg.runs_dir)
    times_file = runs_dir / "train_times.json"
    seconds: dict[str, float] = {}
    failed: list[Problem] = []
    for c in reg.select(names):
        args = reg.gpu_train_args(c) if gpu else [c.train, f"--output_dir={reg.run_dir(c)}"]
        out_dir = runs_dir / c.name
        if (out_dir / JUDGE_FILE).exists():
            progress(f"{c.name}: already trained in {out_dir} (skipped)")
            continue
        progress(f"\n{c.name}: $ judgeloop train {shlex.join(args)}")
        if dry_run:
            continue
        start = time.perf_counter()
        try:
            train(load_train_config(repo_path(args[0]), args[1:]), progress=progress)
        except JudgeloopError as exc:
            progress(f"{c.name}: not trained: {exc}")
            failed += [
                Problem(f"criterion '{c.name}' not trained: {p.message}", p.path, p.line, p.field, p.hint)
                for p in exc.problems
            ]
            continue
        seconds[c.name] = round(time.perf_counter() - start, 1)
        times = json.loads(times_file.read_text()) if times_file.exists() else {}
        times[c.name] = {
            "seconds": seconds[c.name],
            "config": args[0],
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        times_file.write_text(json.dumps(times, indent=2) + "\n")
        progress(f"{c.name}: trained in {seconds[c.name] / 60:.1f} min")
    if failed:
        raise JudgeloopError(
            problems=failed
            + [
                Problem(
                    f"{len(seconds)} criteria trained by this call; fix the above and rerun `judgeloop train all` "
                    "(trained criteria are skipped)"
                )
            ]
        )
    return seconds


def cmd_train_all(args) -> int:
    """`judgeloop train all`."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: see train/cli.py
    reg = load_criteria(args.criteria)
    train_all(
        reg,
        [n for n in (args.only or "").split(",") if n] or None,
        gpu=args.gpu,
        dry_run=args.dry_run,
        progress=print if args.dry_run else log.info,  # a dry run's commands are its output
    )
    return 0
