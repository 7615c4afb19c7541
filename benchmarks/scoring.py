"""Scoring speed: the usual do-it-yourself judge against judgeloop's engines, side by side in one run.

Systems, on the same PandaLM test pairs in both orders (a judgment = one order of one pair), all
with the same fine-tuned judge (a LoRA run of `judgeloop train`, merged by the production path):

1. ``naive_generate``: what people write first: transformers ``generate`` of a free-text verdict,
   one prompt at a time, then a regex; an item whose two orders disagree counts as a tie.
2. ``hf_batched``: the in-process backend (judge/hf_backend.py), length-sorted batches.
3. ``vllm_merged``: vLLM (configs/serve/cpu.yaml) serving the merged judge, through judge/scoring.py.
4. ``vllm_lora``: the same judge as a LoRA adapter on the base model in vLLM.
5. ``judge_api``: (3) behind the judge API (`judgeloop serve` with ``vllm.endpoints``), called
   with serve/client.py.

All in the dtype production serves (``--dtype``; default the serve config's ``vllm.dtype``, ``auto``
resolved as serving resolves it), on two sets: PandaLM test pairs and long-response pairs (both
responses of ``min_response_tokens`` tokens or more: common.long_items); (4) on PandaLM only.

Systems (3)-(5) get requests of ``request_items`` pairs, ``concurrency`` in flight; (2) one batch of
``request_items`` pairs at a time (it uses every core). A judgment's latency is the wall time of
the request that carried it. Also measured: the matmul peak (bf16, fp32) and the model FLOP/s
(2 x matmul parameters x prompt tokens vLLM computed, prefix-cache hits excluded) of (3) per set, against
the peak of the served dtype and of bf16 (benchmarks/figures.py has the targets), and against what each matmul
kernel (torch's, vLLM's oneDNN) reaches on one of this model's layers (``common.layer_ceiling``); throughput of (3) at
several sizes; and the peak memory of batch scoring (serve/batch.py) at two sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.common import (
    LONG_SOURCES,
    PEAK_KEY,
    REPO_ROOT,
    SERVE_CONFIG,
    WORK_DIR,
    RssSampler,
    best_peaks,
    layer_ceiling,
    load_items,
    long_items,
    machine,
    matmul_parameters,
    peak_flops_detail,
    prepared_data,
    trained_judge,
)
from benchmarks.figures import compare_verdicts, efficiency, prompt_tokens, system_figures, target_rows
from data.errors import DataError
from data.jsonl import write_jsonl
from data.render import render
from data.schema import Verdict
from judge.hf_backend import HFBackend
from judge.loading import budgeted, load_judge
from judge.scoring import score_items
from serve.batch import score_file
from serve.child import free_port, judge_api_child
from serve.client import AsyncJudgeClient
from serve.config import load_serve_config
from serve.launcher import merged_judge
from serve.service import start_judges

# vLLM keeps one core for its scheduler by default: on a 2-core box that halves its compute. Startup
# (compilation) is not measured and took over 10 minutes on a 2-core box that other jobs kept busy.
VLLM_OVERRIDES = ("--vllm.cpu_reserved_cores=0", "--vllm.startup_timeout_s=1800")
NAIVE_PATTERN = re.compile(r"\b(A|B|tie)\b", re.IGNORECASE)
NAIVE_MAX_NEW_TOKENS = 16


# -- (1) the do-it-yourself judge ------------------------------------------------------------------


def naive_judgments(
    model_path: str, spec, items: list, judge_ref, dtype: str = "float32"
) -> tuple[list, list[float], int, dict]:
    """Generate a free-text verdict per prompt, one at a time, and parse it with a regex.

    Returns the verdicts, each prompt's latency, how many prompts gave no parseable label, and the
    model's parameter count.
    """
    import torch  # deferred: torch takes seconds to import; only this path needs it
    from transformers import (  # deferred: transformers takes seconds to import; only this path needs it
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).eval()
    space = spec.label_space
    verdicts, latencies, failures = [], [], 0
    for item in items:
        labels = {}
        for order in ("ab", "ba"):
            messages = render(spec, item, tokenizer, order).messages
            start = time.perf_counter()
            inputs = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
            )
            with torch.inference_mode():
                out = model.generate(
                    **inputs, max_new_tokens=NAIVE_MAX_NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.eos_token_id
                )
            text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            latencies.append(time.perf_counter() - start)
            match = NAIVE_PATTERN.search(text)
            if match is None:
                failures += 1
                continue
            label = {"a": "A", "b": "B", "tie": "tie"}[match.group(1).lower()]
            labels[order] = space.swap(label) if order == "ba" else label
        if len(labels) < 2:
            verdicts.append(Verdict(id=item.id, judge=judge_ref, error="unparseable free-text verdict"))
        else:  # the usual rule: an item judged differently in the two orders is a tie
            verdicts.append(
                Verdict(
                    id=item.id,
                    judge=judge_ref,
                    consistent=labels["ab"] == labels["ba"],
                    verdict=labels["ab"] if labels["ab"] == labels["ba"] else "tie",
                )
            )
    n_params = sum(p.numel() for p in model.parameters())
    # the embedding is a lookup, not a matmul (tied to the output layer, which runs once per prompt here)
    params = {"all": n_params, "non_embedding": n_params - model.get_input_embeddings().weight.numel()}
    del model
    return verdicts, latencies, failures, params


# -- (2) the in-process backend -------------------------------------------------------------------


def hf_batched_judgments(judge, tokenizer, items: list, request_items: int, dtype: str) -> tuple[list, list[float]]:

    backend = HFBackend.load(judge.model_path, judge.adapter_path, dtype=dtype)
    verdicts, latencies = [], []
    for i in range(0, len(items), request_items):
        chunk = items[i : i + request_items]
        start = time.perf_counter()
        verdicts += list(score_items(chunk, judge.spec, backend, tokenizer, judge.ref, batch_size=len(chunk)))
        latencies += [time.perf_counter() - start] * (2 * len(chunk))
    return verdicts, latencies


# -- (3)-(5): requests in flight --------------------------------------------------------------------


async def _drive(score_chunk, items: list, request_items: int, concurrency: int) -> tuple[list, list[float]]:
    """Send ``items`` in requests of ``request_items`` with ``concurrency`` in flight; verdicts in item order."""
    semaphore = asyncio.Semaphore(concurrency)
    chunks = [items[i : i + request_items] for i in range(0, len(items), request_items)]
    latencies: list[float] = []

    async def one(chunk):
        async with semaphore:
            start = time.perf_counter()
            verdicts = await score_chunk(chunk)
            latencies.extend([time.perf_counter() - start] * (2 * len(chunk)))
            return verdicts

    results = await asyncio.gather(*(one(c) for c in chunks))
    return [v for chunk in results for v in chunk], latencies


def drive(score_chunk, items, request_items, concurrency) -> tuple[list, list[float], float]:
    start = time.perf_counter()
    verdicts, latencies = asyncio.run(_drive(score_chunk, items, request_items, concurrency))
    return verdicts, latencies, time.perf_counter() - start


def drive_api(
    url: str, key: str, judge_name: str, items, request_items, concurrency
) -> tuple[list, list[float], float]:
    """The same load as ``drive``, through the judge API with the project's async client."""

    async def main():
        async with AsyncJudgeClient(url, api_key=key, max_connections=concurrency) as client:
            return await _drive(lambda chunk: client.judge_batch(chunk, judge_name), items, request_items, concurrency)

    start = time.perf_counter()
    verdicts, latencies = asyncio.run(main())
    return verdicts, latencies, time.perf_counter() - start


