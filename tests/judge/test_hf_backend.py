"""judge/hf_backend.py batching: how prompts are chunked changes the cost, never the scores."""

import pytest

from data.render import render
from data.spec import load_spec
from judge.hf_backend import HFBackend
from tests.train.helpers import SPEC, pairwise_items


class ShapeLog(HFBackend):
    """Records each chunk's rows and the logits it computed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.chunks: list[tuple[int, int]] = []

    def _answer_logits(self, input_ids, attention_mask, last):
        self.chunks.append((len(last), len(set(last.tolist()))))
        return super()._answer_logits(input_ids, attention_mask, last)


@pytest.mark.parametrize("budget_rows", [1, 3])
def test_the_logit_budget_bounds_each_chunk_and_leaves_the_scores_alone(tiny_model_dir, budget_rows):
    spec = load_spec(SPEC)
    base = HFBackend.load(str(tiny_model_dir))
    prompts = [
        render(spec, item, base.tokenizer, order) for item in pairwise_items(12, "h", seed=5) for order in ("ab", "ba")
    ]
    assert len({p.n_tokens for p in prompts}) > 3  # the prompts differ in length
    vocab = base.model.config.vocab_size
    reference = base.label_probs(prompts, spec.answer_spec())
    small = ShapeLog(base.model, base.tokenizer, logit_budget=budget_rows * vocab)
    got = small.label_probs(prompts, spec.answer_spec())
    assert all(rows * distinct <= budget_rows for rows, distinct in small.chunks)
    assert sum(rows for rows, _ in small.chunks) == len(prompts)
    for ref, new in zip(reference, got):
        assert new == pytest.approx(ref, abs=1e-5)
