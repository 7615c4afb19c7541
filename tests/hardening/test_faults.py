"""Faults: SIGKILL mid-batch and mid-training, then a rerun; an engine that is gone or hangs; every
network call bounded by a timeout. (vLLM killed under the judge API: test_vllm_faults.py.)"""

import ast
import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import load_file

from data.errors import ServerError, ServerUnavailable
from data.render import render
from data.schema import Item
from data.spec import load_spec
from serve.api import create_app
from serve.client import JudgeClient
from serve.service import JudgeService
from serve.vllm_backend import VLLMBackend
from tests.serve.helpers import APIServer, free_port, pairwise_items, write_jsonl
from tests.serve.test_api import GOOD, serving  # noqa: F401  (fixture)
from tests.train.helpers import pairwise_items as train_items
from tests.train.helpers import write_items

REPO = Path(__file__).resolve().parents[2]


def line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


# ------------------------------------------------------------------ SIGKILL during batch scoring
def test_sigkill_during_batch_scoring_then_rerun_loses_and_duplicates_nothing(tiny_specs, tmp_path):
    n = 800
    src = write_jsonl(tmp_path / "items.jsonl", pairwise_items(n))
    out = tmp_path / "verdicts.jsonl"
    cmd = [
        sys.executable,
        "judgeloop.py",
        "score",
        "--judge",
        str(tiny_specs["pairwise"]),
        "--in",
        str(src),
        "--out",
        str(out),
        "--engine=transformers",
        "--batch-size",
        "8",
        "-q",
    ]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(first, lambda: line_count(out) >= 100)
    at_kill = line_count(out)
    assert 0 < at_kill < n, f"the kill landed at {at_kill} of {n} lines"
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-2000:]
    ids = Counter(json.loads(line)["id"] for line in out.read_text().splitlines())
    assert set(ids) == {f"p{i}" for i in range(n)}, "lost ids"
    assert max(ids.values()) == 1, "duplicated ids"
    assert f"{n} verdict(s), 0 error(s)" in second.stdout and "already in the output were skipped" in second.stdout