def reset_prefix_cache(url: str) -> None:
    """Empty vLLM's prefix cache (it refuses while blocks are still held: retry)."""

    for _ in range(20):
        resp = httpx.post(url + "/reset_prefix_cache", timeout=30)
        resp.raise_for_status()
        if resp.json().get("success"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"vLLM at {url} did not reset its prefix cache")


def vllm_counters(url: str) -> dict[str, float]:
    """vLLM's prompt-token and prefix-cache counters (tokens), from its Prometheus /metrics."""

    wanted = {
        "vllm:prompt_tokens": "prompt_tokens",
        "vllm:prefix_cache_queries": "cache_queries",
        "vllm:prefix_cache_hits": "cache_hits",
    }
    out = dict.fromkeys(wanted.values(), 0.0)
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        for sample in family.samples:
            key = wanted.get(sample.name.removesuffix("_total"))
            if key and sample.name.endswith("_total"):
                out[key] += sample.value
    return out


@contextlib.contextmanager
def judge_api(judge_dir: Path, vllm_url: str, log_path: Path, dtype: str = "float32"):
    """`judgeloop serve` in front of an already-running vLLM (``vllm.endpoints``) serving in ``dtype`` (which its
    verdicts name); yields (url, key)."""
    port, key = free_port(), secrets.token_urlsafe(16)
    args = [
        str(SERVE_CONFIG),
        f"--judges=[{judge_dir}]",
        "--candidates=[]",
        f"--vllm.endpoints=[{vllm_url}]",
        f"--api.port={port}",
        f"--vllm.dtype={dtype}",
    ]
    with judge_api_child(args, port, log_path, {"JUDGELOOP_API_KEY": key}) as url:
        yield url, key


