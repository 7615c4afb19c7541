"""The real check of `judgeloop evaluate` on vicuna80-human (workflows/evaluate/votes_check.py): the nine
systems ranked by a judgeloop judge against the ranking by all human votes, and corrected with the votes of a
seeded random 20% of the pairs.

    python -m benchmarks.evaluate_vicuna80 [--judge runs/demo/train/merged] [--engine vllm] [--out DIR]

Writes DIR/votes_check.json (and the evaluation run itself under DIR). `make demo` runs it as its last stage.
"""

from __future__ import annotations

import argparse

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
    args = p.parse_args(argv)
    with open_judges([args.judge], args.engine, args.serve_config) as (judge,):
        result = check_against_votes(
            judge,
            args.out,
            fraction=args.fraction,
            seed=args.seed,
            n_boot=args.n_boot,
            soft=args.judge_score == "soft",
            max_prompts=args.max_prompts,
            progress=True,
        )
    print("\n".join(summary_lines(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
