"""Does serving a judge in bfloat16 instead of float32 change what it says? (issue #23: pick the CPU default
from measurement). Scores the same labelled items with the same judge through vLLM in both dtypes and
validates each against the humans:

- verdicts that flip, and the largest change of a probability;
- agreement, ECE, accuracy where people preferred the shorter response and beyond-length (the gate's
  figure) in each dtype, with their 95% intervals, and the paired bfloat16 - float32 agreement difference;
- items/s in each (the same run, side by side).

    python -m benchmarks.dtype_agreement --judge runs/demo/train/merged --items runs/demo/data/test.jsonl

Writes benchmarks/results/dtype_agreement.json (--out to put it elsewhere). Needs a CPU with bf16 math.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from data.jsonl import read_jsonl
from data.schema import Item
from eval.harness import evaluate
from judge.loading import load_judge
from judge.precision import bf16_is_fast
from workflows.validate import verdicts_for

RESULTS = Path(__file__).parent / "results"
DTYPES = ("float32", "bfloat16")


def _iv(iv) -> dict | None:
    return None if iv is None else {"value": iv.value, "ci_low": iv.ci_low, "ci_high": iv.ci_high}


def figures(result) -> dict:
    m = result.metrics["accuracy"]
    lc = result.length_control
    cal = result.calibration
    return {
        "accuracy": {"value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high},
        "ece": {"value": cal.ece, **({"ci": _iv(cal.intervals.ece)} if cal.intervals else {})},
        "acc_shorter_preferred": _iv(lc.intervals.acc_shorter_preferred) if lc else None,
        "beyond_length_gain": _iv(lc.beyond_length.gain) if lc and lc.beyond_length else None,
        "swap_consistency": result.bias.swap_consistency,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--judge", required=True, help="a judge directory (or a spec name: its untuned base)")
    p.add_argument("--items", required=True, help="labelled items (canonical JSONL)")
    p.add_argument("--serve-config")
    p.add_argument("--out", default=str(RESULTS / "dtype_agreement.json"))
    p.add_argument("--n-boot", type=int, default=1000)
    args = p.parse_args(argv)
    if not bf16_is_fast():
        raise SystemExit("this CPU has no bf16 math: nothing to compare")
    items = list(read_jsonl(args.items, Item))
    judge = load_judge(args.judge)
    spec = judge.spec
    verdicts, seconds = {}, {}
    for dtype in DTYPES:
        start = time.perf_counter()
        verdicts[dtype] = verdicts_for(
            args.judge, items, spec, "vllm", args.serve_config, overrides=[f"--vllm.dtype={dtype}"]
        )
        seconds[dtype] = time.perf_counter() - start  # includes vLLM's start, the same for both
    results = {
        dtype: evaluate(
            items,
            verdicts[dtype],
            spec,
            judge_info={"version": dtype},
            incumbent_verdicts=verdicts["float32"] if dtype != "float32" else None,
            incumbent_info={"version": "float32"} if dtype != "float32" else None,
            seed=0,
            n_boot=args.n_boot,
        )
        for dtype in DTYPES
    }
    f32 = {v.id: v for v in verdicts["float32"]}
    flips, max_dp, n = 0, 0.0, 0
    for v in verdicts["bfloat16"]:
        w = f32.get(v.id)
        if w is None or v.error or w.error:
            continue
        n += 1
        flips += v.verdict != w.verdict
        max_dp = max(max_dp, *(abs(v.probs[k] - w.probs[k]) for k in w.probs))
    cmp = results["bfloat16"].comparison
    out = {
        "judge": {"path": args.judge, "fingerprint": judge.fingerprint, "spec": spec.name},
        "items": {"path": args.items, "n": len(items)},
        "engines": {d: verdicts[d][0].judge.engine for d in DTYPES},
        "figures": {d: figures(results[d]) for d in DTYPES},
        "bf16_minus_fp32_accuracy": _iv(cmp.diff) if cmp else None,
        "verdicts_compared": n,
        "verdict_flips": flips,
        "max_probability_change": max_dp,
        "seconds_incl_vllm_start": {d: round(s, 1) for d, s in seconds.items()},
        "measured": time.strftime("%Y-%m-%d"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
