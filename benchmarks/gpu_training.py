"""GPU training: the GPU recipe as bf16 LoRA and as QLoRA on one GPU, side by side, plus its failure paths.

`python -m benchmarks.gpu_training [--shape qwen2.5-7b] [--steps 20] ...` on a machine with a CUDA GPU.
Every system is a real `judgeloop train configs/train/helpfulness-gpu.yaml` process with the dev
evaluation in the loop; only the base model differs from a user's run: it is random-init, shaped like
the recipe's base (Qwen2.5-7B-Instruct: 28 layers, hidden 3584, 4 KV heads) but with the tokenizer and
vocabulary of the tokenizer given (SmolLM2-135M-Instruct's), because GPU machines here fetch no weights.
Speed and memory depend on the shape, not on the weights' values; agreement figures of a random base mean
nothing and are not reported.

What it measures, in one run:
- ``bf16_lora`` and ``qlora``: optimizer-step tokens/s (real tokens, dev evaluation excluded; the judge
  card's figure), peak GPU memory (the card's, torch.cuda.max_memory_allocated) and wall time; QLoRA's
  ratios to bf16 LoRA; model FLOP utilisation against the bf16 matmul peak measured in the same run.
- ``oom``: the recipe with a batch no GPU holds and no gradient checkpointing; the exit code and message
  (the issue: out-of-memory on GPU explains which setting to lower).
- ``fsdp`` vs ``plain``: configs/accelerate/fsdp.yaml launched with one process against a plain process, same
  small shape, seed and data: the FSDP run must end with the same adapter (its save path gathers the shards)
  and its merged model (`judgeloop merge`) must give the adapter's verdicts.
Several GPUs (DDP, FSDP across ranks) need a machine with several; this script does not pretend otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import REPO_ROOT, load_items, machine, peak_matmul_flops
from data.schema import JudgeRef
from data.spec import load_spec
from judge.hf_backend import HFBackend
from judge.scoring import score_items

RECIPE = REPO_ROOT / "configs" / "train" / "helpfulness-gpu.yaml"
FSDP_CONFIG = REPO_ROOT / "configs" / "accelerate" / "fsdp.yaml"
SPEC = "helpfulness-pairwise"

# Qwen2 architecture shapes (the published configs' sizes; the vocabulary is the tokenizer's)
SHAPES = {
    "qwen2.5-7b": dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        tie_word_embeddings=False,
    ),
    "qwen2.5-1.5b": dict(
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "qwen2.5-0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    ),  # a CPU dry run of this script
}


def base_config(shape: str, tok):
    """The Qwen2 config of ``shape`` with the vocabulary and special tokens of the tokenizer ``tok``."""
    from transformers import Qwen2Config  # deferred: transformers takes seconds to import; only this path needs it

    return Qwen2Config(
        vocab_size=len(tok),
        max_position_embeddings=32768,
        rope_theta=1e6,
        rms_norm_eps=1e-6,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        **SHAPES[shape],
    )


def random_model(config, device: str, dtype: str = "bfloat16", seed: int = 0):
    """A random-init Qwen2 model of ``config``, built directly on ``device`` in ``dtype`` (a 7B model in fp32 would
    take 28 GB first)."""
    import torch  # deferred: torch takes seconds to import; only this path needs it
    from transformers import Qwen2ForCausalLM  # deferred: transformers takes seconds to import; only this path needs it

    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            return Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(default)


def build_base(shape: str, tokenizer_dir: Path, out: Path, seed: int = 0) -> dict:
    """A random-init Qwen2 model of ``shape`` with the tokenizer of ``tokenizer_dir``, saved (bf16) to ``out``."""
    import torch  # deferred: torch takes seconds to import; only this path needs it
    from transformers import AutoTokenizer  # deferred: transformers takes seconds to import; only this path needs it

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = base_config(shape, tok)
    if not (out / "config.json").exists():
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model = random_model(config, device, seed=seed)
        model.save_pretrained(out)
        tok.save_pretrained(out)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    params = _count_params(config)
    return {"shape": shape, "path": str(out), "params": params, **SHAPES[shape], "vocab_size": len(tok)}


def _count_params(config) -> int:
    """Parameters of a Qwen2 model of ``config``, counted on the meta device (nothing allocated)."""
    import torch  # deferred: torch takes seconds to import; only this path needs it
    from transformers import Qwen2ForCausalLM  # deferred: transformers takes seconds to import; only this path needs it

    with torch.device("meta"):
        return sum(p.numel() for p in Qwen2ForCausalLM(config).parameters())


def train_command(
    base: Path, run_dir: Path, data_dir: Path, steps: int, extra: list[str], launcher: list[str] | None = None
) -> list[str]:
    launch = launcher or [sys.executable]
    return [
        *launch,
        "-m",
        "judgeloop",
        "train",
        str(RECIPE),
        f"--base_model={base}",
        f"--output_dir={run_dir}",
        f"--data.train=[{data_dir / 'train.jsonl'}]",
        f"--data.dev=[{data_dir / 'dev.jsonl'}]",
        "--data.max_dev_items=64",
        f"--max_steps={steps}",
        f"--eval.steps={max(1, steps // 2)}",
        "--eval.early_stopping_patience=null",
        "--logging_steps=1",
        *extra,
    ]


def run_logged(cmd: list[str], log: Path, timeout: float) -> tuple[int, float]:
    start = time.perf_counter()
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with open(log, "w") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        try:
            rc = subprocess.run(
                cmd, cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            rc = 124
    return rc, round(time.perf_counter() - start, 1)


def tail(log: Path, n: int = 15) -> list[str]:
    return log.read_text(errors="replace").splitlines()[-n:]


def steady_tokens_per_s(log: list[dict]) -> float | None:
    """Tokens/s between consecutive logged steps (logging_steps=1) with no evaluation or checkpoint between them:
    the first step (warm-up: kernel selection, allocator growth) and the dev evaluations are left out."""
    steps = [r for r in log if "loss" in r and "elapsed_s" in r]
    evals = {r["step"] for r in log if "eval_agreement" in r}
    tokens = seconds = 0.0
    for a, b in zip(steps, steps[1:]):
        if not any(a["step"] <= e < b["step"] for e in evals):
            tokens += b["num_tokens"] - a["num_tokens"]
            seconds += b["elapsed_s"] - a["elapsed_s"]
    return round(tokens / seconds, 1) if seconds > 0 else None


def card_figures(run_dir: Path) -> dict:
    card = json.loads((run_dir / "card.json").read_text())
    t = card["training"]
    log = [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines() if x.strip()]
    tokens = max((r.get("num_tokens", 0) for r in log), default=0)
    return {
        "tokens_per_s": t["tokens_per_s"],
        "steady_tokens_per_s": steady_tokens_per_s(log),
        "peak_gpu_gib": t.get("peak_gpu_gib"),
        "steps": t["steps"],
        "card_wall_s": t["wall_s"],
        "real_tokens": int(tokens),
        "dev_evaluations": len(card["dev_curve"]),
        "training_examples": card["data"]["training_examples"],
    }


def system(name: str, cmd: list[str], run_dir: Path, logs: Path, timeout: float) -> dict:
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(cmd[-8:])}", flush=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    rc, wall = run_logged(cmd, logs / f"{name}.log", timeout)
    out = {"rc": rc, "process_wall_s": wall}
    if rc == 0 and (run_dir / "card.json").exists():
        out.update(card_figures(run_dir))
    else:
        out["log_tail"] = tail(logs / f"{name}.log")
    print(f"    -> {json.dumps({k: v for k, v in out.items() if k != 'log_tail'})}", flush=True)
    if rc != 0:
        print("    " + "\n    ".join(out["log_tail"]), flush=True)
    return out


def mfu(tokens_per_s: float | None, params: int, peak: float, checkpointing: bool) -> float | None:
    """Model FLOP utilisation of LoRA training: forward 2N, backward through activations only 2N (frozen base),
    a recomputed forward 2N more with gradient checkpointing, per token; attention and LoRA's own FLOPs left out."""
    if not tokens_per_s:
        return None
    return round(tokens_per_s * (6 if checkpointing else 4) * params / peak, 3)


