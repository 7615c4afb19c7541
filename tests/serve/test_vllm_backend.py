"""The vLLM backend's parsing and endpoint choice (the real server is exercised in tests/integration)."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from data.errors import ServerError, ServerUnavailable
from data.render import render
from data.schema import Item
from data.spec import load_spec
from serve.vllm_backend import VLLMBackend, _label_distribution
from tests.serve.helpers import free_port, pairwise_items

LABELS, IDS = ["A", "B", "tie"], [35, 36, 400]


def choice(top: dict) -> dict:
    return {"index": 0, "logprobs": {"top_logprobs": [top]}}


def test_labels_are_read_by_token_id_and_renormalised():
    # guided choice also allows the prefixes "t" (86) and "ti" (268) of "tie": they are not labels
    top = {
        "token_id:268": -1.36,
        "token_id:35": -1.43,
        "token_id:86": -1.73,
        "token_id:36": -1.75,
        "token_id:400": -1.86,
    }
    probs = _label_distribution(choice(top), LABELS, IDS)
    raw = [math.exp(-1.43), math.exp(-1.75), math.exp(-1.86)]
    assert probs == pytest.approx({lab: r / sum(raw) for lab, r in zip(LABELS, raw)})


def test_a_missing_or_masked_label_has_probability_zero():
    probs = _label_distribution(choice({"token_id:35": -0.1, "token_id:400": -9999.0}), LABELS, IDS)
    assert probs == {"A": 1.0, "B": 0.0, "tie": 0.0}


def test_no_label_at_all_is_an_error():
    assert isinstance(_label_distribution(choice({"token_id:7": -0.1}), LABELS, IDS), ServerError)


@given(st.lists(st.floats(-30, 0), min_size=3, max_size=3))
def test_distribution_sums_to_one(logprobs):
    top = {f"token_id:{i}": lp for i, lp in zip(IDS, logprobs)}
    assert sum(_label_distribution(choice(top), LABELS, IDS).values()) == pytest.approx(1.0)


def test_round_robin_skips_endpoints_that_refused(tokenizer):
    backend = VLLMBackend(["http://a", "http://b", "http://c"], "m", tokenizer)
    assert [backend._pick() for _ in range(4)] == ["http://a", "http://b", "http://c", "http://a"]
    backend._down_until["http://b"] = float("inf")
    assert [backend._pick() for _ in range(3)] == ["http://c", "http://a", "http://c"]
    backend._down_until = dict.fromkeys(backend._down_until, float("inf"))
    assert backend._pick() in backend.endpoints  # all down: still try


def test_unreachable_servers_fail_the_whole_call_fast(tokenizer):
    """No endpoint reachable is not an item's problem: ServerUnavailable (the API's 503), at once."""
    import time

    spec = load_spec("helpfulness-pairwise")
    prompts = [render(spec, Item(**d), tokenizer) for d in pairwise_items(3)]
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    with VLLMBackend(dead, "m", tokenizer, retries=3, backoff_s=5.0, prompts_per_request=2) as backend:
        start = time.monotonic()
        with pytest.raises(ServerUnavailable, match="unreachable"):
            backend.label_probs(prompts, spec)
        assert time.monotonic() - start < 3.0  # both refused: no backoff is waited out
        with pytest.raises(ServerUnavailable, match="no vLLM endpoint is reachable"):
            backend.label_probs(prompts, spec)  # marked down: refused without a connection attempt
        assert backend.health() == dict.fromkeys(dead, False)
