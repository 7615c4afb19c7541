"""`judgeloop bench [scoring|training|all] [--quick] [--dtype D] [--gpu] ...`: run the benchmarks, write the results.

Writes benchmarks/results/scoring.json and/or training.json, then benchmarks/results/README.md
(the Markdown tables the project README links) from whatever results are there. On a machine with a
CUDA GPU (or with ``--gpu``) the scoring benchmark is benchmarks/gpu_scoring.py instead (random-init
models, the in-process backend: no downloads, no vLLM) and writes gpu_scoring.json.

The benchmarks are imported when the command runs, not here: judgeloop builds the whole parser tree
on every call (``judgeloop --help`` too), and they import torch, transformers and vLLM's client.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from data.cli_base import add_command

log = logging.getLogger("judgeloop")

# sizes: (default, --quick). The defaults took 18.1 minutes on an idle 2-core box (2026-11-29, environment and
# model already set up, benchmarks/results/NOTES.md); --quick is a few minutes.
SIZES = {
    "n": (200, 8),
    "hf_n": (25, 4),
    "naive_n": (10, 2),
    "lora_n": (10, 4),
    "long_n": (32, 2),
    "linear_sizes": ("100,400,1600", "4,16"),
    "memory_sizes": ("100,1600", "16,64"),
    "train_items": (16, 4),
    "dev_items": (16, 4),
    "peak_seconds": (1.0, 0.25),  # per matmul kernel and shape, each time the peaks are measured
    "runs_per_system": (2, 1),  # training: ABBA, or A then B
}


def add_commands(commands) -> None:
    p = add_command(
        commands,
        "bench",
        help="scoring and training speed against the usual ways (benchmarks/results)",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        example="judgeloop bench scoring --quick --results /tmp/bench",
        run=cmd_bench,
    )
    p.add_argument("which", nargs="?", default="all", choices=("all", "scoring", "training"), help="default all")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a few minutes): checks that it runs, not speed")
    p.add_argument("--n", type=int, help="test pairs scored by vllm_merged and judge_api (x2 judgments)")
    p.add_argument("--hf-n", type=int, help="test pairs for hf_batched (the first of the same pairs)")
    p.add_argument("--naive-n", type=int, help="test pairs for naive_generate (the slowest)")
    p.add_argument("--lora-n", type=int, help="test pairs for vllm_lora")
    p.add_argument(
        "--long-n", type=int, help="long-response pairs for vllm_merged and judge_api (all there are: 9 at 500 tokens)"
    )
    p.add_argument(
        "--min-response-tokens", type=int, default=500, help="the long set: both responses at least this long"
    )
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="what every scoring system computes in (default: configs/serve/cpu.yaml's vllm.dtype; on a GPU auto); "
        "one this machine cannot compute exits 2 before any model loads",
    )
    p.add_argument(
        "--gpu",
        action="store_true",
        help="the GPU scoring benchmark (benchmarks/gpu_scoring.py; default when torch sees a CUDA GPU)",
    )
    p.add_argument(
        "--linear-sizes",
        help="judgments per size for vllm_merged's linearity, comma-separated "
        "(the size equal to --n x 2 reuses that run)",
    )
    p.add_argument("--memory-sizes", help="items for batch scoring's memory, two comma-separated sizes")
    p.add_argument("--train-items", type=int, help="training pairs per system (x2 orders, one epoch)")
    p.add_argument("--dev-items", type=int, help="dev pairs for the trained adapters' agreement")
    p.add_argument(
        "--runs-per-system",
        type=int,
        choices=(1, 2),
        help="training runs of each system: 2 in the order A B B A (default), 1 in A B (--quick)",
    )
    p.add_argument("--tokenizer", help="--gpu: a tokenizer directory (default: smollm2-135m-instruct's, if fetched)")
    p.add_argument("--results", help="where the JSON results and README.md go (default benchmarks/results)")
    p.add_argument("--work", help="scratch: data, runs, logs (default runs/bench)")


def sizes(args) -> dict:
    out = {}
    for key, (full, quick) in SIZES.items():
        value = getattr(args, key, None)
        out[key] = value if value is not None else (quick if args.quick else full)
    for key in ("linear_sizes", "memory_sizes"):
        out[key] = tuple(int(x) for x in str(out[key]).split(","))
    return out


def cmd_bench(args) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train/cli.py: spinning OpenMP waiters on a shared box
    import torch  # deferred: module docstring

    from benchmarks.common import RESULTS_DIR, WORK_DIR, bench_dtype, write_result

    work, results = Path(args.work or WORK_DIR), Path(args.results or RESULTS_DIR)
    if args.gpu or torch.cuda.is_available():
        return cmd_gpu_bench(args, results)
    from benchmarks import scoring, training  # deferred: module docstring

    dtype = bench_dtype(args.dtype) if args.which in ("all", "scoring") else None  # before any model loads
    s = sizes(args)
    start = time.perf_counter()

    def progress(message: str) -> None:  # each stage with the time it started at: where a run's minutes went
        elapsed = int(time.perf_counter() - start)
        log.info(f"[{elapsed // 60:d}:{elapsed % 60:02d}] {message}")

    # training first: scoring then reuses its judgeloop run as the judge
    if args.which in ("all", "training"):
        result = training.run(
            s["train_items"], s["dev_items"], work, s["peak_seconds"], s["runs_per_system"], progress=progress
        )
        print(f"wrote {write_result('training', result, results)}")
    if args.which in ("all", "scoring"):
        result = scoring.run(
            n=s["n"],
            hf_n=s["hf_n"],
            naive_n=s["naive_n"],
            lora_n=s["lora_n"],
            long_n=s["long_n"],
            min_response_tokens=args.min_response_tokens,
            dtype=dtype,
            linear_sizes=s["linear_sizes"],
            memory_sizes=s["memory_sizes"],
            train_items=s["train_items"],
            peak_seconds=s["peak_seconds"],
            work=work,
            progress=progress,
        )
        print(f"wrote {write_result('scoring', result, results)}")
    path = write_tables(results)
    print(f"wrote {path} ({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


def cmd_gpu_bench(args, results: Path) -> int:
    """The GPU scoring benchmark: the in-process backend on random-init models (benchmarks/gpu_scoring.py)."""
    import torch  # deferred: module docstring

    from benchmarks import gpu_scoring  # deferred: module docstring
    from benchmarks.common import bench_dtype
    from data.errors import ConfigError

    if not torch.cuda.is_available():
        raise ConfigError("--gpu: torch sees no CUDA GPU on this machine; leave --gpu out to benchmark the CPU")
    if args.which == "training":
        raise ConfigError("on a GPU the training benchmark is `python -m benchmarks.gpu_training`, not bench training")
    dtype = bench_dtype(args.dtype or "auto", device="cuda")
    start = time.perf_counter()
    s = gpu_scoring.settings(quick=args.quick, dtype=dtype, device="cuda", tokenizer=args.tokenizer)
    result = gpu_scoring.run(s, progress=log.info)
    print(f"wrote {gpu_scoring.write(result, results)}")
    path = write_tables(results)
    print(f"wrote {path} ({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


# -- the Markdown tables ---------------------------------------------------------------------------------


def _num(x, fmt: str = "{:.3g}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


SET_TITLES = {
    "pandalm": "PandaLM test pairs",
    "long": "long-response pairs",
    "pandalm_like": "synthetic PandaLM-like pairs",
}


def scoring_table(r: dict) -> list[str]:
    if "sets" not in r:  # written before the per-set format (2026-12): its numbers are in NOTES.md
        return ["### Scoring", "", "scoring.json predates the per-set format: rerun `judgeloop bench scoring`."]
    dtype, peak = r["dtype"], r["peak_matmul_flops"]
    out = [
        f"### Scoring (every system in **{dtype}**; a judgment = one order of one pair; fewer where noted)",
        "",
        "| set | system | judgments | judgments/s | prompt tokens/s | p50 ms | p99 ms | parse failures | agreement "
        "| same verdicts as vllm_merged |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for set_name, x in r["sets"].items():
        for name in ("naive_generate", "hf_batched", "vllm_merged", "vllm_lora", "judge_api"):
            if name in x["systems"]:
                y = x["systems"][name]
                out.append(
                    f"| {set_name} | {name} | {y['n_judgments']} | {_num(y['judgments_per_s'])} | "
                    f"{_num(y.get('prompt_tokens_per_s'), '{:.0f}')} | {_num(y['p50_ms'], '{:.0f}')} | "
                    f"{_num(y['p99_ms'], '{:.0f}')} | {y['parse_failures']} | {_num(y['agreement'])} | "
                    f"{_num(y.get('same_verdicts_as_vllm_merged'))} |"
                )
    out += ["", "| target | set | this run | status |", "|---|---|---|---|"]
    for t in r["targets"]:
        value = _pct(t["value"]) if "%" in t["target"] else _num(t["value"])
        status = {True: "met", False: "**not met**", None: "n/a"}[t["met"]]
        out.append(f"| {t['target']} | {t['set']} | {value} | {status} |")
    out += [
        "",
        f"- measured matmul peak: {peak['fp32'] / 1e9:.0f} GFLOP/s fp32, {peak['bf16'] / 1e9:.0f} GFLOP/s bf16; "
        f"model FLOP/s = 2 x {r['matmul_parameters'] / 1e6:.1f}M matmul parameters x prompt tokens vLLM computed "
        "(prefix-cache hits excluded)",
        *_peak_kernels_line(r),
    ]
    if r.get("layer_ceiling_flops"):
        out.append(
            f"- one of this model's decoder layers (its seven linear products on 2048 tokens, {dtype}) runs at "
            + ", ".join(f"{v / 1e9:.0f} GFLOP/s with {k}" for k, v in r["layer_ceiling_flops"].items())
            + ": the most a server using that kernel can reach on these shapes; vllm_merged against it: "
            + "; ".join(
                f"{set_name} "
                + ", ".join(f"{_pct(v)} of {k}'s" for k, v in x.get("efficiency_vs_layer_ceiling", {}).items())
                for set_name, x in r["sets"].items()
            )
        )
    for set_name, x in r["sets"].items():
        t, q = x["vllm_merged_tokens"], x["ratios"]
        out.append(
            f"- {set_name} ({SET_TITLES.get(set_name, set_name)}, {x['pairs']} pairs, {x['mean_prompt_tokens']:.0f} "
            f"prompt tokens per judgment): vllm_merged {x['model_flops_per_s'] / 1e9:.1f} GFLOP/s "
            f"({t['computed_tokens']} computed tokens / {t['seconds']} s, {t['prefix_cache_hit_tokens']} from the "
            f"prefix cache) = **{_pct(x['efficiency_vs_served_dtype_peak'])} of the {dtype} peak**, "
            f"{_pct(x['efficiency_vs_bf16_peak'])} of bf16, {_pct(x['efficiency_vs_fp32_peak'])} of fp32; "
            f"vllm_merged / naive_generate {q['vllm_merged_over_naive']}x, / hf_batched "
            f"{q['vllm_merged_over_hf_batched']}x (at most "
            + ", ".join(f"{v}x over {k}" for k, v in x["max_speedup_at_served_peak"].items())
            + f" at 100% of the {dtype} peak); judge API overhead {100 * q['judge_api_overhead']:.1f}%"
        )
    out += [
        f"- vllm_merged / vllm_lora (PandaLM): {r['ratios']['vllm_merged_over_vllm_lora']}x (production merges "
        f"automatically: {r['production_merges_automatically']})",
        "- vllm_merged linearity: "
        + ", ".join(f"{x['judgments']} judgments {x['judgments_per_s']:.2f}/s" for x in r["linearity_vllm_merged"]),
        "- batch scoring (serve/batch.py) memory growth: "
        + ", ".join(f"{x['items']} items +{x['rss_growth_mb']:.0f} MiB" for x in r["batch_memory"]),
    ]
    return out


def gpu_scoring_table(r: dict) -> list[str]:
    """benchmarks/gpu_scoring.py: the in-process backend on random-init shapes, against the device's peak."""
    where = (
        r["machine"]["gpu"] if r["ran_on_gpu"] else f"a CPU ({r['machine']['cpu']}): the test mode, not a GPU figure"
    )
    key = next(iter(r["peak_matmul_flops"]))
    out = [
        f"### GPU scoring (`judgeloop bench --gpu`; in-process backend, {r['dtype']}, random-init weights; "
        f"ran on {where})",
        "",
        "| shape | params | set | judgments | judgments/s | prompt tokens/s | p50 ms | p99 ms | share of the peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for shape, x in r["shapes"].items():
        for set_name, y in x["sets"].items():
            out.append(
                f"| {shape} | {_num(x['params'] / 1e9)}B | {set_name} | {y['n_judgments']} | "
                f"{_num(y['judgments_per_s'])} | {y['prompt_tokens_per_s']:.0f} | {_num(y['p50_ms'], '{:.0f}')} | "
                f"{_num(y['p99_ms'], '{:.0f}')} | {_pct(y['efficiency_vs_served_dtype_peak'])} |"
            )
    out += [
        "",
        f"- measured {key} matmul peak: {r['peak_matmul_flops'][key] / 1e12:.1f} TFLOP/s; share = 2 x matmul "
        "parameters x prompt tokens/s / that peak; items: "
        + ", ".join(
            f"{k} {v['pairs']} pairs, {v['mean_prompt_tokens']:.0f} prompt tokens" for k, v in r["sets"].items()
        ),
    ]
    return out


def training_table(r: dict) -> list[str]:
    sub = r["subset"]
    out = [
        f"### Training ({sub['train_pairs']} PandaLM pairs x 2 orders = {sub['examples']} examples, one epoch; "
        f"dev agreement on {sub['dev_pairs']} dev pairs; runs in the order {' '.join(sub.get('order', []))})",
        "",
        "| system | epoch s | real tokens/s | peak RSS MiB | dev agreement | of the bf16 peak | of the fp32 peak |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("trl_default", "judgeloop"):
        x = r["systems"][name]
        out.append(
            f"| {name} | {x['epoch_seconds']:.0f} | {x['tokens_per_s']:.0f} | {x['peak_rss_mb']:.0f} | "
            f"{_num(x['dev_agreement'])} | {_pct(x.get('efficiency_vs_bf16_peak'))} | "
            f"{_pct(x.get('efficiency_vs_fp32_peak'))} |"
        )
    out += ["", f"- judgeloop / trl_default real tokens/s: **{r['ratios']['tokens_per_s']}x** (target >= 1.5x)"]
    if "flops_per_token" in r:
        f, peak, x = r["flops_per_token"], r["peak_matmul_flops"], r["systems"]["judgeloop"]
        out.append(
            f"- trained in {'bfloat16' if r['precision']['bf16'] else 'float32'} ({r['precision']['hardware']}); "
            f"model FLOP/s = real tokens/s x {f['counted'] / 1e6:.0f}M FLOPs per token (2 x "
            f"{f['matmul_parameters'] / 1e6:.1f}M matmul parameters forward, 2 x those of the adapted span backward) "
            f"against the measured peaks, {peak['bf16'] / 1e9:.0f} GFLOP/s bf16 and {peak['fp32'] / 1e9:.0f} fp32; "
            f"by the 6 x parameters convention judgeloop would be at {_pct(x['efficiency_vs_bf16_peak_six_n'])} "
            "of the bf16 peak"
        )
        out += _peak_kernels_line(r)
    return out


def _peak_kernels_line(r: dict) -> list[str]:
    """Which kernel and shape gave each peak (runs since 2026-12-06: torch.matmul and vLLM's oneDNN kernel)."""
    if "peak_matmul_kernels" not in r:
        return []
    parts = []
    for key, kernels in r["peak_matmul_kernels"].items():
        best = max(kernels, key=kernels.get)
        torch_best = max((v for k, v in kernels.items() if k.startswith("torch.matmul")), default=0)
        parts.append(f"{key} {kernels[best] / 1e9:.0f} GFLOP/s by {best} (torch.matmul's best {torch_best / 1e9:.0f})")
    return ["- the peak is the best kernel and shape measured: " + "; ".join(parts)]


def gpu_training_table(r: dict) -> list[str]:
    """benchmarks/gpu_training.py's runs (device time is scarce: each run's JSON as it came back, with notes)."""
    out = [
        "### GPU training (one H200; `python -m benchmarks.gpu_training`; not part of `make bench`)",
        "",
        r["what"] + ".",
        "",
        "| run | system | exit | tokens/s (card, incl. warm-up) | steady tokens/s | peak GPU GiB | MFU | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, run in enumerate(r["runs"], 1):
        for name, x in run["systems"].items():
            steady = x.get("steady_tokens_per_s") or x.get("steady_tokens_per_s_progress_bar")
            note = x.get("note") or ("; ".join(x["message"]) if x.get("message") else "")
            out.append(
                f"| {i} | {name} | {x['rc']} | {_num(x.get('tokens_per_s'), '{:.0f}')} | "
                f"{_num(steady, '{:.0f}')} | {_num(x.get('peak_gpu_gib'), '{:.1f}')} | "
                f"{_num(x.get('mfu'), '{:.2f}')} | {note} |"
            )
    peaks = ", ".join(f"{run.get('bf16_matmul_peak_tflops')}" for run in r["runs"])
    out += [
        "",
        *(f"- {line}" for line in r.get("summary", [])),
        f"- bf16 matmul peak measured in each run: {peaks} TFLOP/s; MFU = steady tokens/s x 6 x params "
        "(forward, backward through activations, recomputed forward) / that peak",
        "- base: "
        + ", ".join(f"{run['base']['shape']} {run['base']['params'] / 1e9:.2f}B params" for run in r["runs"][:1]),
    ]
    return out


def write_tables(results: Path) -> Path:
    lines = [
        "# Benchmark results",
        "",
        "Regenerate with `make bench` (`judgeloop bench`). Every figure is a ratio of systems measured side by "
        "side in one run, or an efficiency against the matmul peak measured in the same run "
        "(these machines are shared and noisy). See [NOTES.md](NOTES.md) for what limits each target.",
        "",
    ]
    tables = (
        ("scoring", scoring_table),
        ("training", training_table),
        ("gpu_scoring", gpu_scoring_table),
        ("gpu_training", gpu_training_table),
    )
    for name, table in tables:
        path = results / f"{name}.json"
        if path.exists():
            r = json.loads(path.read_text())
            lines += table(r) + [
                "",
                f"Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, load "
                f"{_num(r['machine']['load_avg_1min_at_start'], '{:.1f}')} at start. "
                f"Raw: [{name}.json]({name}.json)",
                "",
            ]
    if (results / "load.json").exists():
        lines += ["Load test: [load.json](load.json)", ""]
    out = results / "README.md"
    out.write_text("\n".join(lines))
    return out