def adapter_difference(a: Path, b: Path) -> dict:
    """Largest relative difference between two adapters' tensors (same names), and the tensor counts."""
    from safetensors.torch import (  # deferred: safetensors (torch) takes seconds to import; only this path needs it
        load_file,
    )

    ta, tb = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    worst = 0.0
    for name in ta.keys() & tb.keys():
        x, y = ta[name].float(), tb[name].float()
        worst = max(worst, float((x - y).norm() / max(float(y.norm()), 1e-12)))
    same = set(ta) == set(tb)
    return {
        "tensors": len(ta),
        "same_names": same,
        "max_relative_difference": worst,
        "ok": bool(ta) and same and worst < 1e-2,
    }


def merged_matches_adapter(run_dir: Path, data_dir: Path, n: int = 16) -> dict:
    """`judgeloop merge` output against the adapter on ``n`` dev items, scored by judge/hf_backend.py (float32)."""

    spec = load_spec(SPEC)
    items = load_items(data_dir / "dev.jsonl", n, skip_ties=True)
    card = json.loads((run_dir / "card.json").read_text())
    ref = JudgeRef(name=spec.name, fingerprint="bench")
    scored = {}
    for name, model, adapter in (
        ("adapter", card["base_model"]["path"], str(run_dir / "adapter")),
        ("merged", str(run_dir / "merged"), None),
    ):
        backend = HFBackend.load(model, adapter, dtype="float32")
        scored[name] = list(score_items(items, spec, backend, backend.tokenizer, ref))
        del backend
    same = sum(a.verdict == b.verdict for a, b in zip(scored["adapter"], scored["merged"]))
    gap = max(abs(a.probs[k] - b.probs[k]) for a, b in zip(scored["adapter"], scored["merged"]) for k in a.probs)
    return {"items": len(items), "same_verdicts": same, "max_probability_difference": round(gap, 6)}


