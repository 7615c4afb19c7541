"""`judgeloop bench [scoring|training|all] [--quick] [--n N] ...`: run the benchmarks, write the results.

Writes benchmarks/results/scoring.json and/or training.json, then benchmarks/results/README.md
(the Markdown tables the project README links) from whatever results are there.

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
    "linear_sizes": ("100,400,1600", "4,16"),
    "memory_sizes": ("100,1600", "16,64"),
    "train_items": (16, 4),
    "dev_items": (16, 4),
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
        "--linear-sizes",
        help="judgments per size for vllm_merged's linearity, comma-separated "
        "(the size equal to --n x 2 reuses that run)",
    )
    p.add_argument("--memory-sizes", help="items for batch scoring's memory, two comma-separated sizes")
    p.add_argument("--train-items", type=int, help="training pairs per system (x2 orders, one epoch)")
    p.add_argument("--dev-items", type=int, help="dev pairs for the trained adapters' agreement")
    p.add_argument("--results", help="where the JSON results and README.md go (default benchmarks/results)")
    p.add_argument("--work", help="scratch: data, runs, logs (default runs/bench)")


def sizes(args) -> dict:
    out = {}
    for key, (full, quick) in SIZES.items():
        value = getattr(args, key)
        out[key] = value if value is not None else (quick if args.quick else full)
    for key in ("linear_sizes", "memory_sizes"):
        out[key] = tuple(int(x) for x in str(out[key]).split(","))
    return out


def cmd_bench(args) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train/cli.py: spinning OpenMP waiters on a shared box
    from benchmarks import scoring, training  # deferred: module docstring
    from benchmarks.common import RESULTS_DIR, WORK_DIR, write_result

    s = sizes(args)
    work, results = Path(args.work or WORK_DIR), Path(args.results or RESULTS_DIR)
    start = time.perf_counter()
    # training first: scoring then reuses its judgeloop run as the judge
    if args.which in ("all", "training"):
        result = training.run(s["train_items"], s["dev_items"], work, progress=log.info)
        print(f"wrote {write_result('training', result, results)}")
    if args.which in ("all", "scoring"):
        result = scoring.run(
            n=s["n"],
            hf_n=s["hf_n"],
            naive_n=s["naive_n"],
            lora_n=s["lora_n"],
            linear_sizes=s["linear_sizes"],
            memory_sizes=s["memory_sizes"],
            train_items=s["train_items"],
            work=work,
            progress=log.info,
        )
        print(f"wrote {write_result('scoring', result, results)}")
    path = write_tables(results)
    print(f"wrote {path} ({(time.perf_counter() - start) / 60:.1f} min)")
    return 0


# -- the Markdown tables ---------------------------------------------------------------------------------


def _num(x, fmt: str = "{:.3g}") -> str:
    return "n/a" if x is None else fmt.format(x)


def scoring_table(r: dict) -> list[str]:
    s = r["systems"]
    out = [
        f"### Scoring ({r['n_judgments']} judgments = PandaLM test pairs x 2 orders; fewer where noted)",
        "",
        "| system | judgments | judgments/s | p50 ms | p99 ms | parse failures | agreement "
        "| same verdicts as vllm_merged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("naive_generate", "hf_batched", "vllm_merged", "vllm_lora", "judge_api"):
        x = s[name]
        out.append(
            f"| {name} | {x['n_judgments']} | {_num(x['judgments_per_s'])} | {_num(x['p50_ms'], '{:.0f}')} | "
            f"{_num(x['p99_ms'], '{:.0f}')} | {x['parse_failures']} | {_num(x['agreement'])} | "
            f"{_num(x.get('same_verdicts_as_vllm_merged'))} |"
        )
    ratios, peak = r["ratios"], r["peak_matmul_flops"]
    out += [
        "",
        f"- vllm_merged / naive_generate: **{ratios['vllm_merged_over_naive']}x** (target >= 30x); "
        f"/ hf_batched: **{ratios['vllm_merged_over_hf_batched']}x** (target >= 1.5x); "
        f"/ vllm_lora: {ratios['vllm_merged_over_vllm_lora']}x (production merges automatically: "
        f"{r['production_merges_automatically']}); judge API overhead: "
        f"**{100 * ratios['judge_api_overhead']:.1f}%** (target <= 5%)",
        f"- measured matmul peak: {peak['fp32'] / 1e9:.0f} GFLOP/s fp32, {peak['bf16'] / 1e9:.0f} GFLOP/s bf16; "
        f"vllm_merged (float32) did {r['model_flops_per_s_vllm_merged'] / 1e9:.1f} GFLOP/s "
        f"(2 x {r['n_params'] / 1e6:.1f}M params x {r['vllm_merged_tokens']['computed_tokens']} "
        f"computed prompt tokens / {r['vllm_merged_tokens']['seconds']} s; "
        f"{r['vllm_merged_tokens']['prefix_cache_hit_tokens']} more came from the prefix cache): "
        f"**{100 * r['efficiency_vllm_merged']:.0f}% of the fp32 peak** "
        f"({100 * r['efficiency_vllm_merged_vs_bf16_peak']:.0f}% of bf16) (target >= 50%)"
        + (
            f"; counting only the {r['n_params_non_embedding'] / 1e6:.1f}M matmul (non-embedding) parameters: "
            f"**{100 * r['efficiency_vllm_merged_non_embedding']:.0f}%**"
            if "efficiency_vllm_merged_non_embedding" in r
            else ""
        ),
        "- the most vllm_merged could gain at 100% of the fp32 peak, computing only the tokens its prefix cache "
        "leaves: " + ", ".join(f"{k} {v}x" for k, v in r["max_speedup_at_fp32_peak"].items()),
        "- vllm_merged linearity: "
        + ", ".join(f"{x['judgments']} judgments {x['judgments_per_s']:.2f}/s" for x in r["linearity_vllm_merged"]),
        "- batch scoring (serve/batch.py) memory growth: "
        + ", ".join(f"{x['items']} items +{x['rss_growth_mb']:.0f} MiB" for x in r["batch_memory"]),
    ]
    return out


def training_table(r: dict) -> list[str]:
    sub = r["subset"]
    out = [
        f"### Training ({sub['train_pairs']} PandaLM pairs x 2 orders = {sub['examples']} examples, one epoch; "
        f"dev agreement on {sub['dev_pairs']} dev pairs; runs in the order {' '.join(sub.get('order', []))})",
        "",
        "| system | epoch s | real tokens/s | peak RSS MiB | dev agreement |",
        "|---|---|---|---|---|",
    ]
    for name in ("trl_default", "judgeloop"):
        x = r["systems"][name]
        out.append(
            f"| {name} | {x['epoch_seconds']:.0f} | {x['tokens_per_s']:.0f} | {x['peak_rss_mb']:.0f} | "
            f"{_num(x['dev_agreement'])} |"
        )
    out += ["", f"- judgeloop / trl_default real tokens/s: **{r['ratios']['tokens_per_s']}x** (target >= 1.5x)"]
    return out


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
    for name, table in (("scoring", scoring_table), ("training", training_table), ("gpu_training", gpu_training_table)):
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
