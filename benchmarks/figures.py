"""What the scoring benchmarks report per system and per item set, and the targets the CPU run is checked against.

Shared by benchmarks/scoring.py (vLLM on a CPU box) and benchmarks/gpu_scoring.py (the in-process backend on a
GPU, where neither vLLM nor the judge API is installed): this module imports neither.
"""

from __future__ import annotations

from benchmarks.common import PEAK_KEY, percentile_ms
from data.render import render
from judge.agreement import headline

# vllm_merged's judgments/s on 200 PandaLM test pairs in the committed run (2026-11-29, float32; NOTES.md)
BASELINE_JUDGMENTS_PER_S = 5.8
# issue #23 on the 2-core box: share of the bf16 matmul peak (both sets), speed-up over the baseline on
# PandaLM, the judge API's cost over vLLM direct (both sets)
TARGET_PEAK_SHARE = 0.70
TARGET_SPEEDUP = 1.8
TARGET_API_OVERHEAD = 0.05


def prompt_tokens(spec, items: list, tokenizer) -> list[int]:
    """Each item's prompt tokens over both orders, as the judge renders them (its budget's truncation included)."""
    return [sum(render(spec, item, tokenizer, order).n_tokens for order in ("ab", "ba")) for item in items]


def system_figures(items, verdicts, latencies, seconds, spec, tokens: int, parse_failures=None) -> dict:
    """One system on one set: ``tokens`` are the prompt tokens of its judgments (``prompt_tokens``)."""
    n = 2 * len(items)
    return {
        "judgments_per_s": round(n / seconds, 3),
        "prompt_tokens_per_s": round(tokens / seconds, 1),
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "parse_failures": parse_failures if parse_failures is not None else sum(1 for v in verdicts if v.error),
        "agreement": headline(items, verdicts, spec)["accuracy"],  # None on a set without labels
        "n_judgments": n,
        "prompt_tokens": tokens,
        "seconds": round(seconds, 2),
    }


def compare_verdicts(verdicts: list, reference: list, name: str = "vllm_merged") -> dict:
    """How far a system's verdicts are from the reference system's on the items both scored."""
    ref = {v.id: v for v in reference if not v.error}
    same, diffs = [], []
    for v in verdicts:
        r = ref.get(v.id)
        if r is None or v.error:
            continue
        same.append(v.verdict == r.verdict)
        if v.probs and r.probs:
            diffs.append(max(abs(v.probs[k] - r.probs[k]) for k in r.probs))
    return {
        f"same_verdicts_as_{name}": round(sum(same) / len(same), 4) if same else None,
        f"max_prob_diff_vs_{name}": round(max(diffs), 6) if diffs else None,
    }


def efficiency(matmul_params: int, tokens_per_s: float, peaks: dict[str, float], dtype: str) -> dict:
    """Model FLOP/s (2 x matmul parameters x prompt tokens computed per second) against the matmul peak of the
    served ``dtype`` and against the fp32 and bf16 peaks (where measured)."""
    flops = 2 * matmul_params * tokens_per_s
    out = {
        "model_flops_per_s": round(flops),
        "efficiency_vs_served_dtype_peak": round(flops / peaks[PEAK_KEY[dtype]], 4),
    }
    out.update({f"efficiency_vs_{key}_peak": round(flops / peaks[key], 4) for key in ("bf16", "fp32") if key in peaks})
    return out


def target_rows(sets: dict[str, dict]) -> list[dict]:
    """The issue's targets, one row per target and set: value, goal, met."""

    def row(target: str, set_name: str, value, goal: float, higher: bool = True) -> dict:
        met = None if value is None else (value >= goal if higher else value <= goal)
        return {"target": target, "set": set_name, "value": value, "goal": goal, "met": met}

    rows = [
        row(
            f"vllm_merged >= {TARGET_PEAK_SHARE:.0%} of the bf16 matmul peak",
            name,
            s.get("efficiency_vs_bf16_peak"),
            TARGET_PEAK_SHARE,
        )
        for name, s in sets.items()
    ]
    if "pandalm" in sets:
        goal = round(TARGET_SPEEDUP * BASELINE_JUDGMENTS_PER_S, 2)
        rows.append(
            row(
                f"vllm_merged judgments/s >= {TARGET_SPEEDUP} x {BASELINE_JUDGMENTS_PER_S} (committed) = {goal:.1f}",
                "pandalm",
                sets["pandalm"]["systems"]["vllm_merged"]["judgments_per_s"],
                goal,
            )
        )
    rows += [
        row(
            f"judge API overhead <= {TARGET_API_OVERHEAD:.0%}",
            name,
            s["ratios"].get("judge_api_overhead"),
            TARGET_API_OVERHEAD,
            higher=False,
        )
        for name, s in sets.items()
    ]
    return rows
