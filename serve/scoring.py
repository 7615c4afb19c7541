"""The scoring core shared by every backend, the judge API, batch scoring, training and eval.

A backend only answers "what distribution over the spec's labels does the model put on the
first answer token of each rendered prompt". This module renders items (the one renderer),
scores pairwise items in both orders, maps the swapped order back, averages, and builds one
``Verdict`` per item, with an ``error`` instead of a verdict when an item cannot be scored.
"""
from __future__ import annotations

import time
from typing import Iterable, Iterator, Protocol, Sequence

from data.errors import JudgeloopError
from data.labels import LabelSpace
from data.render import Rendered, RenderError, render
from data.schema import Item, JudgeRef, Verdict
from data.spec import JudgeSpec


class Backend(Protocol):
    """Anything that scores rendered prompts: in-process transformers, a vLLM server."""

    def label_probs(self, prompts: Sequence[Rendered], spec: JudgeSpec) -> list[dict[str, float]]:
        """For each prompt, the distribution over ``spec.labels`` of the first answer token."""


def combine(item: Item, space: LabelSpace, probs_ab: dict[str, float], probs_ba_raw: dict[str, float] | None,
            judge: JudgeRef, latency_ms: float | None = None, truncated: dict[str, int] | None = None) -> Verdict:
    """One verdict from one or two single-order distributions (the "ba" one in swapped terms)."""
    ab = space.normalise(probs_ab)
    order_probs = None
    consistent = None
    probs = ab
    if probs_ba_raw is not None:
        ba = space.normalise(space.swap_probs(probs_ba_raw))
        probs = {lab: (ab[lab] + ba[lab]) / 2 for lab in space.labels}
        order_probs = {"ab": ab, "ba": ba}
        consistent = space.argmax(ab) == space.argmax(ba)
    verdict = space.argmax(probs)
    return Verdict(
        id=item.id, verdict=verdict, probs=probs, score=space.expected_score(probs),
        confidence=probs[verdict], consistent=consistent, order_probs=order_probs, judge=judge,
        latency_ms=latency_ms, truncated=truncated or None, error=None)


def error_verdict(item_id: str, judge: JudgeRef, reason: str) -> Verdict:
    return Verdict(id=item_id, judge=judge, error=reason)


def score_items(items: Iterable[Item], spec: JudgeSpec, backend: Backend, tokenizer, judge: JudgeRef, *,
                both_orders: bool = True, batch_size: int = 64) -> Iterator[Verdict]:
    """Verdicts for items, in input order, one per item, streaming in batches of ``batch_size`` items."""
    space = spec.label_space
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= batch_size:
            yield from _score_batch(batch, spec, space, backend, tokenizer, judge, both_orders)
            batch = []
    if batch:
        yield from _score_batch(batch, spec, space, backend, tokenizer, judge, both_orders)


def _score_batch(items: list[Item], spec, space, backend, tokenizer, judge, both_orders) -> list[Verdict]:
    start = time.perf_counter()
    prompts: list[Rendered] = []
    slots: list[tuple[int, int | None] | str] = []  # per item: prompt indices, or an error text
    for item in items:
        try:
            ab = render(spec, item, tokenizer, "ab")
            prompts.append(ab)
            ba_index = None
            if both_orders and item.kind == "pairwise":
                prompts.append(render(spec, item, tokenizer, "ba"))
                ba_index = len(prompts) - 1
            slots.append((len(prompts) - 1 - (ba_index is not None), ba_index))
        except RenderError as exc:
            slots.append(f"render: {exc.first.message}")
    try:
        dists = backend.label_probs(prompts, spec) if prompts else []
    except JudgeloopError as exc:
        return [error_verdict(item.id, judge, f"backend: {exc.first.message}") for item in items]
    per_item_ms = (time.perf_counter() - start) * 1000 / max(len(items), 1)
    out = []
    for item, slot in zip(items, slots):
        if isinstance(slot, str):
            out.append(error_verdict(item.id, judge, slot))
            continue
        ab_i, ba_i = slot
        truncated = {}
        for i in (ab_i, ba_i):
            if i is not None:
                for name, n in prompts[i].truncated.items():
                    truncated[name] = max(truncated.get(name, 0), n)
        out.append(combine(item, space, dists[ab_i], dists[ba_i] if ba_i is not None else None,
                           judge, per_item_ms, truncated))
    return out
