"""`judgeloop train --all`: train the judge of every criterion in the criteria registry, one at a time.

Each criterion's CPU config (``--gpu``: the shared GPU recipe with the criterion's overrides) is
trained into ``runs_dir/<criterion>`` exactly as `judgeloop train CONFIG --output_dir=...` would
(each command is printed first); criteria already trained are skipped, so a rerun finishes the
rest. The wall time of each run is recorded in ``RUNS_DIR/train_times.json``. A criterion that stops on
bad input (a dataset that cannot be read, a config error) does not stop the others: each is reported
at the end, and the command exits 2.
"""
from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

from data.criteria import CriteriaRegistry, load_criteria, repo_path
from data.errors import JudgeloopError, Problem
from serve.judge import JUDGE_FILE


def train_all(reg: CriteriaRegistry, names: list[str] | None, *, gpu: bool = False, dry_run: bool = False,
              progress=print) -> dict[str, float]:
    """Train every chosen criterion not trained yet; returns criterion -> wall seconds of this call's runs."""
    from train.config import load_train_config
    from train.trainer import train

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
            train(load_train_config(repo_path(args[0]), args[1:]))
        except JudgeloopError as exc:
            progress(f"{c.name}: not trained: {exc}")
            failed += [Problem(f"criterion '{c.name}' not trained: {p.message}", p.path, p.line, p.field, p.hint)
                       for p in exc.problems]
            continue
        seconds[c.name] = round(time.perf_counter() - start, 1)
        times = json.loads(times_file.read_text()) if times_file.exists() else {}
        times[c.name] = {"seconds": seconds[c.name], "config": args[0],
                         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        times_file.write_text(json.dumps(times, indent=2) + "\n")
        progress(f"{c.name}: trained in {seconds[c.name] / 60:.1f} min")
    if failed:
        raise JudgeloopError(problems=failed + [Problem(
            f"{len(seconds)} criteria trained by this call; fix the above and rerun `judgeloop train --all` "
            "(trained criteria are skipped)")])
    return seconds


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="judgeloop train --all", description=__doc__.split("\n\n")[0])
    p.add_argument("--all", action="store_true", required=True, help="every criterion of the registry")
    p.add_argument("--criteria", help="criteria registry (default configs/criteria.yaml)")
    p.add_argument("--only", help="comma-separated criteria (default: all)")
    p.add_argument("--gpu", action="store_true", help="the shared GPU recipe (gpu_train) instead of the CPU configs")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = p.parse_args(argv)
    reg = load_criteria(args.criteria)
    train_all(reg, [n for n in (args.only or "").split(",") if n] or None, gpu=args.gpu, dry_run=args.dry_run)
    return 0
