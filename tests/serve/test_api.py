"""The judge API on the in-process engine (fast): auth, every kind of bad request, limits, hooks, metrics."""

import asyncio
import json
import logging
import socket
import time

import httpx
import pytest
import yaml

from data.errors import ServerError
from serve.api import create_app
from serve.client import JudgeClient
from serve.config import load_serve_config
from serve.service import start_judges
from tests.serve.helpers import POEM, APIServer, binary_items, pairwise_items

KEY = "test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def serving(tiny_specs, tmp_path_factory):
    cfg = load_serve_config(None, ["--engine=transformers"])
    judges = [str(tiny_specs["pairwise"]), str(tiny_specs["binary"]), str(verbose_spec(tiny_specs, tmp_path_factory))]
    with start_judges(cfg, judges=judges, candidates=[]) as s:
        yield s


def verbose_spec(tiny_specs, tmp_path_factory):
    """A judge whose rubric alone is longer than the model's context: the one way an item gets no verdict."""
    from tests.serve.helpers import spec_file

    base = yaml.safe_load(tiny_specs["pairwise"].read_text())["base_model"]
    return spec_file(tmp_path_factory.mktemp("verbose"), base, "tiny-verbose", criteria="Be thorough. " * 800)


@pytest.fixture(scope="module")
def api(serving):
    logged = []
    app = create_app(
        serving.services,
        api_key=KEY,
        max_body_bytes=20_000,
        max_batch_items=8,
        verdict_logger=lambda item, verdict: logged.append((item, verdict)),
    )
    with APIServer(app) as server:
        server.logged = logged
        yield server


def post(api, body, key=KEY, **kw):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, (bytes, str)):
        return httpx.post(
            api.url + "/v1/judge", content=body, headers={**headers, "content-type": "application/json"}, **kw
        )
    return httpx.post(api.url + "/v1/judge", json=body, headers=headers, **kw)


LONE_SURROGATE = (
    b'{"judge": "tiny-helpfulness", "item": {"instruction": "\\ud800", "response_a": "a", "response_b": "b"}}'
)
GOOD = {
    "judge": "tiny-helpfulness",
    "item": {"instruction": "Capital of France?", "response_a": "Paris.", "response_b": POEM},
}


def test_one_item_gets_a_verdict_with_probs_and_fingerprint(api, serving):
    resp = post(api, GOOD)
    assert resp.status_code == 200, resp.text
    (v,) = resp.json()["verdicts"]
    assert v["verdict"] in ("A", "B", "tie") and abs(sum(v["probs"].values()) - 1) < 1e-9
    assert v["judge"]["fingerprint"] == serving.services["tiny-helpfulness"].ref.fingerprint
    assert v["id"] == "0" and v["error"] is None and v["consistent"] in (True, False)


@pytest.mark.parametrize("key", [None, "wrong-key", KEY + "x"])
def test_api_key_required(api, key):
    resp = post(api, GOOD, key=key)
    assert resp.status_code == 401 and "API key" in resp.json()["error"]
    assert resp.headers["www-authenticate"] == "Bearer"
    assert httpx.get(api.url + "/v1/judges", headers={"Authorization": f"Bearer {key}"}).status_code == 401


BAD = [
    ("malformed JSON", b'{"judge": "tiny-helpfulness", "item": {', 400, "malformed JSON"),
    ("not an object", b"[1, 2]", 422, "body"),
    ("unknown judge", {**GOOD, "judge": "tiny-helpfulnes"}, 404, "did you mean 'tiny-helpfulness'"),
    (
        "missing response_b",
        {"judge": "tiny-helpfulness", "item": {"instruction": "x", "response_a": "a"}},
        422,
        "needs 'response_b'",
    ),
    (
        "missing instruction",
        {"judge": "tiny-helpfulness", "item": {"response_a": "a", "response_b": "b"}},
        422,
        "item.instruction",
    ),
    ("no item", {"judge": "tiny-helpfulness"}, 422, "exactly one of 'item' or 'items'"),
    ("unknown field", {**GOOD, "temperature": 0.5}, 422, "temperature"),
    ("wrong kind", {"judge": "tiny-helpfulness", "item": {"instruction": "x", "response": "r"}}, 422, "response_a"),
    ("batch over the limit", {"judge": "tiny-helpfulness", "items": pairwise_items(9)}, 413, "limit of 8"),
    ("oversize body", {**GOOD, "item": {**GOOD["item"], "response_a": "x" * 30_000}}, 413, "20000 bytes"),
    # "\ud800" is valid JSON but no text: it used to reach the tokenizer (500) and cost the connection
    (
        "lone surrogate in an item",
        LONE_SURROGATE,
        422,
        "item.instruction: text with a lone surrogate",
    ),
    (
        "lone surrogate in the judge name (echoed in a 404)",
        b'{"judge": "tiny\\udfff", "item": {"instruction": "x", "response_a": "a", "response_b": "b"}}',
        422,
        "judge: text with a lone surrogate",
    ),
    (
        "lone surrogate in a batch item's meta key",
        b'{"judge": "tiny-helpfulness", "items": [{"instruction": "x", "response_a": "a", "response_b": "b"}, '
        b'{"instruction": "x", "response_a": "a", "response_b": "b", "meta": {"\\udc00": 1}}]}',
        422,
        "items.1.meta",
    ),
]


