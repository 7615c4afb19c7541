"""Access: the API key is required by default and compared in constant time; vLLM is bound to
loopback with runtime LoRA loading off; adapters load only from inside their judge directory;
registry names cannot be paths; the secret never reaches a log, a report or vLLM."""

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from data.errors import ConfigError, JudgeloopError, ModelError
from data.spec import load_spec
from judge.loading import load_judge
from judge.registry import Registry
from serve import api as api_module
from serve.config import load_serve_config
from serve.launcher import plan_servers, vllm_command, vllm_env
from tests.hardening.test_faults import line_count  # noqa: F401
from tests.serve.helpers import free_port, lora_judge, pairwise_items, write_jsonl
from tests.serve.test_launcher import judges

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cret-0d6f1e2a9b7c4455"


def test_the_default_config_requires_an_api_key(monkeypatch):
    cfg = load_serve_config()
    assert cfg.api.no_auth_on_loopback is False
    monkeypatch.delenv(cfg.api.api_key_env, raising=False)
    with pytest.raises(ConfigError, match="needs an API key"):
        cfg.api.api_key()


def test_the_key_is_compared_in_constant_time():
    source = inspect.getsource(api_module.create_app)
    assert "hmac.compare_digest(" in source and "== api_key" not in source and "api_key ==" not in source


def test_vllm_binds_loopback_and_runtime_lora_stays_off_whatever_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")
    monkeypatch.setenv("JUDGELOOP_API_KEY", SECRET)
    cfg = load_serve_config(None, ["--vllm.port=9300"]).vllm
    for plan in plan_servers(judges(tmp_path), cfg):
        cmd = vllm_command(plan, cfg)
        assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd.count("--host") == 1
        env = vllm_env(plan, cfg)
        assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "False"
        assert "JUDGELOOP_API_KEY" not in env and SECRET not in " ".join(cmd)
    assert not any(f.name in ("host", "allow_runtime_lora") for f in __import__("dataclasses").fields(type(cfg)))


def judge_dir(tmp_path: Path, adapter: str) -> Path:
    d = tmp_path / "judge"
    d.mkdir(exist_ok=True)
    spec = load_spec("helpfulness-pairwise").to_dict()
    (d / "judge.json").write_text(json.dumps({"spec": spec, "base_model": "x", "adapter": adapter, "fingerprint": "f"}))
    return d


@pytest.mark.parametrize("adapter", ["../../etc", "/etc", "adapter/../../outside"])
def test_an_adapter_outside_its_judge_directory_is_refused(tmp_path, adapter):
    with pytest.raises(ModelError, match="outside its judge directory") as err:
        load_judge(judge_dir(tmp_path, adapter))
    assert err.value.first.field == "adapter"


def test_a_symlink_out_of_the_judge_directory_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    d = judge_dir(tmp_path, "adapter")
    (d / "adapter").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ModelError, match="outside its judge directory"):
        load_judge(d)


def test_an_adapter_inside_its_judge_directory_loads(serve_model_dir, tiny_specs, tmp_path):
    run = lora_judge(serve_model_dir, tiny_specs["pairwise"], tmp_path / "run")
    assert load_judge(run).adapter_path == str(run / "adapter")


@pytest.mark.parametrize("name", ["../../etc", "/etc", ".hidden", "a/b", ""])
def test_registry_names_cannot_be_paths(tmp_path, name):
    with pytest.raises(JudgeloopError, match="not a usable judge name"):
        Registry(tmp_path).resolve(name)
    with pytest.raises(JudgeloopError, match="not a usable judge name"):
        load_judge(f"registry:{name}") if name else Registry(tmp_path).load(name)


def test_the_secret_never_reaches_logs_verdict_log_or_reports(tiny_specs, tmp_path):
    env = {**os.environ, "JUDGELOOP_API_KEY": SECRET}
    port, logs = free_port(), tmp_path / "logs"
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "judgeloop",
            "serve",
            "--engine=transformers",
            f"--judges=[{tiny_specs['pairwise']}]",
            f"--api.port={port}",
            f"--log_dir={logs}",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        item = pairwise_items(1)[0]
        ok = httpx.post(
            url + "/v1/judge", json={"item": item}, headers={"Authorization": f"Bearer {SECRET}"}, timeout=60
        )
        assert ok.status_code == 200, ok.text
        for wrong in (SECRET[:-1], SECRET + "x", f"{SECRET} {SECRET}"):
            resp = httpx.post(url + "/v1/judge", json={"item": item}, headers={"Authorization": f"Bearer {wrong}"})
            assert resp.status_code == 401 and SECRET not in resp.text
        assert SECRET not in httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {SECRET}"}).text
    finally:
        serve.send_signal(signal.SIGTERM)
        output = serve.communicate(timeout=60)[0]
    assert "judge API on" in output
    # eval and report in the same environment
    items = write_jsonl(tmp_path / "items.jsonl", [{**r, "labels": ["A"], "label": "A"} for r in pairwise_items(4)])
    for argv in (
        [
            "eval",
            "--judge",
            str(tiny_specs["pairwise"]),
            "--engine",
            "transformers",
            "--items",
            str(items),
            "--spec",
            str(tiny_specs["pairwise"]),
            "--out",
            str(tmp_path / "eval"),
            "--n-boot",
            "20",
        ],
        ["report", str(tmp_path / "eval" / "validation.json"), "--out", str(tmp_path / "report")],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "judgeloop", *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr[-2000:]
        output += done.stdout + done.stderr
    assert SECRET not in output
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "report.html" for p in written) and any(p.name == "validation.json" for p in written)
    leaked = [str(p) for p in written if SECRET.encode() in p.read_bytes()]
    assert not leaked, leaked
