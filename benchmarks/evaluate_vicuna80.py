"""The real check of `judgeloop evaluate` on vicuna80-human (workflows/evaluate/votes_check.py): the nine
systems ranked by a judgeloop judge against the ranking by all human votes, and corrected with the votes of a
seeded random 20% of the pairs.

    python -m benchmarks.evaluate_vicuna80 [--judge runs/demo/train/merged] [--engine vllm] [--out DIR] [--seeds K]

Writes DIR/votes_check.json (and the evaluation run itself under DIR). `make demo` runs it as its last stage.
``--seeds K`` repeats the 20% draw with seeds 0..K-1 over the same verdicts (scored once) and writes
DIR/votes_check_seeds.json: per seed and on average, the coverage of the all-votes win rates and the
rankings' Kendall tau.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from workflows.evaluate.run import open_judges
from workflows.evaluate.votes_check import check_against_votes, summary_lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--judge", default="helpfulness-separate", help="spec name (its untuned base) or a judge dir")
    p.add_argument("--engine", default="vllm", choices=["transformers", "vllm"])
    p.add_argument("--serve-config")
    p.add_argument("--out", default="runs/evaluate-vicuna80")
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--judge-score", choices=["hard", "soft"], default="soft")
    p.add_argument("--max-prompts", type=int, help="only the first N questions (a smoke figure on a slow machine)")
    p.add_argument("--seeds", type=int, help="repeat the label draw with seeds 0..K-1 (instead of --seed)")
    args = p.parse_args(argv)
    seeds = list(range(args.seeds)) if args.seeds else [args.seed]
    runs = []
    with open_judges([args.judge], args.engine, args.serve_config) as (judge,):
        for seed in seeds:
            result = check_against_votes(
                judge,
                args.out,
                fraction=args.fraction,
                seed=seed,
                n_boot=args.n_boot,
                soft=args.judge_score == "soft",
                max_prompts=args.max_prompts,
                progress=True,
            )
            print("\n".join(summary_lines(result)))
            runs.append(result)
    if len(runs) > 1:
        write_seeds(runs, Path(args.out))
    return 0


def write_seeds(runs: list[dict], out: Path) -> dict:
    keys = ("coverage", "kendall_tau_corrected", "kendall_tau_labelled_only", "median_width_ratio")
    per_seed = [{"seed": r["seed"], **{k: r[k] for k in keys}} for r in runs]
    summary = {
        "judge": runs[0]["judge"],
        "kendall_tau_judge_only": runs[0]["kendall_tau"],
        "label_fraction": runs[0]["label_fraction"],
        "n_labelled": runs[0]["n_labelled"],
        "seeds": len(runs),
        "mean": {k: float(np.mean([x[k] for x in per_seed if x[k] is not None])) for k in keys},
        "covered_pairs": f"{sum(sum(p['covered'] for p in r['pairs']) for r in runs)}/"
        f"{sum(r['n_system_pairs'] for r in runs)}",
        "per_seed": per_seed,
    }
    (out / "votes_check_seeds.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: summary[k] for k in ("seeds", "mean", "covered_pairs")}, indent=2))
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
