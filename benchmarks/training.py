"""Training speed: `judgeloop train` against a plain TRL SFTTrainer with a default SFTConfig, same run.

Both train one epoch on the same PandaLM training pairs (the first ``train_items`` non-tie ones,
both orders, the label swapped with the responses), on the embedded model with the same LoRA
settings (train.trainer.lora_config of the same config), each in its own process so its peak
memory is its own (``os.wait4``). ``judgeloop`` is `judgeloop train configs/train/smollm2-cpu.yaml`
on that subset for one epoch (without length balancing, which would drop items); ``trl_default``
is what the TRL docs show: a conversational prompt/completion dataset of the same rendered
messages and ``SFTConfig(output_dir, use_cpu=True, num_train_epochs=1)`` (``use_cpu`` because
TRL's default ``bf16=True`` refuses a CPU-only machine without it), with ``bf16`` set as judgeloop's
``auto`` sets it: off on a CPU without bf16 math, where TRL's default would emulate it ~100x slower
and the ratio would measure that, not the trainers. Real tokens are the non-padding tokens each
trainer counted; their model FLOP/s (``flops_per_token``) is reported against the bf16 and the fp32
matmul peaks measured in the same run, whichever dtype it trained in. Dev agreement of both adapters is
measured afterwards by the same code (judge/hf_backend.py + the scoring core, float32, both orders) on the first
``dev_items`` non-tie dev pairs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (
    REPO_ROOT,
    SPEC,
    WORK_DIR,
    best_peaks,
    load_items,
    machine,
    matmul_parameters,
    peak_flops_detail,
    peak_rss_mb,
    prepared_data,
    recipe_on_file,
    write_jsonl_subset,
)
from data.embedded_model import resolve_model
from data.render import render
from data.schema import JudgeRef
from data.spec import load_spec
from judge.agreement import headline
from judge.hf_backend import HFBackend
from judge.precision import hardware, resolve_bf16
from judge.scoring import score_items
from train.config import load_train_config
from train.trainer import lora_config

TRAIN_CONFIG = REPO_ROOT / "configs" / "train" / "smollm2-cpu.yaml"


def judgeloop_overrides(subset: Path, run_dir: Path) -> list[str]:
    """The shipped CPU recipe on the benchmark's subset for one epoch; no length balancing (it would drop
    items, and both systems must see the same data); the joint pairwise spec both systems can train (TRL's
    SFTTrainer has no pair loss for the recipe's separate mode)."""
    return [
        f"--spec={SPEC}",
        f"--output_dir={run_dir}",
        *recipe_on_file(subset),
        "--max_steps=null",
        "--epochs=1",
        "--max_length=null",
        "--logging_steps=1",
    ]


# -- the plain TRL way (runs in its own process: `python -m benchmarks.training trl_default ...`) ------


def trl_default(subset: Path, out_dir: Path) -> dict:
    from datasets import Dataset  # deferred: datasets takes seconds to import; only this path needs it
    from transformers import (  # deferred: transformers takes seconds to import; only this path needs it
        AutoModelForCausalLM,
        AutoTokenizer,
    )
    from trl import SFTConfig, SFTTrainer  # deferred: TRL takes seconds to import; only this path needs it

    spec = load_spec(SPEC)
    model_path = resolve_model(spec.base_model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    # the very LoRA settings judgeloop trains with (rank, alpha, dropout, modules, layers)
    peft_config = lora_config(load_train_config(TRAIN_CONFIG, judgeloop_overrides(subset, out_dir)), model)
    space = spec.label_space
    rows = []
    for item in load_items(subset):
        for order in ("ab", "ba"):
            label = space.swap(item.label) if order == "ba" else item.label
            rows.append(
                {
                    "prompt": render(spec, item, tokenizer, order).messages,
                    "completion": [{"role": "assistant", "content": label}],
                }
            )
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(
            output_dir=str(out_dir / "checkpoints"), use_cpu=True, num_train_epochs=1, bf16=resolve_bf16("auto")
        ),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    result = trainer.train()
    trainer.save_model(str(out_dir / "adapter"))
    return {
        "epoch_seconds": result.metrics["train_runtime"],
        "real_tokens": int(trainer._total_train_tokens),
        "examples": len(rows),
        "steps": trainer.state.global_step,
        "peak_rss_mb_self": peak_rss_mb(),
        "lora": {
            "r": peft_config.r,
            "alpha": peft_config.lora_alpha,
            "dropout": peft_config.lora_dropout,
            "target_modules": sorted(peft_config.target_modules),
            "layers": peft_config.layers_to_transform,
        },
    }


# -- judgeloop train, as a user runs it ------------------------------------------------------------------


def judgeloop_command(subset: Path, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "judgeloop", "train", str(TRAIN_CONFIG), *judgeloop_overrides(subset, run_dir)]


def judgeloop_figures(run_dir: Path) -> dict:
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines() if line.strip()]
    end = next(r for r in reversed(log) if "train_runtime" in r)
    return {
        "epoch_seconds": end["train_runtime"],
        "real_tokens": int(max(r.get("num_tokens", 0) for r in log)),
        "steps": end["step"],
    }


def run_measured(cmd: list[str], log_path: Path) -> tuple[int, float, float]:
    """Run a command; its exit code, wall seconds and peak RSS (MiB, its process tree's largest)."""
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024


def dev_agreement(model_path: str, adapter: Path, dev_items: list) -> float:
    """Agreement with the human majority on the dev pairs, by the eval harness's scoring path."""

    spec = load_spec(SPEC)
    backend = HFBackend.load(model_path, str(adapter), dtype="float32")
    verdicts = list(
        score_items(dev_items, spec, backend, backend.tokenizer, JudgeRef(name=spec.name, fingerprint="bench"))
    )
    return headline(dev_items, verdicts, spec)["accuracy"]


ABBA = ("trl_default", "judgeloop", "judgeloop", "trl_default")


def flops_per_token(model_path: str, lora_layers: list[int] | None) -> dict:
    """The model FLOPs a LoRA training step needs per real token (the same for both systems): 2 x the matmul
    parameters forward, and 2 x those of the layers from the first adapted one up backward (the activations'
    gradients; the frozen weights get none). LoRA's own small matmuls, attention scores and the recomputation of
    gradient checkpointing are not counted. ``six_n`` is the full fine-tuning convention, 6 x the matmul
    parameters: it counts weight gradients a frozen base does not compute, and overstates the work."""
    from transformers import AutoConfig  # deferred: transformers takes seconds to import; only this path needs it

    config = AutoConfig.from_pretrained(model_path)
    params, layers = matmul_parameters(config), config.num_hidden_layers
    first = min(lora_layers) if lora_layers else 0
    backward = params * (layers - first) // layers
    return {"counted": 2 * params + 2 * backward, "six_n": 6 * params, "matmul_parameters": params}


def training_efficiency(tokens_per_s: float, per_token: dict, peaks: dict) -> dict:
    """Model FLOP/s against the measured bf16 and fp32 matmul peaks (whichever dtype it trained in)."""
    flops = tokens_per_s * per_token["counted"]
    return {
        "model_flops_per_s": round(flops),
        **{f"efficiency_vs_{d}_peak": round(flops / peaks[d], 4) for d in ("bf16", "fp32")},
        "efficiency_vs_bf16_peak_six_n": round(tokens_per_s * per_token["six_n"] / peaks["bf16"], 4),
    }


def system_figures(runs: list[dict], model_path: str, dev: list) -> dict:
    """One system's figures from its ABBA runs: mean epoch time, tokens/s of the summed tokens and seconds,
    the larger peak RSS, and the dev agreement of its last run's adapter (the runs are seeded alike)."""
    seconds = sum(r["epoch_seconds"] for r in runs)
    tokens = sum(r["real_tokens"] for r in runs)
    return {
        "epoch_seconds": round(seconds / len(runs), 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        "dev_agreement": dev_agreement(model_path, runs[-1]["run_dir"] / "adapter", dev),
        "real_tokens": runs[-1]["real_tokens"],
        "steps": runs[-1]["steps"],
        "runs": len(runs),
        "epoch_seconds_per_run": [round(r["epoch_seconds"], 2) for r in runs],
        "process_seconds": round(sum(r["process_seconds"] for r in runs) / len(runs), 1),
        "load_avg_1min_at_start": [round(r["load_avg_1min_at_start"], 2) for r in runs],
    }


def run(
    train_items: int = 32,
    dev_items: int = 24,
    work: Path = WORK_DIR,
    peak_seconds: float = 1.0,
    runs_per_system: int = 2,
    progress=print,
) -> dict:
    """Both systems on the same subset, ``runs_per_system`` times each: 2 is the ABBA order (the figures), 1 is
    A then B (``--quick``: checks that it runs, not the ratio)."""
    if runs_per_system not in (1, 2):
        raise ValueError(f"runs_per_system is 1 or 2, not {runs_per_system}")
    order = ABBA[: 2 * runs_per_system]

    out = work / "training"
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    data_dir = prepared_data(work)
    subset = write_jsonl_subset(data_dir / "train.jsonl", out / "train-subset.jsonl", train_items)
    dev = load_items(data_dir / "dev.jsonl", dev_items, skip_ties=True)
    model_path = resolve_model(load_spec(SPEC).base_model)
    progress("peak matmul FLOP/s (torch.matmul and vLLM's oneDNN kernel, bf16 and fp32) ...")
    before = peak_flops_detail(peak_seconds)
    runs: dict[str, list[dict]] = {"trl_default": [], "judgeloop": []}
    lora = None
    # ABBA: each system runs twice, in the order A B B A, so a load that drifts during the run hits both alike
    for i, name in enumerate(order):
        run_dir = out / f"{name}-{i}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        cmd = (
            judgeloop_command(subset, run_dir)
            if name == "judgeloop"
            else [sys.executable, "-m", "benchmarks.training", "trl_default", str(subset), str(run_dir)]
        )
        progress(f"training ({i + 1}/{len(order)}): {name} on {train_items} pairs x 2 orders, one epoch ...")
        load = os.getloadavg()[0]  # other jobs on a shared box: recorded, so a reader can judge the ratio
        code, wall, rss = run_measured(cmd, out / f"{name}-{i}.log")
        if code != 0:
            raise RuntimeError(f"{name} training failed (exit {code}); see {out / f'{name}-{i}.log'}")
        figures = (
            judgeloop_figures(run_dir) if name == "judgeloop" else json.loads((run_dir / "figures.json").read_text())
        )
        lora = figures.get("lora", lora)
        runs[name].append(
            {
                "run_dir": run_dir,
                "epoch_seconds": figures["epoch_seconds"],
                "real_tokens": figures["real_tokens"],
                "steps": figures["steps"],
                "peak_rss_mb": rss,
                "process_seconds": wall,
                "load_avg_1min_at_start": load,
            }
        )
        progress(
            f"    {figures['real_tokens'] / figures['epoch_seconds']:.1f} real tokens/s, "
            f"epoch {figures['epoch_seconds']:.1f} s"
        )
    systems = {name: system_figures(rs, model_path, dev) for name, rs in runs.items()}
    per_token = flops_per_token(model_path, (lora or {}).get("layers"))
    # the peak measured before and after the runs: the better of the two
    peaks, peak_kernels = best_peaks(before, peak_flops_detail(peak_seconds))
    for x in systems.values():
        x.update(training_efficiency(x["tokens_per_s"], per_token, peaks))
    jl, trl = systems["judgeloop"], systems["trl_default"]
    return {
        "machine": info,
        "model": model_path,
        "subset": {
            "train_pairs": train_items,
            "examples": 2 * train_items,
            "dev_pairs": len(dev),
            "epochs": 1,
            "order": list(order),
        },
        "train_config": str(TRAIN_CONFIG.relative_to(REPO_ROOT)),
        "precision": {"bf16": resolve_bf16("auto"), "hardware": hardware()},  # both systems, as `auto` chose
        "peak_matmul_flops": {d: round(v) for d, v in peaks.items()},
        "peak_matmul_kernels": peak_kernels,
        "flops_per_token": per_token,
        "lora": lora,
        "systems": systems,
        "ratios": {
            "tokens_per_s": round(jl["tokens_per_s"] / trl["tokens_per_s"], 2),
            "epoch_seconds": round(trl["epoch_seconds"] / jl["epoch_seconds"], 2),
        },
    }


def main(argv: list[str]) -> int:
    """The child process of the trl_default system: ``trl_default SUBSET OUT_DIR``."""
    system, subset, out_dir = argv
    assert system == "trl_default", system
    figures = trl_default(Path(subset), Path(out_dir))
    (Path(out_dir) / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
