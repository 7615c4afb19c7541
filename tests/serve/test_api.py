"""The judge API on the in-process engine (fast): auth, every kind of bad request, limits, hooks, metrics."""

import json

import httpx
import pytest

from data.errors import ServerError
from serve.api import create_app
from serve.client import JudgeClient
from serve.config import load_serve_config
from serve.service import start_judges
from tests.serve.helpers import POEM, APIServer, binary_items, pairwise_items

KEY = "test-key-123"


@pytest.fixture(scope="module")
def serving(tiny_specs):
    cfg = load_serve_config(None, ["--engine=transformers"])
    with start_judges(cfg, judges=[str(tiny_specs["pairwise"]), str(tiny_specs["binary"])], candidates=[]) as s:
        yield s


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
]


@pytest.mark.parametrize("case,body,status,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_with_a_reason_and_the_server_stays_up(api, case, body, status, reason):
    resp = post(api, body)
    assert resp.status_code == status, resp.text
    assert reason in resp.json()["error"]
    assert post(api, GOOD).status_code == 200


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
    assert {j["name"] for j in listed} == {"tiny-helpfulness", "tiny-correctness"}
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
    long = {"instruction": "word " * 3000, "response_a": "a", "response_b": "b"}  # the instruction is never cut
    resp = post(api, {"judge": "tiny-helpfulness", "items": [long, GOOD["item"]]})
    assert resp.status_code == 200
    bad, good = resp.json()["verdicts"]
    assert bad["error"].startswith("render:") and bad["verdict"] is None
    assert good["error"] is None and api.logged[-1][1].id == "1"


def test_verdict_errors_are_counted(api):
    long = {"instruction": "word " * 3000, "response_a": "a", "response_b": "b"}
    post(api, {"judge": "tiny-helpfulness", "item": long})
    text = httpx.get(api.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'judgeloop_verdict_errors_total{judge="tiny-helpfulness"}' in text


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


class Exploding:
    def label_probs(self, prompts, spec):
        raise RuntimeError("a bug in a backend")


def test_a_bug_is_a_500_with_a_reason_and_the_server_stays_up(serving):
    from serve.service import JudgeService

    good = serving.services["tiny-helpfulness"]
    broken = JudgeService(good.served, good.tokenizer, Exploding())

    def failing_logger(item, verdict):
        raise OSError("disk full")

    app = create_app({"broken": broken, "tiny-helpfulness": good}, api_key=None, verdict_logger=failing_logger)
    with APIServer(app) as server:
        resp = httpx.post(server.url + "/v1/judge", json={**GOOD, "judge": "broken"})
        assert resp.status_code == 500 and "RuntimeError" in resp.json()["error"]
        ok = httpx.post(server.url + "/v1/judge", json=GOOD)  # the logger fails: the client still gets its verdict
        assert ok.status_code == 200 and ok.json()["verdicts"][0]["error"] is None
