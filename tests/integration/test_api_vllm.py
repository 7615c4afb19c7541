"""The judge API in front of real vLLM: auth, bad requests, 200 concurrent requests, the Python client."""

import asyncio

import httpx
import pytest

from serve.client import AsyncJudgeClient, JudgeClient
from tests.integration.conftest import API_KEY, MAX_BATCH
from tests.serve.helpers import POEM, pairwise_items

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_KEY}"}
GOOD = {
    "judge": "tiny-helpfulness",
    "item": {"instruction": "Capital of France?", "response_a": "Paris.", "response_b": POEM},
}


def post(api, body, headers=AUTH):
    if isinstance(body, bytes):
        return httpx.post(api.url + "/v1/judge", content=body, headers={**headers, "content-type": "application/json"})
    return httpx.post(api.url + "/v1/judge", json=body, headers=headers, timeout=120)


def assert_good(api):
    resp = post(api, GOOD)
    assert resp.status_code == 200, resp.text
    (v,) = resp.json()["verdicts"]
    assert v["error"] is None and v["verdict"] in ("A", "B", "tie")
    assert abs(sum(v["probs"].values()) - 1) < 1e-9 and len(v["judge"]["fingerprint"]) == 64


def test_api_key_is_enforced(api):
    assert post(api, GOOD, headers={}).status_code == 401
    assert post(api, GOOD, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert_good(api)


@pytest.mark.parametrize(
    "body,status,reason",
    [
        (b'{"judge": "tiny-helpfulness", "item": ', 400, "malformed JSON"),
        ({**GOOD, "judge": "no-such-judge"}, 404, "unknown judge"),
        ({"judge": "tiny-helpfulness", "item": {"instruction": "x", "response_a": "a"}}, 422, "response_b"),
        ({"judge": "tiny-helpfulness", "items": [GOOD["item"]] * (MAX_BATCH + 1)}, 413, "limit"),
        ({**GOOD, "item": {**GOOD["item"], "response_a": "x" * 250_000}}, 413, "bytes"),
    ],
    ids=["malformed-json", "unknown-judge", "missing-field", "batch-too-large", "oversize-body"],
)
def test_bad_request_gets_4xx_with_reason_then_server_answers(api, body, status, reason):
    resp = post(api, body)
    assert resp.status_code == status and reason in resp.json()["error"], resp.text
    assert_good(api)


def test_200_concurrent_requests_all_get_verdicts(api):
    records = pairwise_items(200, prefix="c")

    async def run():
        async with AsyncJudgeClient(api.url, api_key=API_KEY, max_connections=200, timeout_s=300) as client:
            return await asyncio.gather(*(client.judge(r, "tiny-helpfulness") for r in records))

    verdicts = asyncio.run(run())
    assert [v.id for v in verdicts] == [r["id"] for r in records]
    assert all(v.error is None and v.verdict in ("A", "B", "tie") for v in verdicts)
    metrics = httpx.get(api.url + "/metrics", headers=AUTH).text
    count = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('judgeloop_verdicts_total{judge="tiny-helpfulness"')
    )
    assert count >= 200


def test_several_judges_on_one_item_and_candidates_listed(api):
    with JudgeClient(api.url, api_key=API_KEY) as client:
        listed = {j["name"]: j for j in client.judges()}
        assert listed["tiny-judge"]["status"] == "production" and listed["tiny-judge"]["served_as"] == "merged"
        assert listed["tiny-judge@2"]["status"] == "candidate" and listed["tiny-judge@2"]["served_as"] == "lora"
        both = client.judge_criteria(GOOD["item"], ["tiny-judge", "tiny-judge@2", "tiny-helpfulness"])
        assert both["tiny-judge"].verdict == both["tiny-judge@2"].verdict
        assert both["tiny-judge"].judge.fingerprint == both["tiny-judge@2"].judge.fingerprint
        assert client.health()["status"] == "ok"


def test_a_5000_token_instruction_gets_a_verdict_through_vllm(api):
    """Cut to the budget that vLLM's max_model_len (2048) leaves, not refused by vLLM for its length."""
    instruction = "Summarise the report below. " + "The committee met and discussed the budget. " * 250 + "Which wins?"
    body = {"judge": "tiny-helpfulness", "item": {**GOOD["item"], "instruction": instruction}}
    resp = post(api, body)
    assert resp.status_code == 200, resp.text
    (v,) = resp.json()["verdicts"]
    assert v["error"] is None and v["verdict"] in ("A", "B", "tie") and v["truncated"]["instruction"] > 3000
