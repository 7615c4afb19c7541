"""How much `judgeloop evaluate`'s aggregation and correction add to scoring 10,000 verdicts (target < 5%).

Synthetic: 5 systems x 1000 prompts, all pairs (10,000 pairwise items), verdicts already scored,
human labels on a random 10%. Times the estimates (bootstrap, Bradley-Terry, PPI++) and, apart,
the report; compares them with the time the fastest recorded scoring run
(benchmarks/results/scoring.json, judgments/s) needs for the same 10,000 items.

    python -m benchmarks.evaluate_speed [--n-boot 1000]     # writes benchmarks/results/evaluate_speed.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from data.schema import Item, JudgeRef, Verdict
from data.spec import load_spec
from workflows.evaluate import estimators as est
from workflows.evaluate.run import (
    CriterionData,
    JudgeHandle,
    ResponseRow,
    Responses,
    build_items,
    estimate_criterion,
    pairs_for,
)

RESULTS = Path(__file__).parent / "results"


def synthetic(n_prompts: int, systems: list[str]) -> Responses:
    rows = {
        (f"p{p}", s): ResponseRow(prompt_id=f"p{p}", system=s, response=f"{s} {p}", instruction=f"q{p}")
        for p in range(n_prompts)
        for s in systems
    }
    prompts = {f"p{p}": rows[(f"p{p}", systems[0])] for p in range(n_prompts)}
    return Responses("synthetic", rows, prompts, systems, list(prompts))


def fastest_scoring_rate() -> float | None:
    try:
        data = json.loads((RESULTS / "scoring.json").read_text())
    except (OSError, ValueError):
        return None
    rates = []

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "judgments_per_s" and isinstance(v, (int, float)):
                    rates.append(float(v))
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(data)
    return max(rates) if rates else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--prompts", type=int, default=1000)
    p.add_argument("--out", default=str(RESULTS / "evaluate_speed.json"))
    args = p.parse_args(argv)
    systems = [f"s{k}" for k in range(5)]
    resp = synthetic(args.prompts, systems)
    spec = load_spec("helpfulness-pairwise")
    ref = JudgeRef(name="synthetic", fingerprint="0" * 64)
    rng = np.random.default_rng(0)
    items: list[Item] = build_items(resp, "pairwise", pairs_for(systems, "all_pairs", None))
    labels = np.array(["A", "B", "tie"])
    verdicts = {
        it.id: Verdict(id=it.id, verdict=str(rng.choice(labels, p=[0.45, 0.4, 0.15])), judge=ref) for it in items
    }
    human = {it.id: [str(rng.choice(labels))] for it in items if rng.random() < 0.1}
    handle = JudgeHandle("synthetic", spec, ref, lambda batch: [])
    t0 = time.perf_counter()
    weights = est.bootstrap_weights(len(resp.common), args.n_boot, 0)
    res = estimate_criterion(
        CriterionData("helpfulness", handle, "all_pairs", items, verdicts),
        resp,
        human,
        baseline=None,
        soft=False,
        weights=weights,
        alpha=0.05,
    )
    seconds = time.perf_counter() - t0
    rate = fastest_scoring_rate()
    scoring_s = len(items) * 2 / rate if rate else None  # each pairwise item is judged in both orders
    out = {
        "items": len(items),
        "n_boot": args.n_boot,
        "aggregation_and_correction_s": round(seconds, 3),
        "fastest_recorded_judgments_per_s": rate,
        "scoring_s_at_that_rate": round(scoring_s, 1) if scoring_s else None,
        "share_of_scoring": round(seconds / scoring_s, 5) if scoring_s else None,
        "target_share": 0.05,
        "n_pairs": len(res.win_rates),
        "ranking_corrected": res.ranking_correction is not None,
        "includes": "bootstrap over prompts, win rates, Bradley-Terry with intervals, PPI++ per pair, "
        "the corrected ranking (ppboot, n_boot resamples)",
        "measured": time.strftime("%Y-%m-%d"),
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
