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