# ------------------------------------------------------------------ SIGKILL during training
@pytest.mark.slow
def test_sigkill_during_training_resumes_and_ends_equal_to_an_uninterrupted_run(tiny_model_dir, tmp_path):
    data = write_items(tmp_path / "train.jsonl", train_items(48, "t"))

    def cmd(out: Path, *extra):
        return [
            sys.executable,
            "-m",
            "judgeloop",
            "train",
            "--spec=helpfulness-pairwise",
            f"--base_model={tiny_model_dir}",
            f"--data.train={data}",
            f"--output_dir={out}",
            "--max_steps=24",
            "--eval.steps=6",
            "--batch_size=4",
            "--learning_rate=5e-3",
            "--logging_steps=1",
            "--lora.rank=4",
            "--lora.alpha=8",
            *extra,
        ]

    whole = subprocess.run(cmd(tmp_path / "whole"), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(cmd(killed), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: (killed / "checkpoints" / "checkpoint-6" / "trainer_state.json").exists())
    assert not (killed / "judge.json").exists(), "the kill landed after the run had finished"
    resumed = subprocess.run(cmd(killed, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "--resume: continuing from" in resumed.stdout + resumed.stderr  # from checkpoint-6 or a later one
    a = load_file(tmp_path / "whole" / "adapter" / "adapter_model.safetensors")
    b = load_file(killed / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:  # the same batches, RNG and optimizer state: equal within float noise
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    steps = [
        json.loads(line)["step"]
        for line in (killed / "train_log.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert steps == sorted(set(steps)), "log lines after the checkpoint were not dropped"


def test_a_checkpoint_cut_short_by_a_kill_is_skipped_on_resume(tmp_path):
    from train.trainer import last_complete_checkpoint

    for step, complete in ((3, True), (6, True), (9, False)):
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        if complete:
            (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-12").mkdir()
    (tmp_path / "checkpoint-12" / "trainer_state.json").write_text('{"global_st')  # torn mid-write
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-6")


# ------------------------------------------------------------------ engines that are gone or hang
class Hanging:
    """A TCP server that accepts connections and never answers (a stuck engine or API)."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        while not self.stop:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return

    def __exit__(self, *exc):
        self.stop = True
        self.sock.close()
        for c in self.conns:
            c.close()


def prompts(tokenizer, n=2):
    spec = load_spec("helpfulness-pairwise")
    return spec, [render(spec, Item(**d), tokenizer) for d in pairwise_items(n)]


def test_a_hanging_vllm_costs_a_bounded_time(tokenizer):
    spec, ps = prompts(tokenizer)
    with Hanging() as server, VLLMBackend([server.url], "m", tokenizer, timeout_s=1.0, retries=1, backoff_s=0.1) as b:
        start = time.monotonic()
        out = b.label_probs(ps, spec)
        assert time.monotonic() - start < 5
        assert all(isinstance(x, ServerError) and "timed out after 1s" in str(x) for x in out)


def test_a_hanging_judge_api_costs_the_client_a_bounded_time():
    with Hanging() as server, JudgeClient(server.url, api_key="k", timeout_s=1.0, retries=0) as client:
        start = time.monotonic()
        with pytest.raises(ServerUnavailable):
            client.judges()
        assert time.monotonic() - start < 5


class Stuck:
    """A backend whose every call blocks far longer than the API's request timeout."""

    def label_probs(self, prompts, spec):
        time.sleep(4)


def test_api_answers_503_with_a_reason_when_scoring_is_stuck_or_the_engine_is_gone(serving, tokenizer):
    good = serving.services["tiny-helpfulness"]
    stuck = JudgeService(good.served, good.tokenizer, Stuck())
    gone = JudgeService(
        good.served,
        good.tokenizer,
        VLLMBackend([f"http://127.0.0.1:{free_port()}"], "m", good.tokenizer, retries=3, backoff_s=5.0),
    )
    app = create_app({"stuck": stuck, "gone": gone, "tiny-helpfulness": good}, api_key=None, request_timeout_s=1.5)
    with APIServer(app) as server:
        for name, reason in (("stuck", "not scored within 1.5s"), ("gone", "no engine can answer now")):
            start = time.monotonic()
            resp = httpx.post(server.url + "/v1/judge", json={**GOOD, "judge": name}, timeout=30)
            assert time.monotonic() - start < 5
            assert resp.status_code == 503 and reason in resp.json()["error"], resp.text
            assert int(resp.headers["retry-after"]) > 0
        # still up (a real scoring pass is not asserted here: 1.5 s is tight for it on 2 busy cores)
        assert httpx.get(server.url + "/v1/judges", timeout=30).status_code == 200
    gone.backend.close()


def test_a_batch_run_stops_when_no_engine_is_reachable_and_the_rerun_scores_the_rest(tmp_path):
    from data.schema import JudgeRef, Verdict
    from serve.batch import score_file

    ref = JudgeRef(name="t", fingerprint="f")
    src = write_jsonl(tmp_path / "in.jsonl", pairwise_items(6))
    out = tmp_path / "out.jsonl"
    calls = []

    def engine_dies_after_two_batches(batch):
        calls.append(batch)
        if len(calls) > 2:
            raise ServerUnavailable("no vLLM endpoint is reachable")
        return [Verdict(id=i.id, verdict="A", judge=ref) for i in batch]

    with pytest.raises(ServerUnavailable):
        score_file(src, out, engine_dies_after_two_batches, ref, batch_size=2, progress=False)
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["p0", "p1", "p2", "p3"]  # no error rows
    summary = score_file(
        src, out, lambda b: [Verdict(id=i.id, verdict="B", judge=ref) for i in b], ref, batch_size=2, progress=False
    )
    assert (summary.skipped, summary.scored, summary.total, summary.errors) == (4, 2, 6, 0)


def test_every_http_call_in_serve_has_a_timeout():
    """httpx's clients and one-shot calls in serve/ all pass timeout= (no call can wait forever)."""
    unbounded = []
    for path in sorted((REPO / "serve").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "httpx"
                and node.func.attr in ("Client", "AsyncClient", "get", "post", "request", "stream")
                and not any(k.arg == "timeout" for k in node.keywords)
            ):
                unbounded.append(f"{path.name}:{node.lineno} httpx.{node.func.attr}")
    assert not unbounded, unbounded


def test_the_async_client_is_bounded_too():
    from serve.client import AsyncJudgeClient

    async def run():
        with Hanging() as server:
            async with AsyncJudgeClient(server.url, api_key="k", timeout_s=1.0, retries=0) as client:
                await client.judges()

    start = time.monotonic()
    with pytest.raises(ServerUnavailable):
        asyncio.run(run())
    assert time.monotonic() - start < 5


# ------------------------------------------------------------------ what a failing engine shows a client
VLLM_SECRET_TEXT = "CUDA error: out of memory in worker 3 at /opt/vllm/engine.py"


class Refusing:
    """An HTTP server that answers every request 400 with an internal error text, as a broken vLLM can."""

    def __enter__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length") or 0))
                body = json.dumps({"error": {"message": f"{VLLM_SECRET_TEXT} ({self.server.url})"}}).encode()
                self.send_response(400)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = self.server.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_engine_failures_show_a_client_a_request_id_never_vllm_urls_or_errors(serving, caplog):
    """The detail (where vLLM listens, what it said) goes to the server log under the request id."""
    import logging

    good = serving.services["tiny-helpfulness"]
    gone_url = f"http://127.0.0.1:{free_port()}"
    with Hanging() as hanging, Refusing() as refusing:
        backends = {
            "hangs": VLLMBackend([hanging.url], "m", good.tokenizer, timeout_s=0.5, retries=0),
            "refuses": VLLMBackend([refusing.url], "m", good.tokenizer, retries=0),
            "gone": VLLMBackend([gone_url], "m", good.tokenizer, retries=0),
        }
        services = {name: JudgeService(good.served, good.tokenizer, b) for name, b in backends.items()}
        urls = (hanging.url, refusing.url, gone_url)
        answers = {}
        with caplog.at_level(logging.WARNING, "judgeloop.api"):
            with APIServer(create_app(services, api_key=None)) as server:
                for name in backends:
                    answers[name] = httpx.post(server.url + "/v1/judge", json={**GOOD, "judge": name}, timeout=30)
            health_services = {n: services[n] for n in ("refuses", "gone")}  # (a hanging /health takes 5 s)
            with APIServer(create_app(health_services, api_key=None)) as server:
                answers["health"] = httpx.get(server.url + "/health", timeout=30)
        for b in backends.values():
            b.close()
    for name in ("hangs", "refuses"):  # per-item errors
        resp = answers[name]
        assert resp.status_code == 200, resp.text
        (verdict,) = resp.json()["verdicts"]
        assert verdict["verdict"] is None and verdict["error"].startswith("backend: the engine could not score")
        assert resp.headers["x-request-id"] in verdict["error"]
    gone = answers["gone"]
    assert gone.status_code == 503 and "no engine can answer now" in gone.json()["error"]
    assert gone.json()["request_id"] == gone.headers["x-request-id"]
    assert answers["health"].status_code == 503 and set(answers["health"].json()["engines"]) == {"engine-1", "engine-2"}
    for name, resp in answers.items():
        for text in (*urls, "127.0.0.1", VLLM_SECRET_TEXT, "ConnectError", "timed out"):
            assert text not in resp.text, (name, text, resp.text)
    for name in ("hangs", "refuses", "gone"):  # ... and the server log has what happened, under the request id
        request_id = answers[name].headers["x-request-id"]
        assert any(request_id in r.getMessage() for r in caplog.records), name
    assert all(url in caplog.text for url in urls) and VLLM_SECRET_TEXT in caplog.text