# -- (3) and (5) on one set ------------------------------------------------------------------------------


def vllm_and_api(direct, via_api, url: str, items: list, alternate_block: int) -> tuple[dict, dict]:
    """(3) and (5) take turns on blocks of the same items, so the box's load swings hit both alike; the prefix
    cache is reset before each block. Returns each one's [verdicts, latencies, seconds] and (3)'s token counts."""
    runs = {"vllm_merged": [[], [], 0.0], "judge_api": [[], [], 0.0]}
    tokens = {"prompt_tokens": 0, "prefix_cache_hit_tokens": 0, "computed_tokens": 0, "seconds": 0.0}
    for b, i in enumerate(range(0, len(items), alternate_block)):
        block = items[i : i + alternate_block]
        for name in ("vllm_merged", "judge_api") if b % 2 == 0 else ("judge_api", "vllm_merged"):
            reset_prefix_cache(url)
            before = vllm_counters(url)
            verdicts, lat, seconds = (direct if name == "vllm_merged" else via_api)(block)
            after = vllm_counters(url)
            runs[name][0] += verdicts
            runs[name][1] += lat
            runs[name][2] += seconds
            if name == "vllm_merged":
                prompt = after["prompt_tokens"] - before["prompt_tokens"]
                hits = after["cache_hits"] - before["cache_hits"]
                tokens["prompt_tokens"] += int(prompt)
                tokens["prefix_cache_hit_tokens"] += int(hits)
                tokens["computed_tokens"] += int(prompt - hits)
                tokens["seconds"] = round(tokens["seconds"] + seconds, 2)
    return runs, tokens


def repeated_items(items: list, n: int) -> list:
    """``n`` items cycling through ``items`` under new ids (for the memory test only)."""
    return [items[i % len(items)].model_copy(update={"id": f"rep{i}-{items[i % len(items)].id}"}) for i in range(n)]