@pytest.mark.parametrize("case,body,status,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_with_a_reason_and_the_server_stays_up(api, case, body, status, reason):
    resp = post(api, body)
    assert resp.status_code == status, resp.text
    assert reason in resp.json()["error"]
    assert post(api, GOOD).status_code == 200


def local_port(resp: httpx.Response) -> int:
    """The client side's port of the connection that carried ``resp`` (same port: same connection)."""
    return resp.extensions["network_stream"].get_extra_info("client_addr")[1]


def test_a_lone_surrogate_is_a_422_and_the_same_connection_then_gets_its_verdict(api):
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
        bad = client.post(api.url + "/v1/judge", content=LONE_SURROGATE, headers={"content-type": "application/json"})
        assert bad.status_code == 422 and "item.instruction" in bad.json()["error"], bad.text
        assert bad.json()["request_id"] == bad.headers["x-request-id"]
        good = client.post(api.url + "/v1/judge", json=GOOD)
        assert good.status_code == 200 and good.json()["verdicts"][0]["error"] is None
        assert local_port(good) == local_port(bad)  # the server kept the connection open


def test_form_body_is_refused_with_a_reason(api):
    resp = httpx.post(
        api.url + "/v1/judge",
        content=json.dumps(GOOD),
        headers={"Authorization": f"Bearer {KEY}", "content-type": "text/plain"},
    )
    assert resp.status_code == 415 and "application/json" in resp.json()["error"]


def test_chunked_oversize_body_is_refused(api):
    def chunks():
        for _ in range(30):
            yield b"x" * 1000

    resp = httpx.post(api.url + "/v1/judge", content=chunks(), headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status_code == 413


def test_several_judges_for_the_same_item(api):
    item = {"instruction": "What is 2 + 2?", "reference": "4", "response": "4"}
    resp = post(api, {"judges": ["tiny-correctness", "tiny-correctness"], "items": [item, {**item, "response": "5"}]})
    assert resp.status_code == 200, resp.text
    verdicts = resp.json()["verdicts"]
    assert [v["id"] for v in verdicts] == ["0", "0", "1", "1"]
    assert all(v["verdict"] in ("yes", "no") for v in verdicts)


def test_every_served_verdict_reaches_the_logger(api):
    api.logged.clear()
    items = [dict(d) for d in binary_items(3)]
    resp = post(api, {"judge": "tiny-correctness", "items": items})
    assert resp.status_code == 200
    assert [(item.id, v.id) for item, v in api.logged] == [("b0", "b0"), ("b1", "b1"), ("b2", "b2")]
    assert all(item.kind == "binary" and v.verdict in ("yes", "no") for item, v in api.logged)


def test_judges_health_metrics_and_docs(api, serving):
    headers = {"Authorization": f"Bearer {KEY}"}
    listed = httpx.get(api.url + "/v1/judges", headers=headers).json()["judges"]
    assert {j["name"] for j in listed} == {"tiny-helpfulness", "tiny-correctness", "tiny-verbose"}
    assert all(j["status"] == "production" and len(j["fingerprint"]) == 64 for j in listed)
    assert httpx.get(api.url + "/health").status_code == 200
    post(api, GOOD)
    post(api, {**GOOD, "judge": "nope"})
    assert httpx.get(api.url + "/metrics").status_code == 401
    text = httpx.get(api.url + "/metrics", headers=headers).text
    assert 'judgeloop_requests_total{route="/v1/judge",status="200"}' in text
    assert 'judgeloop_requests_total{route="/v1/judge",status="404"}' in text
    assert "judgeloop_request_latency_seconds_bucket" in text
    assert 'judgeloop_verdicts_total{judge="tiny-helpfulness",label=' in text
    schema = httpx.get(api.url + "/openapi.json").json()
    assert "/v1/judge" in schema["paths"] and httpx.get(api.url + "/docs").status_code == 200


def test_item_errors_are_verdicts_not_failures(api):
    resp = post(api, {"judges": ["tiny-verbose", "tiny-helpfulness"], "item": GOOD["item"]})
    assert resp.status_code == 200, resp.text
    verdicts = {v["judge"]["name"]: v for v in resp.json()["verdicts"]}
    bad, good = verdicts["tiny-verbose"], verdicts["tiny-helpfulness"]
    assert bad["error"].startswith("render:") and "fixed parts alone" in bad["error"] and bad["verdict"] is None
    assert good["error"] is None and good["verdict"] in ("A", "B", "tie")


def test_verdict_errors_are_counted(api):
    post(api, {"judge": "tiny-verbose", "item": GOOD["item"]})
    text = httpx.get(api.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'judgeloop_verdict_errors_total{judge="tiny-verbose"}' in text


def test_python_client(api, serving):
    with JudgeClient(api.url, api_key=KEY) as client:
        v = client.judge(GOOD["item"], "tiny-helpfulness")
        assert v.verdict in ("A", "B", "tie") and v.judge.name == "tiny-helpfulness"
        batch = client.judge_batch(pairwise_items(3), "tiny-helpfulness", both_orders=False)
        assert [x.id for x in batch] == ["p0", "p1", "p2"] and all(x.consistent is None for x in batch)
        by_judge = client.judge_criteria({"instruction": "2+2?", "response": "4"}, ["tiny-correctness"])
        assert by_judge["tiny-correctness"].verdict in ("yes", "no")
        assert {j["name"] for j in client.judges()} == set(serving.services)
        with pytest.raises(ServerError, match="unknown judge"):
            client.judge(GOOD["item"], "nope")
    with JudgeClient(api.url, api_key="bad") as client, pytest.raises(ServerError, match="401"):
        client.judges()


def test_async_client(api):
    import asyncio

    from serve.client import AsyncJudgeClient

    async def run():
        async with AsyncJudgeClient(api.url, api_key=KEY) as client:
            return await asyncio.gather(*(client.judge(d, "tiny-helpfulness") for d in pairwise_items(5)))

    verdicts = asyncio.run(run())
    assert [v.id for v in verdicts] == [f"p{i}" for i in range(5)] and all(v.error is None for v in verdicts)


def test_client_reports_an_unreachable_api():
    with JudgeClient("http://127.0.0.1:9", api_key=KEY, retries=1, backoff_s=0.01) as client:
        with pytest.raises(ServerError, match="cannot reach"):
            client.judges()


def test_no_key_mode(serving):
    with APIServer(create_app(serving.services, api_key=None)) as server:
        assert httpx.post(server.url + "/v1/judge", json=GOOD).status_code == 200


def test_without_a_key_only_loopback_host_names_are_answered(serving, api):
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example."""
    with APIServer(create_app(serving.services, api_key=None, allowed_hosts=["Judge.Internal"])) as server:
        port = server.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "judge.internal:8000"):
            resp = httpx.get(server.url + "/v1/judges", headers={"Host": host})
            assert resp.status_code == 200, (host, resp.text)
        for host in (f"evil.example:{port}", "127.0.0.1.evil.example", f"localhost.evil.example:{port}", "[::2]"):
            resp = httpx.get(server.url + "/v1/judges", headers={"Host": host})
            assert resp.status_code == 421, (host, resp.text)
            assert f"not Host '{host}'" in resp.json()["error"] and "api.allowed_hosts" in resp.json()["error"]
        judged = httpx.post(server.url + "/v1/judge", json=GOOD, headers={"Host": "evil.example"})
        assert judged.status_code == 421 and "verdicts" not in judged.json()
        assert httpx.get(server.url + "/health", headers={"Host": "evil.example"}).status_code == 421
    # with a key, the key is the guard: any Host name (a proxy's, a DNS name) is fine
    resp = httpx.get(api.url + "/v1/judges", headers={"Host": "judge.example.com", "Authorization": f"Bearer {KEY}"})
    assert resp.status_code == 200


def _scope(content_length: int) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/judge",
        "raw_path": b"/v1/judge",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(content_length).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


def test_a_request_over_the_admission_limit_is_refused_before_its_body_is_read():
    """Memory is bounded by the queue limit: a 429 costs the server the headers, never the body."""
    app = create_app({}, api_key=None, max_concurrent_requests=1, max_queued_requests=0)
    body = json.dumps(GOOD).encode()

    async def run():
        release = asyncio.Event()
        first_sent, second_sent, third_sent, second_reads = [], [], [], []

        async def slow_upload():  # the first request is admitted and its body is still arriving
            await release.wait()
            return {"type": "http.disconnect"}

        async def recorded_body():
            second_reads.append(1)
            return {"type": "http.request", "body": body, "more_body": False}

        async def whole_body():
            return {"type": "http.request", "body": body, "more_body": False}

        async def collect(into, message):
            into.append(message)

        first = asyncio.create_task(app(_scope(len(body)), slow_upload, lambda m: collect(first_sent, m)))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(app(_scope(len(body)), recorded_body, lambda m: collect(second_sent, m)), 5)
        release.set()  # the first client goes away: its admission is given back
        await asyncio.wait_for(first, 5)
        await asyncio.wait_for(app(_scope(len(body)), whole_body, lambda m: collect(third_sent, m)), 5)
        return first_sent, second_sent, third_sent, second_reads

    first_sent, second_sent, third_sent, second_reads = asyncio.run(run())
    assert second_sent[0]["status"] == 429 and not second_reads, "the refused request's body was read"
    headers = dict(second_sent[0]["headers"])
    assert headers[b"retry-after"] == b"1" and headers[b"connection"] == b"close"
    assert "too many judge requests" in json.loads(second_sent[1]["body"])["error"]
    assert first_sent == []  # nobody left to answer
    assert third_sent[0]["status"] == 404  # admitted again (no judges here, so: unknown judge)


def _raw_request(url: str, head: bytes, wait_s: float = 10) -> bytes:
    """Send only a request's head (its body never comes) and return the start of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(head)
        return sock.recv(65536)


def test_429_and_413_come_at_once_while_the_body_is_still_unsent(serving):
    app = create_app(
        serving.services, api_key=KEY, max_body_bytes=20_000, max_concurrent_requests=1, max_queued_requests=0
    )
    head = (
        "POST /v1/judge HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: {n}\r\n\r\n"
    )
    with APIServer(app) as server:
        port = int(server.url.rsplit(":", 1)[1])
        oversize = _raw_request(server.url, head.format(key=KEY, n=10**9).encode())
        assert oversize.startswith(b"HTTP/1.1 413") and b"20000 bytes" in oversize
        with socket.create_connection(("127.0.0.1", port), timeout=10) as holder:
            holder.sendall(head.format(key=KEY, n=5_000).encode() + b'{"judge": ')  # admitted, body half sent
            time.sleep(0.3)
            start = time.monotonic()
            refused = _raw_request(server.url, head.format(key=KEY, n=5_000).encode())
            assert time.monotonic() - start < 5
            assert refused.startswith(b"HTTP/1.1 429") and b"too many judge requests" in refused
        deadline = time.monotonic() + 10  # the holder hung up: its admission is given back
        while time.monotonic() < deadline:
            resp = httpx.post(server.url + "/v1/judge", json=GOOD, headers={"Authorization": f"Bearer {KEY}"})
            if resp.status_code != 429:
                break
            time.sleep(0.1)
        assert resp.status_code == 200, resp.text


class Exploding:
    def label_probs(self, prompts, spec):
        raise RuntimeError("a bug in a backend")


def test_a_bug_is_a_500_with_a_request_id_the_detail_only_in_the_log_and_the_connection_kept(serving, caplog):
    from serve.service import JudgeService

    good = serving.services["tiny-helpfulness"]
    broken = JudgeService(good.served, good.tokenizer, Exploding())

    def failing_logger(item, verdict):
        raise OSError("disk full")

    app = create_app({"broken": broken, "tiny-helpfulness": good}, api_key=None, verdict_logger=failing_logger)
    with APIServer(app) as server, httpx.Client(timeout=60) as client, caplog.at_level(logging.ERROR, "judgeloop.api"):
        resp = client.post(server.url + "/v1/judge", json={**GOOD, "judge": "broken"})
        assert resp.status_code == 500 and "the server is still up" in resp.json()["error"]
        request_id = resp.json()["request_id"]
        assert request_id == resp.headers["x-request-id"]
        assert "RuntimeError" not in resp.text and "a bug in a backend" not in resp.text
        ok = client.post(server.url + "/v1/judge", json=GOOD)  # the logger fails: the client still gets its verdict
        assert ok.status_code == 200 and ok.json()["verdicts"][0]["error"] is None
        assert local_port(ok) == local_port(resp)  # a 500 no longer costs the client its connection
    assert f"request {request_id}" in caplog.text and "a bug in a backend" in caplog.text


def test_an_item_with_a_5000_token_instruction_gets_a_verdict_with_its_cut_reported(serving):
    """The budget is the model's context (2048 for the tiny model) less the verdict; the instruction is cut."""
    from data.schema import Item

    service = serving.services["tiny-helpfulness"]
    assert service.spec.max_prompt_tokens == 2047
    instruction = "Summarise the report below. " + "The committee met and discussed the budget. " * 250 + "Which wins?"
    assert len(service.tokenizer(instruction)["input_ids"]) >= 5000
    items = [
        Item(id=str(i), group=str(i), kind="pairwise", instruction=instruction, response_a="Yes.", response_b=POEM)
        for i in range(2)
    ]
    verdicts = list(service.score_stream(items))
    assert [v.error for v in verdicts] == [None, None] and all(v.verdict in ("A", "B", "tie") for v in verdicts)
    assert all(v.truncated and v.truncated["instruction"] > 3000 and "response_a" not in v.truncated for v in verdicts)
