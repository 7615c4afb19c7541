"""Why vLLM ran one judge request at a time, and what changes it: variants side by side in one run.

The same judge (the embedded SmolLM2-135M on helpfulness-pairwise: the speed of a merged judge of the
same shape) scores the same items, both orders, through judge/scoring.py and the vLLM backend:

- ``guided``: requests as judgeloop sent them before 2026-12-05, with guided choice over the labels
  (``structured_outputs``): each request waits for its grammar (vLLM's log: ``Deferred: N reqs``);
- ``plain``: the raw logprobs of the labels' first tokens, renormalised (the same distribution): today's;
- ``plain_big_steps``: ``plain`` on a server started with ``--max-num-batched-tokens`` 8192 instead of
  vLLM's CPU default 2048 (prompt tokens per scheduler step: one or two long judge prompts);
- ``plain_bf16``: ``plain`` on a server in bfloat16 (where the CPU has bf16 math it is the higher peak),
  with how many verdicts change against float32.

On two sets: PandaLM test pairs (short) and long-response pairs (lfqa-experts and mtbench-human, both
responses of at least ``min_response_tokens`` tokens). Reported per variant and set: judgments/s,
prompt tokens/s that vLLM computed (prefix-cache hits excluded, cache reset before each run), the model's
FLOP/s (2 x parameters x those tokens) against the matmul peak of the served dtype measured in the same
run, p50/p99 latency, and the largest probability difference between ``guided`` and ``plain`` verdicts
(and ``plain_bf16`` and ``plain``).

"Running: 1 reqs" in vLLM's log is not one request per step: a judge request ends in the step that
prefills it (one output token), so the log's snapshot between steps sees at most the one being chunked.
``--enable-logging-iteration-details`` shows the steps themselves: 13 prompts (2048 tokens) in one
(benchmarks/results/NOTES.md).

``python -m benchmarks.batching [--quick]`` writes benchmarks/results/batching.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import types
from pathlib import Path

from benchmarks.common import (
    WORK_DIR,
    load_items,
    long_items,
    machine,
    matmul_parameters,
    peak_matmul_flops,
    percentile_ms,
    prepared_data,
)
from benchmarks.common import write_result as write_json
from benchmarks.scoring import SERVE_CONFIG, drive, reset_prefix_cache, vllm_counters
from data.schema import Item
from serve.child import free_port
from serve.config import load_serve_config
from serve.service import start_judges

SPEC = "helpfulness-pairwise"


def guided_body(self, chunk, spec, ids):
    """The request judgeloop sent before: the same, plus guided choice over the labels."""
    return {**type(self).request_body(self, chunk, spec, ids), "structured_outputs": {"choice": list(spec.labels)}}


def measure(service, url: str, items: list[Item], params: int, request_items: int, concurrency: int) -> dict:
    reset_prefix_cache(url)
    before = vllm_counters(url)
    verdicts, latencies, seconds = drive(service.score, items, request_items, concurrency)
    after = vllm_counters(url)
    computed = (after["prompt_tokens"] - before["prompt_tokens"]) - (after["cache_hits"] - before["cache_hits"])
    return {
        "pairs": len(items),
        "judgments": 2 * len(items),
        "errors": sum(v.error is not None for v in verdicts),
        "seconds": round(seconds, 2),
        "judgments_per_s": round(2 * len(items) / seconds, 3),
        "prompt_tokens_computed": int(computed),
        "prompt_tokens_per_s": round(computed / seconds, 1),
        "model_flops_per_s": 2 * params * computed / seconds,
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "_verdicts": verdicts,
    }


def max_prob_difference(a: list, b: list) -> float:
    return max(
        (abs(x.probs[k] - y.probs[k]) for x, y in zip(a, b) if x.probs and y.probs for k in x.probs), default=0.0
    )


def run(
    n_short: int = 32,
    n_long: int = 16,
    min_response_tokens: int = 250,
    request_items: int = 8,
    concurrency: int = 8,
    big_steps: int = 8192,
    work: Path = WORK_DIR,
    progress=print,
) -> dict:
    os.environ["VLLM_SERVER_DEV_MODE"] = "1"  # vLLM's /reset_prefix_cache: each measurement starts cold
    logs = work / "logs"
    sets = {"pandalm": load_items(prepared_data(work) / "test.jsonl", n_short)}
    result: dict = {"machine": machine(), "spec": SPEC, "request_items": request_items, "concurrency": concurrency}
    runs: dict[str, dict] = {}
    variants_run = (
        ("plain", []),
        ("plain_big_steps", [f"--vllm.max_num_batched_tokens={big_steps}"]),
        ("plain_bf16", ["--vllm.dtype=bfloat16"]),
    )
    for variant, extra in variants_run:
        cfg = load_serve_config(SERVE_CONFIG, [f"--vllm.port={free_port()}", f"--log_dir={logs}", *extra])
        progress(f"starting vLLM ({variant}: {' '.join(extra) or 'the serve config as shipped'}) ...")
        with start_judges(cfg, judges=[SPEC], candidates=[], progress=lambda *a, **k: None) as serving:
            (service,) = serving.services.values()
            url = serving.servers[0].url
            if "long" not in sets:
                sets["long"] = long_items(service.tokenizer, n_long, min_response_tokens)
                result["dtype"] = cfg.vllm.dtype  # the shipped serve config's
                result["sets"] = {
                    name: {
                        "pairs": len(items),
                        "mean_response_tokens": round(
                            sum(len(service.tokenizer(i.response_a + i.response_b)["input_ids"]) for i in items)
                            / max(len(items), 1)
                        ),
                    }
                    for name, items in sets.items()
                }
            from transformers import AutoConfig  # deferred: seconds to import

            params = matmul_parameters(AutoConfig.from_pretrained(service.judge.model_path))
            result["matmul_parameters"] = params
            drive(service.score, sets["pandalm"][:2], request_items, concurrency)  # warm-up
            variants = ("plain", "guided") if variant == "plain" else (variant,)
            for name in variants:
                for set_name, items in sets.items():
                    if name == "guided":
                        service.backend.request_body = types.MethodType(guided_body, service.backend)
                    progress(f"  {name} on {set_name}: {2 * len(items)} judgments ...")
                    try:
                        runs[f"{name}/{set_name}"] = measure(service, url, items, params, request_items, concurrency)
                    finally:
                        service.backend.__dict__.pop("request_body", None)
    progress("matmul peaks (torch.matmul and vLLM's oneDNN kernel, fp32 and bf16) ...")
    peaks = {"fp32": peak_matmul_flops("fp32"), "bf16": peak_matmul_flops("bf16")}
    result["peak_flops"] = peaks
    for name, r in runs.items():
        r["share_of_peak"] = round(r["model_flops_per_s"] / peaks["bf16" if "bf16" in name else "fp32"], 3)
    for set_name in sets:
        plain, guided = runs[f"plain/{set_name}"], runs[f"guided/{set_name}"]
        big, bf16 = runs[f"plain_big_steps/{set_name}"], runs[f"plain_bf16/{set_name}"]
        result.setdefault("ratios", {})[set_name] = {
            "plain_vs_guided_judgments_per_s": round(plain["judgments_per_s"] / guided["judgments_per_s"], 2),
            "big_steps_vs_plain_judgments_per_s": round(big["judgments_per_s"] / plain["judgments_per_s"], 2),
            "max_prob_difference_plain_vs_guided": max_prob_difference(plain["_verdicts"], guided["_verdicts"]),
            "verdicts_changed_plain_vs_guided": sum(
                a.verdict != b.verdict for a, b in zip(plain["_verdicts"], guided["_verdicts"])
            ),
            "bf16_vs_fp32_judgments_per_s": round(bf16["judgments_per_s"] / plain["judgments_per_s"], 2),
            "max_prob_difference_bf16_vs_fp32": max_prob_difference(plain["_verdicts"], bf16["_verdicts"]),
            "verdicts_changed_bf16_vs_fp32": sum(
                a.verdict != b.verdict for a, b in zip(plain["_verdicts"], bf16["_verdicts"])
            ),
        }
    result["runs"] = {k: {f: v for f, v in r.items() if not f.startswith("_")} for k, r in runs.items()}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="4 short and 2 long pairs: checks that it runs")
    p.add_argument("--results", type=Path, default=None, help="where batching.json goes (default benchmarks/results)")
    args = p.parse_args(argv)
    sizes = {"n_short": 4, "n_long": 2} if args.quick else {}
    start = time.perf_counter()
    result = run(**sizes)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    path = write_json("batching", result, *([args.results] if args.results else []))
    print(json.dumps(result["ratios"], indent=2))
    print(f"batching: results in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