def set_result(
    items,
    systems: dict,
    tokens: dict,
    token_counts: list[int],
    params: int,
    peaks: dict,
    dtype: str,
    ceiling: dict | None = None,
) -> dict:
    """One set's figures: vllm_merged's model FLOP/s against the peaks, the ratios, and the most it could gain
    over the in-process systems at 100% of the served dtype's peak, computing only what its prefix cache leaves."""
    speed = {name: s["judgments_per_s"] for name, s in systems.items()}
    computed_per_s = tokens["computed_tokens"] / tokens["seconds"]
    per_judgment = {name: systems[name]["prompt_tokens"] / systems[name]["n_judgments"] for name in speed}
    vllm_per_judgment = tokens["computed_tokens"] / systems["vllm_merged"]["n_judgments"]
    peak = peaks[PEAK_KEY[dtype]]
    return {
        "pairs": len(items),
        "n_judgments": 2 * len(items),
        "mean_prompt_tokens": round(sum(token_counts) / max(2 * len(items), 1), 1),
        "systems": systems,
        "vllm_merged_tokens": {**tokens, "computed_tokens_per_s": round(computed_per_s, 1)},
        **efficiency(params, computed_per_s, peaks, dtype),
        # against what each kernel reaches on one of this model's layers (vLLM's: vllm.onednn_mm on a CPU)
        "efficiency_vs_layer_ceiling": {
            name: round(2 * params * computed_per_s / flops, 4) for name, flops in (ceiling or {}).items()
        },
        "max_speedup_at_served_peak": {
            name: round(
                peak / (2 * params * per_judgment[name] * speed[name]) * per_judgment[name] / vllm_per_judgment, 2
            )
            for name in ("naive_generate", "hf_batched")
        },
        "ratios": {
            "vllm_merged_over_naive": round(speed["vllm_merged"] / speed["naive_generate"], 2),
            "vllm_merged_over_hf_batched": round(speed["vllm_merged"] / speed["hf_batched"], 2),
            "judge_api_overhead": round(speed["vllm_merged"] / speed["judge_api"] - 1, 4),
        },
    }


# -- the run ------------------------------------------------------------------------------------------