def lora_part(args, result: dict, save) -> None:
    """bf16 LoRA and QLoRA on the recipe's shape, side by side."""
    base = result["base"] = build_base(args.shape, Path(args.tokenizer), Path(args.work) / f"base-{args.shape}")
    save()
    systems = result["systems"]
    for name, extra in (("bf16_lora", []), ("qlora", ["--lora.qlora=true"])):
        systems[name] = system(
            name,
            train_command(Path(base["path"]), Path(args.work) / name, Path(args.data), args.steps, extra),
            Path(args.work) / name,
            Path(args.results),
            args.timeout,
        )
        peak = result.get("bf16_matmul_peak_tflops", 0) * 1e12
        if peak and systems[name].get("steady_tokens_per_s"):
            systems[name]["mfu"] = mfu(systems[name]["steady_tokens_per_s"], base["params"], peak, checkpointing=True)
        save()
    b, q = systems["bf16_lora"], systems["qlora"]
    if b.get("steady_tokens_per_s") and q.get("steady_tokens_per_s"):
        result["qlora_vs_bf16"] = {
            "speed": round(q["steady_tokens_per_s"] / b["steady_tokens_per_s"], 3),
            "peak_memory": round(q["peak_gpu_gib"] / b["peak_gpu_gib"], 3),
        }
    save()


def oom_part(args, result: dict, save) -> None:
    """A batch no GPU holds, activations kept (no checkpointing): one message naming what to lower, exit 2."""
    base = result.get("base") or build_base(args.shape, Path(args.tokenizer), Path(args.work) / f"base-{args.shape}")
    work, logs = Path(args.work), Path(args.results)
    oom = system(
        "oom",
        train_command(
            Path(base["path"]),
            work / "oom",
            Path(args.data),
            1,
            ["--batch_size=1024", "--grad_accumulation=1", "--gradient_checkpointing=false", "--data.dev=[]"],
        ),
        work / "oom",
        logs,
        args.timeout,
    )
    text = (logs / "oom.log").read_text(errors="replace")
    oom.update(
        {
            "message": [
                line[line.index("judgeloop: error") :] for line in text.splitlines() if "judgeloop: error" in line
            ],
            "traceback": "Traceback (most recent call last)" in text,
        }
    )
    oom.pop("log_tail", None)
    result["systems"]["oom"] = oom
    save()


