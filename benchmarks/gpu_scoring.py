"""GPU scoring: the in-process backend on random-init models of a 1.5B and a 7B shape, against the GPU's peak.

`judgeloop bench --gpu` (the default where torch sees a CUDA GPU) or ``python -m benchmarks.gpu_scoring``.
It needs no downloads, no vLLM and no datasets (a GPU box here has torch, transformers, peft and accelerate
only): the models are random-init Qwen2 shapes (benchmarks/gpu_training.py ``SHAPES``) with the vocabulary of
a tokenizer directory (SmolLM2-135M-Instruct's, or ``--tokenizer``); the items are synthetic pairs, generated
deterministically with set token lengths: a PandaLM-like set (responses of 40-120 tokens, prompts of about
300 like PandaLM's) and a long set (responses of 500-700 tokens). Speed depends on the shape and the token
counts, not on the weights' values or the words; verdicts of a random model mean nothing and are not reported.

Per shape and set: judgments/s, prompt tokens/s, p50/p99 latency of a request of ``request_items`` pairs
(both orders: the judge core, judge/scoring.py, on judge/hf_backend.py in bf16), and the model FLOP/s
(2 x matmul parameters x prompt tokens/s: benchmarks/figures.py) against the matmul peak of that dtype
measured on the same device in the same run. ``--device cpu --shapes tiny`` runs the same code on a CPU in
seconds (the test); ``ran_on_gpu`` in gpu_scoring.json says which it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from pathlib import Path

from benchmarks.common import (
    PEAK_KEY,
    RESULTS_DIR,
    bench_dtype,
    machine,
    matmul_parameters,
    peak_matmul_flops,
    write_result,
)
from benchmarks.figures import efficiency, prompt_tokens, system_figures
from benchmarks.gpu_training import SHAPES, base_config, random_model
from data.errors import ConfigError
from data.render import prompt_budget
from data.schema import Item, JudgeRef
from data.spec import load_spec
from judge.hf_backend import HFBackend
from judge.scoring import score_items

SPEC = "helpfulness-pairwise"
MAX_MODEL_LEN = 2048  # the CPU serve config's: the same prompt budget as the vLLM benchmark (2047 tokens)
# (instruction tokens, response tokens): uniform ranges per set
SET_LENGTHS = {"pandalm_like": ((15, 60), (40, 120)), "long": ((20, 80), (500, 700))}
WORDS = (
    "the model answer question data time system people result water light value number example because "
    "first between change point group order large small second report table study method energy market "
    "simple process history language problem country summary reason context detail following however"
).split()


@dataclasses.dataclass
class Settings:
    shapes: tuple[str, ...] = ("qwen2.5-1.5b", "qwen2.5-7b")
    pairs: dict = dataclasses.field(default_factory=lambda: {"pandalm_like": 256, "long": 64})
    request_items: int = 32
    dtype: str = "bfloat16"
    device: str = "cuda"
    tokenizer: str | None = None
    peak_size: int = 8192
    peak_seconds: float = 2.0
    seed: int = 0


def settings(quick: bool = False, **kw) -> Settings:
    """The defaults, or with ``quick`` a few pairs per set (checks that it runs, on both shapes)."""
    if quick:
        kw.setdefault("pairs", {"pandalm_like": 16, "long": 4})
    return Settings(**kw)


def synthetic_text(tokenizer, rng: random.Random, n_tokens: int) -> str:
    """Words drawn with ``rng``, cut to exactly ``n_tokens`` tokens of ``tokenizer`` (re-encoding may differ by
    a token or two where the cut merges)."""
    words = [rng.choice(WORDS) for _ in range(2 * n_tokens)]
    ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"][:n_tokens]
    return tokenizer.decode(ids)


def synthetic_items(tokenizer, set_name: str, n: int, seed: int = 0) -> list[Item]:
    """``n`` distinct pairs with the token lengths of ``SET_LENGTHS[set_name]``, the same for the same seed."""
    rng = random.Random(f"{seed}-{set_name}")
    (i_lo, i_hi), (r_lo, r_hi) = SET_LENGTHS[set_name]
    return [
        Item(
            id=f"{set_name}-{k}",
            group=f"{set_name}-{k}",
            kind="pairwise",
            instruction=synthetic_text(tokenizer, rng, rng.randint(i_lo, i_hi)),
            response_a=synthetic_text(tokenizer, rng, rng.randint(r_lo, r_hi)),
            response_b=synthetic_text(tokenizer, rng, rng.randint(r_lo, r_hi)),
        )
        for k in range(n)
    ]


def measure(backend, spec, tokenizer, items: list[Item], request_items: int) -> tuple[list, list[float], float]:
    """Score ``items`` in requests of ``request_items`` pairs, one at a time; verdicts, per-judgment latencies
    (its request's wall time), total seconds."""
    import torch  # deferred: torch takes seconds to import; only this path needs it

    ref = JudgeRef(name=spec.name, fingerprint="random-init")
    verdicts, latencies, total = [], [], 0.0
    for i in range(0, len(items), request_items):
        chunk = items[i : i + request_items]
        if backend.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        verdicts += list(score_items(chunk, spec, backend, tokenizer, ref, batch_size=len(chunk)))
        if backend.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        latencies += [seconds] * (2 * len(chunk))
        total += seconds
    return verdicts, latencies, total


def run_shape(shape: str, s: Settings, tokenizer, sets: dict, spec, peaks: dict, progress=print) -> dict:
    import torch  # deferred: torch takes seconds to import; only this path needs it

    config = base_config(shape, tokenizer)
    progress(f"{shape}: random-init model on {s.device} ({s.dtype}) ...")
    start = time.perf_counter()
    model = random_model(config, s.device, s.dtype, s.seed)
    backend = HFBackend(model, tokenizer, dtype=getattr(torch, s.dtype))
    out = {
        "params": sum(p.numel() for p in model.parameters()),
        "matmul_parameters": matmul_parameters(config),
        "build_s": round(time.perf_counter() - start, 1),
        "sets": {},
    }
    measure(backend, spec, tokenizer, sets["pandalm_like"][:2], 2)  # warm-up: kernel selection, allocator
    for set_name, items in sets.items():
        verdicts, latencies, seconds = measure(backend, spec, tokenizer, items, s.request_items)
        tokens = sum(prompt_tokens(spec, items, tokenizer))
        figures = system_figures(items, verdicts, latencies, seconds, spec, tokens)
        figures.pop("agreement")  # synthetic items have no labels (and a random model no opinion)
        figures.update(efficiency(out["matmul_parameters"], tokens / seconds, peaks, s.dtype))
        out["sets"][set_name] = figures
        progress(
            f"    {set_name}: {figures['judgments_per_s']:.1f} judgments/s, {figures['prompt_tokens_per_s']:.0f} "
            f"prompt tokens/s, {100 * figures['efficiency_vs_served_dtype_peak']:.0f}% of the {s.dtype} peak"
        )
    if s.device == "cuda":
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
    del backend, model
    if s.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return out


def tokenizer_dir(s: Settings) -> str:
    """``--tokenizer``, else SmolLM2-135M-Instruct's directory when it is fetched (nothing is downloaded here)."""
    from data import embedded_model

    if s.tokenizer:
        return s.tokenizer
    if embedded_model.is_fetched(embedded_model.SMOLLM2):  # the tokenizer these figures were measured with
        return str(embedded_model.model_dir(embedded_model.SMOLLM2))
    raise ConfigError(
        "--tokenizer: smollm2-135m-instruct is not fetched here and this benchmark downloads nothing; "
        "give a tokenizer directory (e.g. a copy of smollm2-135m-instruct's)"
    )


def check_device(device: str) -> None:
    import torch  # deferred: torch takes seconds to import; only this path needs it

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: torch sees no CUDA GPU on this machine (--device cpu runs the test mode)")


def run(s: Settings, progress=print) -> dict:
    from transformers import AutoTokenizer  # deferred: transformers takes seconds to import; only this path needs it

    check_device(s.device)
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir(s))
    base = load_spec(SPEC)
    spec = dataclasses.replace(base, max_prompt_tokens=prompt_budget(base, MAX_MODEL_LEN))
    sets = {name: synthetic_items(tokenizer, name, n, s.seed) for name, n in s.pairs.items()}
    key = PEAK_KEY[s.dtype]
    progress(f"{key} matmul peak on {s.device} ...")
    peaks = {key: peak_matmul_flops(key, size=s.peak_size, seconds=s.peak_seconds, device=s.device)}
    if key != "bf16":  # the bf16 peak is the one the targets name
        peaks["bf16"] = peak_matmul_flops("bf16", size=s.peak_size, seconds=s.peak_seconds, device=s.device)
    result = {
        "benchmark": "gpu_scoring",
        "machine": machine(),
        "device": s.device,
        "ran_on_gpu": s.device == "cuda",
        "dtype": s.dtype,
        "peak_matmul_flops": {k: round(v) for k, v in peaks.items()},
        "settings": {
            **{k: v for k, v in dataclasses.asdict(s).items() if k != "tokenizer"},
            "prompt_budget": spec.max_prompt_tokens,
            "set_lengths": SET_LENGTHS,
        },
        "sets": {
            name: {
                "pairs": len(items),
                "mean_prompt_tokens": round(sum(prompt_tokens(spec, items, tokenizer)) / (2 * len(items)), 1),
            }
            for name, items in sets.items()
        },
        "shapes": {},
    }
    for shape in s.shapes:
        result["shapes"][shape] = run_shape(shape, s, tokenizer, sets, spec, peaks, progress)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def write(result: dict, results: Path = RESULTS_DIR) -> Path:
    return write_result("gpu_scoring", result, results)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_scoring", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: the test mode (with --shapes tiny)")
    p.add_argument("--shapes", default="qwen2.5-1.5b,qwen2.5-7b", help=f"comma-separated, of {', '.join(SHAPES)}")
    p.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float32", "float16"))
    p.add_argument("--quick", action="store_true", help="16 PandaLM-like and 4 long pairs")
    p.add_argument("--pairs", type=int, help="PandaLM-like pairs (default 256)")
    p.add_argument("--long-pairs", type=int, help="long pairs (default 64)")
    p.add_argument("--request-items", type=int, default=32, help="pairs per request (x2 prompts)")
    p.add_argument("--tokenizer", help="a tokenizer directory (default: smollm2-135m-instruct's, if fetched)")
    p.add_argument("--results", type=Path, default=RESULTS_DIR, help="where gpu_scoring.json goes")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        check_device(args.device)
        shapes = tuple(args.shapes.split(","))
        unknown = [x for x in shapes if x not in SHAPES]
        if unknown:
            raise ConfigError(f"--shapes: unknown {', '.join(unknown)}; one of {', '.join(SHAPES)}")
        s = settings(
            quick=args.quick,
            shapes=shapes,
            dtype=bench_dtype(args.dtype, device=args.device),
            device=args.device,
            tokenizer=args.tokenizer,
            request_items=args.request_items,
            **({"peak_size": 256, "peak_seconds": 0.2} if args.device == "cpu" else {}),
        )
        defaults = s.pairs
        s.pairs = {"pandalm_like": args.pairs or defaults["pandalm_like"], "long": args.long_pairs or defaults["long"]}
        result = run(s)
    except ConfigError as exc:
        print(f"gpu_scoring: error: {exc}", file=sys.stderr)
        return 2
    print(f"gpu_scoring: results in {write(result, args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
