"""The scoring core's async path and per-prompt failures (the vLLM backend reports those)."""

import asyncio

from data.errors import ServerError
from data.schema import Item, JudgeRef
from data.spec import load_spec
from judge.scoring import score_items, score_items_async
from tests.serve.helpers import pairwise_items

REF = JudgeRef(name="t", fingerprint="f")


class FlakyBackend:
    """Prefers A; fails every prompt whose text mentions 'poem'."""

    def label_probs(self, prompts, spec):
        return [ServerError("boom") if "poem" in p.prompt else {"A": 0.7, "B": 0.2, "tie": 0.1} for p in prompts]


def test_a_failed_prompt_errors_only_its_item(tokenizer):
    spec = load_spec("helpfulness-pairwise")
    items = [Item(**d) for d in pairwise_items(6)]
    verdicts = list(score_items(items, spec, FlakyBackend(), tokenizer, REF))
    assert [v.id for v in verdicts] == [i.id for i in items]
    for item, verdict in zip(items, verdicts):
        if "poem" in item.response_b:
            assert verdict.error == "backend: boom" and verdict.verdict is None
        else:
            assert verdict.error is None and verdict.verdict == "A"
    assert sum(v.error is not None for v in verdicts) == 2


def test_async_matches_sync(tokenizer):
    spec = load_spec("helpfulness-pairwise")
    items = [Item(**d) for d in pairwise_items(7)]
    sync = list(score_items(items, spec, FlakyBackend(), tokenizer, REF))
    got = asyncio.run(score_items_async(items, spec, FlakyBackend(), tokenizer, REF))
    strip = lambda vs: [v.model_dump(exclude={"latency_ms"}) for v in vs]  # noqa: E731
    assert strip(got) == strip(sync)


class CountingBackend:
    """Scores a prompt by its length; records how many prompts each call was given."""

    def __init__(self):
        self.calls = []

    def label_probs(self, prompts, spec):
        self.calls.append(len(prompts))
        return [{"yes": 1 / (1 + len(p.token_ids) % 7), "no": 1 - 1 / (1 + len(p.token_ids) % 7)} for p in prompts]


def test_a_prompt_seen_twice_in_a_batch_is_scored_once(tokenizer):
    """All pairs of three systems under a separate-mode judge: each response is shown twice, scored once,
    and every verdict is what scoring its pair alone gives."""
    spec = load_spec("helpfulness-separate")
    texts = ["Paris is the capital.", "It is Paris, a city in France.", "Lyon."]
    pairs = [(0, 1), (0, 2), (1, 2)]
    items = [
        Item(
            id=f"p{a}{b}",
            group="q",
            kind="pairwise",
            instruction="Capital of France?",
            response_a=texts[a],
            response_b=texts[b],
        )
        for a, b in pairs
    ]
    backend = CountingBackend()
    together = list(score_items(items, spec, backend, tokenizer, REF))
    assert backend.calls == [3]  # 6 prompts, 3 distinct
    alone = [next(iter(score_items([it], spec, CountingBackend(), tokenizer, REF))) for it in items]
    strip = lambda vs: [v.model_dump(exclude={"latency_ms"}) for v in vs]  # noqa: E731
    assert strip(together) == strip(alone)
    got = asyncio.run(score_items_async(items, spec, backend, tokenizer, REF))
    assert backend.calls == [3, 3] and strip(got) == strip(together)