def fsdp_part(args, result: dict, save) -> None:
    """configs/accelerate/fsdp.yaml with one process against a plain process (small shape, same seed and data):
    the same adapter, and `judgeloop merge` of the FSDP run gives the adapter's verdicts."""
    work, logs, data_dir = Path(args.work), Path(args.results), Path(args.data)
    small = result["small_base"] = build_base(args.small_shape, Path(args.tokenizer), work / f"base-{args.small_shape}")
    systems = result["systems"]
    common = ["--gradient_checkpointing=false", "--batch_size=4", "--grad_accumulation=1"]
    plain = [sys.executable, *(["-m", "cProfile", "-o", str(logs / "plain.prof")] if args.profile else [])]
    fsdp = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(FSDP_CONFIG),
        "--num_processes",
        "1",
    ]
    for name, launcher in (("plain", plain), ("fsdp", fsdp)):
        systems[name] = system(
            name,
            train_command(Path(small["path"]), work / name, data_dir, args.small_steps, common, launcher),
            work / name,
            logs,
            args.timeout,
        )
        save()
    if systems["plain"]["rc"] == 0 and systems["fsdp"]["rc"] == 0:
        systems["fsdp"]["adapter_vs_plain"] = adapter_difference(work / "fsdp" / "adapter", work / "plain" / "adapter")
        rc, wall = run_logged(
            [sys.executable, "-m", "judgeloop", "merge", str(work / "fsdp")], logs / "merge.log", args.timeout
        )
        systems["fsdp"]["merge"] = {"rc": rc, "wall_s": wall}
        if rc == 0:
            systems["fsdp"]["merge"].update(merged_matches_adapter(work / "fsdp", data_dir))
        save()


PARTS = {"lora": lora_part, "oom": oom_part, "fsdp": fsdp_part}


def run(args) -> dict:
    import torch  # deferred: torch takes seconds to import; only this path needs it

    Path(args.work).mkdir(parents=True, exist_ok=True)
    Path(args.results).mkdir(parents=True, exist_ok=True)
    result: dict = {
        "benchmark": "gpu_training",
        "machine": machine(),
        "recipe": str(RECIPE.relative_to(REPO_ROOT)),
        "steps": args.steps,
        "small_steps": args.small_steps,
        "parts": args.parts,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "systems": {},
    }
    save = lambda: (Path(args.results) / "gpu_training.json").write_text(json.dumps(result, indent=2) + "\n")  # noqa: E731
    if torch.cuda.is_available():
        result["bf16_matmul_peak_tflops"] = round(peak_matmul_flops("bf16", size=8192, seconds=2.0) / 1e12, 1)
    print(f"machine: {json.dumps(result['machine'])}", flush=True)
    start = time.perf_counter()
    for part in args.parts.split(","):
        PARTS[part](args, result, save)
    result["total_s"] = round(time.perf_counter() - start, 1)
    save()
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_training", description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="qwen2.5-7b", choices=SHAPES, help="the base model's shape (random weights)")
    p.add_argument("--small-shape", default="qwen2.5-0.5b", choices=SHAPES, help="the shape of the FSDP comparison")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per system (dev evaluated at half and end)")
    p.add_argument("--small-steps", type=int, default=6, help="optimizer steps of the FSDP comparison")
    p.add_argument("--tokenizer", required=True, help="a tokenizer directory (smollm2-135m-instruct's)")
    p.add_argument("--data", required=True, help="a folder with train.jsonl and dev.jsonl (judgeloop items)")
    p.add_argument("--work", default=str(REPO_ROOT / "runs" / "bench-gpu"), help="scratch: base models, runs")
    p.add_argument(
        "--results", default=str(REPO_ROOT / "benchmarks" / "results"), help="where gpu_training.json and the logs go"
    )
    p.add_argument("--timeout", type=float, default=600, help="seconds per training process")
    p.add_argument("--parts", default="lora,oom,fsdp", help=f"which comparisons, in this order (of {','.join(PARTS)})")
    p.add_argument("--profile", action="store_true", help="cProfile the plain run of the fsdp part (plain.prof)")
    return p


def main(argv: list[str] | None = None) -> int:
    result = run(parser().parse_args(argv))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
