"""The client's one retry policy against real loopback servers: it waits what ``Retry-After`` asks
(seconds or an HTTP date), gives up at once on a wait longer than its timeout, and backs off without one."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import httpx
import pytest

from data.errors import ServerError, ServerUnavailable
from data.spec import load_spec
from serve.api import create_app
from serve.client import AsyncJudgeClient, JudgeClient, retry_after_s
from tests.serve.helpers import APIServer

JUDGES = {"judges": [{"name": "j"}]}


class Scripted:
    """An HTTP server on loopback that answers GET /v1/judges with the scripted (status, headers) in turn,
    then 200; it records when each request came."""

    def __init__(self, *answers: tuple[int, dict[str, str]]):
        self.answers = list(answers)
        self.times: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.times.append(time.monotonic())
                status, headers = outer.answers.pop(0) if outer.answers else (200, {})
                body = json.dumps(JUDGES if status == 200 else {"error": f"scripted {status}"}).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", "Content-Length": str(len(body)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:])]


@pytest.mark.parametrize("status", [429, 503])
def test_a_retry_after_in_seconds_is_waited_for(status):
    with Scripted((status, {"Retry-After": "1"})) as server, JudgeClient(server.url, api_key="k", backoff_s=0.01) as c:
        assert c.judges() == JUDGES["judges"]
    assert len(server.times) == 2 and 0.9 <= server.gaps()[0] < 2.0, server.gaps()


def test_a_retry_after_as_an_http_date_is_waited_for():
    when = formatdate(time.time() + 2, usegmt=True)  # whole seconds: the wait is 1 to 2 s
    with Scripted((503, {"Retry-After": when})) as server, JudgeClient(server.url, api_key="k", backoff_s=0.01) as c:
        assert c.judges() == JUDGES["judges"]
    assert len(server.times) == 2 and 0.9 <= server.gaps()[0] < 3.0, server.gaps()


def test_a_retry_after_longer_than_the_timeout_gives_up_at_once():
    with Scripted((429, {"Retry-After": "60"})) as server, JudgeClient(server.url, api_key="k", timeout_s=5) as c:
        start = time.monotonic()
        with pytest.raises(ServerUnavailable, match="429"):
            c.judges()
        assert time.monotonic() - start < 2
    assert len(server.times) == 1


def test_without_retry_after_it_backs_off_and_then_says_why():
    answers = [(502, {})] * 3
    with Scripted(*answers) as server, JudgeClient(server.url, api_key="k", retries=2, backoff_s=0.2) as c:
        with pytest.raises(ServerError, match="502") as err:
            c.judges()
    assert not isinstance(err.value, ServerUnavailable)
    assert len(server.times) == 3
    assert 0.15 <= server.gaps()[0] < 1.0 and 0.35 <= server.gaps()[1] < 1.5, server.gaps()  # 0.2 s, then 0.4 s


def test_the_async_client_follows_the_same_policy():
    async def run(url, **kw):
        async with AsyncJudgeClient(url, api_key="k", backoff_s=0.01, **kw) as c:
            return await c.judges()

    with Scripted((429, {"Retry-After": "1"})) as server:
        assert asyncio.run(run(server.url)) == JUDGES["judges"]
    assert len(server.times) == 2 and 0.9 <= server.gaps()[0] < 2.0, server.gaps()
    with Scripted((503, {"Retry-After": "30"})) as server, pytest.raises(ServerUnavailable, match="503"):
        asyncio.run(run(server.url, timeout_s=5))
    assert len(server.times) == 1


def test_the_judge_api_429_is_retried_after_its_retry_after():
    """The API itself: with no room to admit a request it answers 429 with ``Retry-After: 1``; the client
    waits that second before its one retry, then gives up with ServerUnavailable."""
    services = {"j": SimpleNamespace(spec=load_spec("helpfulness-pairwise"))}  # refused before scoring
    app = create_app(services, api_key=None, max_concurrent_requests=0, max_queued_requests=0)
    item = {"instruction": "2+2?", "response_a": "4", "response_b": "5"}
    with APIServer(app) as server:
        assert httpx.post(server.url + "/v1/judge", json={"item": item}, timeout=30).headers["retry-after"] == "1"
        with JudgeClient(server.url, retries=1, backoff_s=0.01) as client:
            start = time.monotonic()
            with pytest.raises(ServerUnavailable, match="429"):
                client.judge(item, "j")
            assert 0.9 <= time.monotonic() - start < 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3.0), ("0", 0.0), ("-4", 0.0), ("soon", None), ("", None), (formatdate(0, usegmt=True), 0.0)],
)
def test_retry_after_values(value, expected):
    resp = httpx.Response(503, headers={"Retry-After": value} if value else {})
    assert retry_after_s(resp) == expected
