"""Load: 1000 concurrent requests to the judge API on loopback. Every one gets a verdict, or, under a
configured concurrency limit, an explicit 429 with a JSON reason; never a dropped connection.
p50/p99 go to benchmarks/results/load.json when JUDGELOOP_LOAD_RESULTS names it (the vLLM run is added by
test_vllm_faults.py)."""

import asyncio
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest

from serve.api import create_app
from tests.serve.helpers import APIServer, pairwise_items
from tests.serve.test_api import KEY, serving  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow
# the committed figures are rewritten only on request, never by a plain test run:
#   JUDGELOOP_LOAD_RESULTS=benchmarks/results/load.json \
#     pytest tests/hardening/test_load.py tests/hardening/test_vllm_faults.py
RESULTS_ENV = "JUDGELOOP_LOAD_RESULTS"
N = 1000


def fire(url: str, n: int, judge: str, key: str, timeout_s: float = 600) -> dict:
    """``n`` requests at once (one connection each); statuses, transport failures, latencies."""
    bodies = [{"judge": judge, "item": item} for item in pairwise_items(n, prefix="load")]

    async def one(client, body):
        start = time.perf_counter()
        try:
            resp = await client.post("/v1/judge", json=body)
        except httpx.HTTPError as exc:  # a dropped or refused connection, a timeout
            return None, type(exc).__name__, time.perf_counter() - start
        ok_json = resp.headers.get("content-type", "").startswith("application/json")
        reason = resp.json().get("error") if ok_json and resp.status_code != 200 else None
        if resp.status_code == 200:
            v = resp.json()["verdicts"][0]
            reason = None if v["error"] is None and v["verdict"] in ("A", "B", "tie") else f"bad verdict {v}"
        return resp.status_code, reason, time.perf_counter() - start

    async def run():
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=timeout_s
        ) as client:
            start = time.perf_counter()
            out = await asyncio.gather(*(one(client, b) for b in bodies))
            return out, time.perf_counter() - start

    results, wall = asyncio.run(run())
    statuses = Counter(str(s) for s, _, _ in results)
    ok_ms = np.array([t * 1000 for s, _, t in results if s == 200])
    return {
        "requests": n,
        "concurrent": n,
        "statuses": dict(statuses),
        "transport_failures": sum(s is None for s, _, _ in results),
        "bad_answers": [r for s, r, _ in results if s in (200, 429, 503) and s != 200 and not r or s == 200 and r][:3],
        "other_status": sorted({s for s, _, _ in results if s not in (200, 429, 503)}, key=str),
        "p50_ms": round(float(np.percentile(ok_ms, 50)), 1) if len(ok_ms) else None,
        "p99_ms": round(float(np.percentile(ok_ms, 99)), 1) if len(ok_ms) else None,
        "max_ms": round(float(ok_ms.max()), 1) if len(ok_ms) else None,
        "wall_s": round(wall, 2),
        "verdicts_per_s": round(len(ok_ms) / wall, 1),
    }


def record(name: str, figures: dict) -> None:
    """Print the figures (pytest -s shows them); merge them into $JUDGELOOP_LOAD_RESULTS when it is set."""
    print(name, json.dumps(figures))
    if not os.environ.get(RESULTS_ENV):
        return
    results = Path(os.environ[RESULTS_ENV])
    data = json.loads(results.read_text()) if results.exists() else {}
    data["what"] = (
        f"{N} concurrent POST /v1/judge requests (one pairwise item, both orders) on loopback, one "
        "connection each; latency of the answered ones; tests/hardening/test_load.py and test_vllm_faults.py"
    )
    data[name] = {
        **figures,
        "measured": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, 2 CPU cores shared with other work",
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(data, indent=2) + "\n")


def api_server(app) -> APIServer:
    server = APIServer(app)
    server.server.config.limit_concurrency = None  # the app's own limit answers, with a JSON 429
    server.server.config.backlog = 2048
    return server


def test_1000_concurrent_requests_all_get_verdicts(serving):
    app = create_app(serving.services, api_key=KEY)  # the default limits: 256 scoring, 2048 waiting
    with api_server(app) as server:
        figures = fire(server.url, N, "tiny-helpfulness", KEY)
    assert figures["transport_failures"] == 0 and not figures["other_status"], figures
    assert figures["statuses"] == {"200": N} and not figures["bad_answers"], figures
    record(
        "in_process_tiny_model",
        {
            **figures,
            "engine": "transformers in-process, tiny random Llama",
            "limits": {"max_concurrent_requests": 256, "max_queued_requests": 2048},
        },
    )


def test_over_the_configured_limit_requests_get_429_never_a_dropped_connection(serving):
    app = create_app(serving.services, api_key=KEY, max_concurrent_requests=4, max_queued_requests=16)
    with api_server(app) as server:
        figures = fire(server.url, N, "tiny-helpfulness", KEY)
        after = httpx.post(
            server.url + "/v1/judge",
            json={"judge": "tiny-helpfulness", "item": pairwise_items(1)[0]},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=60,
        )
    assert figures["transport_failures"] == 0 and not figures["other_status"], figures
    assert figures["statuses"].get("429", 0) > 0 and figures["statuses"].get("200", 0) >= 20, figures
    assert sum(figures["statuses"].values()) == N and not figures["bad_answers"], figures
    assert after.status_code == 200  # the limit is a queue, not a fuse
    record("in_process_limited", {**figures, "limits": {"max_concurrent_requests": 4, "max_queued_requests": 16}})
