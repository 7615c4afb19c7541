"""Launcher: which judge is served how, the vLLM command line, and child processes that never outlive us."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.errors import ConfigError, ServerError
from data.spec import load_spec
from judge.loading import Judge
from serve.config import load_serve_config
from serve.launcher import (
    ChildProcess,
    ServedJudge,
    VLLMServer,
    judge_endpoints,
    plan_servers,
    serving_judges,
    vllm_command,
    vllm_env,
)
from tests.serve.helpers import lora_judge

REPO = Path(__file__).resolve().parents[2]


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie may wait long for a reaper in a container)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state


def wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(pid):
            return True
        time.sleep(0.05)
    return False


def adapter(tmp_path: Path, name: str, rank: int) -> str:
    d = tmp_path / name
    d.mkdir()
    (d / "adapter_config.json").write_text(f'{{"r": {rank}}}')
    return str(d)


def judges(tmp_path):
    spec = load_spec("helpfulness-pairwise")
    base = str(tmp_path)
    return [
        ServedJudge("helpfulness-pairwise", Judge(spec, base, None, "f1"), "production", "base"),
        ServedJudge(
            "helpfulness-pairwise@3", Judge(spec, base, adapter(tmp_path, "a3", 12), "f3", "3"), "candidate", "lora"
        ),
        ServedJudge("other", Judge(spec, "/models/merged", None, "f4"), "production", "merged"),
    ]


def test_cpu_plan_one_server_per_model(tmp_path, monkeypatch):
    monkeypatch.delenv("VLLM_USE_AOT_COMPILE", raising=False)
    cfg = load_serve_config(None, ["--vllm.port=9100"]).vllm
    served = judges(tmp_path)
    plans = plan_servers(served, cfg)
    assert [(p.model_path, p.names, list(p.loras), p.port) for p in plans] == [
        (str(tmp_path.resolve()), ["helpfulness-pairwise"], ["helpfulness-pairwise@3"], 9100),
        ("/models/merged", ["other"], [], 9101),
    ]
    assert judge_endpoints(served, plans) == {
        "helpfulness-pairwise": ["http://127.0.0.1:9100"],
        "helpfulness-pairwise@3": ["http://127.0.0.1:9100"],
        "other": ["http://127.0.0.1:9101"],
    }
    cmd = vllm_command(plans[0], cfg)
    assert cmd[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and "--enable-prefix-caching" in cmd
    assert cmd[cmd.index("--max-lora-rank") + 1] == "16"  # rank 12 rounded up to a rank vLLM accepts
    assert f"helpfulness-pairwise@3={tmp_path / 'a3'}" in cmd and "--enable-lora" in cmd
    assert cmd[cmd.index("--block-size") + 1] == "32" and cmd[cmd.index("--dtype") + 1] == "float32"
    assert "--enable-lora" not in vllm_command(plans[1], cfg)
    env = vllm_env(plans[0], cfg)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2" and env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "False"
    assert env["VLLM_USE_AOT_COMPILE"] == "0"  # on CPU its cache never loads; the older compile cache does
    monkeypatch.setenv("VLLM_USE_AOT_COMPILE", "1")
    assert vllm_env(plans[0], cfg)["VLLM_USE_AOT_COMPILE"] == "1"  # a user's own setting wins
    reserved = load_serve_config(None, ["--vllm.cpu_reserved_cores=0"]).vllm
    assert vllm_env(plans[0], reserved)["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


def test_gpu_plan_replicas_devices_and_memory(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = load_serve_config(
        None,
        [
            "--vllm.device=gpu",
            "--vllm.replicas=2",
            "--vllm.tensor_parallel_size=2",
            "--vllm.gpu_memory_utilization=0.8",
        ],
    ).vllm
    served = judges(tmp_path)
    plans = plan_servers(served, cfg)
    assert [(p.port, p.devices, p.gpu_memory_utilization) for p in plans] == [
        (8100, [0, 1], 0.4),
        (8101, [0, 1], 0.4),
        (8102, [2, 3], 0.4),
        (8103, [2, 3], 0.4),
    ]
    assert judge_endpoints(served, plans)["helpfulness-pairwise"] == ["http://127.0.0.1:8100", "http://127.0.0.1:8102"]
    cmd = vllm_command(plans[2], cfg)
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "2"
    assert cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.4"
    assert vllm_env(plans[2], cfg)["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_cpu_merges_production_adapters_only(serve_model_dir, tiny_specs, tmp_path):
    run = lora_judge(serve_model_dir, tiny_specs["pairwise"], tmp_path / "run")
    served = serving_judges([str(run)], [str(run)], "cpu", progress=lambda m: None)
    prod, cand = served
    assert (prod.key, prod.served_as, prod.judge.adapter_path) == ("tiny-helpfulness", "merged", None)
    assert Path(prod.judge.model_path).resolve() == (run / "merged").resolve()
    assert (cand.key, cand.served_as, cand.judge.adapter_path) == ("tiny-helpfulness@2", "lora", str(run / "adapter"))
    assert prod.judge.fingerprint == cand.judge.fingerprint  # the same judge, served two ways
    # merged once: a second start reuses RUN_DIR/merged
    mtime = (run / "merged" / "model.safetensors").stat().st_mtime_ns
    serving_judges([str(run)], [], "cpu", progress=lambda m: None)
    assert (run / "merged" / "model.safetensors").stat().st_mtime_ns == mtime
    # on GPU the production judge stays a LoRA module
    (gpu,) = serving_judges([str(run)], [], "gpu", progress=lambda m: None)
    assert gpu.served_as == "lora"


def test_two_judges_with_one_key_is_a_config_error(tiny_specs):
    with pytest.raises(ConfigError, match="tiny-helpfulness"):
        serving_judges([str(tiny_specs["pairwise"])] * 2, [], "cpu")


GRANDPARENT = (
    "import subprocess, sys, time\n"
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "print('grandchild', p.pid, flush=True)\n"
    "time.sleep(600)\n"
)


def _grandchild_pid(child: ChildProcess) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in child.log_path.read_text().splitlines():
            if line.startswith("grandchild "):
                return int(line.split()[1])
        time.sleep(0.05)
    raise AssertionError("the child never started its own child")


def test_stop_ends_the_whole_process_group(tmp_path):
    child = ChildProcess([sys.executable, "-c", GRANDPARENT], log_path=tmp_path / "c.log").start()
    grandchild = _grandchild_pid(child)
    child.stop()
    assert wait_gone(child.pid) and wait_gone(grandchild)
    assert not child.group_alive()


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path):
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(600)"
    )
    child = ChildProcess([sys.executable, "-c", code], log_path=tmp_path / "c.log").start()
    while "ready" not in child.log_path.read_text():
        time.sleep(0.05)
    start = time.monotonic()
    child.stop(grace_s=1.0)
    assert wait_gone(child.pid) and time.monotonic() - start < 10


def launcher_script(log_path, then: str = "") -> str:
    """A Python program that starts a sleeping ChildProcess, prints its pid, then runs ``then``."""
    child = f"ChildProcess([sys.executable, '-c', 'import time; time.sleep(600)'], log_path={str(log_path)!r})"
    head = "import sys, time\nfrom serve.launcher import ChildProcess\n"
    return f"{head}c = {child}.start()\nprint(c.pid, flush=True)\n{then}"


def test_child_dies_when_its_launcher_is_killed(tmp_path):
    launcher = launcher_script(tmp_path / "c.log", then="time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", launcher], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    assert running(child_pid)
    parent.send_signal(signal.SIGKILL)  # no atexit, no finally: only the kernel can clean up
    parent.wait()
    assert wait_gone(child_pid), "the child outlived its SIGKILLed launcher"


def test_child_stopped_at_exit(tmp_path):
    launcher = launcher_script(tmp_path / "c.log")
    done = subprocess.run([sys.executable, "-c", launcher], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert wait_gone(int(done.stdout.split()[0]))


def test_startup_failure_shows_the_log_tail(tmp_path):
    plan = plan_servers([judges(tmp_path)[0]], load_serve_config(None, ["--vllm.port=9198"]).vllm)[0]
    server = VLLMServer(plan, load_serve_config().vllm, log_dir=tmp_path)
    server.child = ChildProcess(
        [sys.executable, "-c", "import sys; print('ValueError: no such model'); sys.exit(3)"],
        log_path=tmp_path / "v.log",
    )
    server.child.start()
    with pytest.raises(ServerError) as err:
        server.wait_healthy(30)
    assert "exited with code 3" in str(err.value) and "ValueError: no such model" in str(err.value)


def test_startup_timeout_stops_the_server(tmp_path):
    plan = plan_servers([judges(tmp_path)[0]], load_serve_config(None, ["--vllm.port=9199"]).vllm)[0]
    server = VLLMServer(plan, load_serve_config().vllm, log_dir=tmp_path)
    server.child = ChildProcess(
        [sys.executable, "-c", "print('loading...', flush=True); import time; time.sleep(600)"],
        log_path=tmp_path / "v.log",
    )
    server.child.start()
    with pytest.raises(ServerError) as err:
        server.wait_healthy(1.0)
    assert "did not become healthy within 1s" in str(err.value) and "loading..." in str(err.value)
    assert wait_gone(server.pid)
