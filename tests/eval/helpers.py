"""Constructed items and judges for the eval tests: behaviour chosen so the right answer is known."""

from __future__ import annotations

import numpy as np

from data.labels import LabelSpace, aggregate
from data.schema import Item, JudgeRef, Verdict

PAIRWISE = LabelSpace("pairwise", ["A", "B", "tie"])


def pairwise_items(n: int = 60, seed: int = 0, annotators: int = 3, group_size: int = 3) -> list[Item]:
    """Pairwise items whose human labels agree most of the time; lengths vary; groups of ``group_size``."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        truth = rng.choice(["A", "B", "tie"], p=[0.45, 0.45, 0.1])
        labels = [str(truth) if rng.random() < 0.85 else str(rng.choice(["A", "B", "tie"])) for _ in range(annotators)]
        out.append(
            Item(
                id=f"it-{i}",
                group=f"g-{i // group_size}",
                kind="pairwise",
                instruction=f"task {i // group_size}",
                response_a="a" * int(rng.integers(5, 200)),
                response_b="b" * int(rng.integers(5, 200)),
                labels=labels,
                label=aggregate("pairwise", labels),
                meta={"source": ["alpha", "beta"][i % 2], "language": "en"},
            )
        )
    return out


def verdict(item_id: str, ab: dict, ba: dict, fingerprint: str = "f" * 64, name: str = "judge") -> Verdict:
    """A two-order verdict: probabilities averaged over the orders, as the scoring core does."""
    ab, ba = PAIRWISE.normalise(ab), PAIRWISE.normalise(ba)
    probs = {k: (ab[k] + ba[k]) / 2 for k in PAIRWISE.labels}
    label = PAIRWISE.argmax(probs)
    return Verdict(
        id=item_id,
        verdict=label,
        probs=probs,
        order_probs={"ab": ab, "ba": ba},
        confidence=probs[label],
        consistent=PAIRWISE.argmax(ab) == PAIRWISE.argmax(ba),
        judge=JudgeRef(name=name, fingerprint=fingerprint),
    )


def onehot(label: str, p: float = 0.9) -> dict:
    rest = (1 - p) / 2
    return {lab: (p if lab == label else rest) for lab in PAIRWISE.labels}


def noisy_judge(
    items: list[Item], skill: float = 1.5, seed: int = 0, fingerprint: str = "f" * 64, name: str = "judge"
) -> list[Verdict]:
    """A judge that leans towards the human label by ``skill`` logits in each order."""
    rng = np.random.default_rng(seed)

    def one(item):
        logits = rng.normal(0, 1, 3)
        if item.label in PAIRWISE.labels:
            logits[PAIRWISE.labels.index(item.label)] += skill
        p = np.exp(logits) / np.exp(logits).sum()
        return dict(zip(PAIRWISE.labels, map(float, p)))

    return [verdict(it.id, one(it), one(it), fingerprint, name) for it in items]


def constant_judge(items: list[Item], fn, fingerprint: str = "f" * 64) -> list[Verdict]:
    """``fn(item) -> (ab label, ba label)``: each order's single-order verdict, in the item's A/B terms."""
    out = []
    for it in items:
        ab, ba = fn(it)
        out.append(verdict(it.id, onehot(ab), onehot(ba), fingerprint))
    return out