def run(
    n: int = 200,
    hf_n: int = 50,
    naive_n: int = 20,
    lora_n: int = 20,
    long_n: int = 32,
    min_response_tokens: int = 500,
    dtype: str = "float32",
    request_items: int = 8,
    concurrency: int = 8,
    linear_sizes: tuple[int, ...] = (100, 400),
    memory_sizes: tuple[int, int] = (100, 1600),
    memory_distinct: int = 25,
    alternate_block: int = 50,
    train_items: int = 16,
    peak_seconds: float = 1.0,
    vllm_overrides: tuple[str, ...] = VLLM_OVERRIDES,
    work: Path = WORK_DIR,
    progress=print,
) -> dict:
    """Every system on the same items of each set, in ``dtype`` (resolved: ``bench_dtype``); returns the
    scoring.json record. Sizes are pairs (x2 judgments), except ``linear_sizes`` and ``memory_sizes``, which are
    judgments and items; ``hf_n`` and ``naive_n`` cap both sets."""
    from transformers import AutoConfig  # deferred: transformers takes seconds to import; only this path needs it

    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    info = machine()
    data_dir = prepared_data(work)
    progress("judge: training briefly with `judgeloop train` unless a run is there ...")
    judge_dir = trained_judge(work, train_items)
    judge = load_judge(judge_dir)
    overrides = (*vllm_overrides, f"--vllm.dtype={dtype}")
    cfg = load_serve_config(SERVE_CONFIG, [f"--vllm.port={free_port()}", f"--log_dir={logs}", *overrides])
    # what the production path serves on CPU, with the prompt budget vLLM renders with (every system the same)
    merged = budgeted(merged_judge(judge, progress=lambda *a, **k: None), cfg.vllm.max_model_len)
    spec, tokenizer = merged.spec, merged.tokenizer()
    sets = {
        "pandalm": load_items(data_dir / "test.jsonl", n),
        "long": long_items(tokenizer, long_n, min_response_tokens),
    }
    if not sets["long"]:
        raise DataError(f"no pair of {', '.join(LONG_SOURCES)} has two responses of {min_response_tokens}+ tokens")
    counts = {name: prompt_tokens(spec, items, tokenizer) for name, items in sets.items()}
    config = AutoConfig.from_pretrained(merged.model_path)
    params = matmul_parameters(config)
    result = {
        "machine": info,
        "model": {"base": judge.model_path, "judge": str(judge_dir), "fingerprint": judge.fingerprint},
        "dtype": dtype,
        "matmul_parameters": params,
    }

    progress("peak matmul FLOP/s (torch.matmul and vLLM's oneDNN kernel, bf16 and fp32; this model's layers) ...")
    peaks = [peak_flops_detail(peak_seconds)]
    ceilings = [layer_ceiling(config, PEAK_KEY[dtype], seconds=peak_seconds)]
    systems: dict[str, dict] = {name: {} for name in sets}
    verdicts_of: dict[str, dict] = {name: {} for name in sets}

    def record(set_name, name, items, verdicts, lat, seconds, failures=None):
        tokens = sum(counts[set_name][: len(items)])
        systems[set_name][name] = system_figures(items, verdicts, lat, seconds, spec, tokens, failures)
        verdicts_of[set_name][name] = verdicts

    for set_name, items in sets.items():
        k = min(naive_n, len(items))
        progress(f"(1) naive_generate on {set_name}: {2 * k} judgments, one generate() at a time ({dtype}) ...")
        start = time.perf_counter()
        naive, lat, failures, n_params = naive_judgments(merged.model_path, spec, items[:k], merged.ref, dtype)
        record(set_name, "naive_generate", items[:k], naive, lat, time.perf_counter() - start, failures)

        k = min(hf_n, len(items))
        progress(f"(2) hf_batched on {set_name}: {2 * k} judgments ({dtype}) ...")
        start = time.perf_counter()
        verdicts, lat = hf_batched_judgments(merged, tokenizer, items[:k], request_items, dtype)
        record(set_name, "hf_batched", items[:k], verdicts, lat, time.perf_counter() - start)

    os.environ["VLLM_SERVER_DEV_MODE"] = "1"  # vLLM's /reset_prefix_cache: each measurement starts cold
    warm_items = load_items(data_dir / "dev.jsonl", 4)
    vllm_tokens = {}
    progress(f"(3) vllm_merged and (5) judge_api: starting vLLM ({dtype}) with the merged judge and the judge API ...")
    with (
        start_judges(cfg, judges=[str(judge_dir)], candidates=[], progress=lambda *a, **k: None) as serving,
        judge_api(judge_dir, serving.servers[0].url, logs / "judge-api.log", dtype) as (api_url, key),
    ):
        (service,) = serving.services.values()
        url = serving.servers[0].url
        result["production_merges_automatically"] = service.served.served_as == "merged"
        direct = lambda chunk_items: drive(service.score, chunk_items, request_items, concurrency)  # noqa: E731
        via_api = lambda chunk_items: drive_api(api_url, key, spec.name, chunk_items, request_items, concurrency)  # noqa: E731
        direct(warm_items)
        via_api(warm_items)
        for set_name, items in sets.items():
            runs, vllm_tokens[set_name] = vllm_and_api(direct, via_api, url, items, alternate_block)
            for name, (verdicts, lat, seconds) in runs.items():
                record(set_name, name, items, verdicts, lat, seconds)
            progress(
                f"    {set_name}: vllm_merged {systems[set_name]['vllm_merged']['judgments_per_s']:.2f} judgments/s, "
                f"judge_api {systems[set_name]['judge_api']['judgments_per_s']:.2f}"
            )
        peaks.append(peak_flops_detail(peak_seconds))
        ceilings.append(layer_ceiling(config, PEAK_KEY[dtype], seconds=peak_seconds))
        pandalm = sets["pandalm"]

        progress(f"linearity of vllm_merged at {', '.join(map(str, linear_sizes))} judgments ...")
        ids = {i.id for i in pandalm}
        pool = pandalm + [
            i for split in ("train", "dev", "test") for i in load_items(data_dir / f"{split}.jsonl") if i.id not in ids
        ]
        linearity = []
        for size in linear_sizes:
            if size == systems["pandalm"]["vllm_merged"]["n_judgments"]:  # the run above
                secs = systems["pandalm"]["vllm_merged"]["seconds"]
            else:
                reset_prefix_cache(url)  # every size starts cold
                _, _, secs = drive(service.score, pool[: size // 2], request_items, concurrency)
            judgments = 2 * len(pool[: size // 2])
            linearity.append(
                {"judgments": judgments, "seconds": round(secs, 2), "judgments_per_s": round(judgments / secs, 3)}
            )
        result["linearity_vllm_merged"] = linearity

        progress(f"batch scoring memory (serve/batch.py) at {memory_sizes[0]} and {memory_sizes[1]} items ...")
        memory = []
        for size in memory_sizes:
            src = work / f"memory-{size}.jsonl"
            write_jsonl(src, repeated_items(pandalm[:memory_distinct], size))
            out = work / f"memory-{size}.verdicts.jsonl"
            out.unlink(missing_ok=True)
            with RssSampler() as rss:
                summary = score_file(
                    src,
                    out,
                    lambda b: list(service.score_stream(b, True, len(b))),
                    service.ref,
                    batch_size=64,
                    progress=False,
                )
            memory.append(
                {
                    "items": size,
                    "rss_growth_mb": round(rss.growth_mb, 1),
                    "peak_rss_mb": round(rss.peak_mb, 1),
                    "errors": summary.errors,
                }
            )
        result["batch_memory"] = memory

    k = min(lora_n, len(pandalm))
    cfg = load_serve_config(SERVE_CONFIG, [f"--vllm.port={free_port()}", f"--log_dir={logs}", *overrides])
    progress(f"(4) vllm_lora: starting vLLM with the judge as a LoRA adapter, {2 * k} judgments ...")
    with start_judges(cfg, judges=[], candidates=[str(judge_dir)], progress=lambda *a, **k: None) as serving:
        (service,) = serving.services.values()
        drive(service.score, warm_items, request_items, concurrency)
        reset_prefix_cache(serving.servers[0].url)
        verdicts, lat, seconds = drive(service.score, pandalm[:k], request_items, concurrency)
    record("pandalm", "vllm_lora", pandalm[:k], verdicts, lat, seconds)

    for set_name in sets:
        for name in set(systems[set_name]) - {"vllm_merged", "naive_generate"}:
            systems[set_name][name].update(
                compare_verdicts(verdicts_of[set_name][name], verdicts_of[set_name]["vllm_merged"])
            )
    peak, peak_kernels = best_peaks(*peaks)
    ceiling = {name: round(max(c[name] for c in ceilings)) for name in ceilings[0]}
    per_set = {
        name: set_result(items, systems[name], vllm_tokens[name], counts[name], params, peak, dtype, ceiling)
        for name, items in sets.items()
    }
    per_set["long"]["min_response_tokens"] = min_response_tokens
    p = per_set["pandalm"]
    speed = {name: s["judgments_per_s"] for name, s in p["systems"].items()}
    result.update(
        {
            "peak_matmul_flops": {d: round(v) for d, v in peak.items()},
            "peak_matmul_kernels": peak_kernels,
            "layer_ceiling_flops": ceiling,
            "sets": per_set,
            "targets": target_rows(per_set),
            # PandaLM's figures under the names earlier runs used (the README's history, the smoke test)
            "n_judgments": p["n_judgments"],
            "n_params": n_params["all"],
            "n_params_non_embedding": n_params["non_embedding"],
            "systems": p["systems"],
            "vllm_merged_tokens": p["vllm_merged_tokens"],
            "efficiency_vs_served_dtype_peak": p["efficiency_vs_served_dtype_peak"],
            "ratios": {
                **p["ratios"],
                "vllm_merged_over_vllm_lora": round(speed["vllm_merged"] / speed["vllm_lora"], 2),
            },
            "settings": {
                "request_items": request_items,
                "concurrency": concurrency,
                "serve_config": str(SERVE_CONFIG.relative_to(REPO_ROOT)),
                "vllm_overrides": list(overrides),
                "prompt_budget": spec.max_prompt_tokens,
                "naive_max_new_tokens": NAIVE_MAX_NEW_TOKENS,
                "memory_distinct_items": memory_distinct,
                "alternate_block": alternate_block,
            },
        }
    )
    return result
