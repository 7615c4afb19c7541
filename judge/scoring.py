"""The scoring core shared by every backend, the judge API, batch scoring, training and eval.

A backend only answers "what distribution over the spec's labels does the model put on the
first answer token of each rendered prompt". This module renders items (the one renderer),
scores pairwise items in both orders, maps the swapped order back, averages, and builds one
``Verdict`` per item, with an ``error`` instead of a verdict when an item cannot be scored.
A pairwise spec with ``pairwise_mode: separate`` instead scores each response alone (yes/no) and
compares the two scores (``combine_separate``): no order is ever shown, so there is none to swap.
``ServerUnavailable`` (no engine reachable at all) is not an item's error: it propagates.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol, Union

from data.errors import JudgeloopError, ServerUnavailable
from data.labels import LabelSpace
from data.render import Rendered, RenderError, render, render_response
from data.schema import Item, JudgeRef, Verdict
from data.spec import JudgeSpec

# one prompt's answer from a backend: the distribution, or why that prompt alone failed
LabelProbs = Union[dict[str, float], JudgeloopError]


class Backend(Protocol):
    """Anything that scores rendered prompts: in-process transformers, a vLLM server.

    A backend raises a ``JudgeloopError`` when the whole call failed, or puts one in place of a
    distribution when only that prompt failed. A backend that can overlap calls without threads
    (vLLM over HTTP) also offers ``alabel_probs`` with the same contract.
    """

    def label_probs(self, prompts: Sequence[Rendered], spec: JudgeSpec) -> list[LabelProbs]:
        """For each prompt, the distribution over ``spec.labels`` of the first answer token."""


def combine(
    item: Item,
    space: LabelSpace,
    probs_ab: dict[str, float],
    probs_ba_raw: dict[str, float] | None,
    judge: JudgeRef,
    latency_ms: float | None = None,
    truncated: dict[str, int] | None = None,
) -> Verdict:
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
    return _verdict(item, space, probs, consistent, order_probs, judge, latency_ms, truncated)


def _verdict(
    item: Item,
    space: LabelSpace,
    probs: dict[str, float],
    consistent: bool | None,
    order_probs: dict[str, dict[str, float]] | None,
    judge: JudgeRef,
    latency_ms: float | None,
    truncated: dict[str, int] | None,
) -> Verdict:
    """The verdict of a final distribution: its argmax, expected score and the argmax's probability."""
    verdict = space.argmax(probs)
    return Verdict(
        id=item.id,
        verdict=verdict,
        probs=probs,
        score=space.expected_score(probs),
        confidence=probs[verdict],
        consistent=consistent,
        order_probs=order_probs,
        judge=judge,
        latency_ms=latency_ms,
        truncated=truncated or None,
        error=None,
    )


def response_score(probs: dict[str, float]) -> float:
    """Separate mode: one response's score, the log-odds of 'yes' over 'no' (what training fits)."""
    yes, no = max(probs.get("yes", 0.0), 1e-12), max(probs.get("no", 0.0), 1e-12)
    return math.log(yes) - math.log(no)


def separate_probs(space: LabelSpace, score_a: float, score_b: float, tie_margin: float = 0.0) -> dict[str, float]:
    """Bradley-Terry (Rao-Kupper with a tie label): P(A) = sigmoid(d - m), P(B) = sigmoid(-d - m), P(tie) the rest,
    with d = score_a - score_b and m = ``tie_margin``."""
    d = score_a - score_b
    sig = lambda x: 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))  # noqa: E731
    if not space.has_tie:
        return {"A": sig(d), "B": sig(-d)}
    p_a, p_b = sig(d - tie_margin), sig(-d - tie_margin)
    return {"A": p_a, "B": p_b, "tie": max(0.0, 1.0 - p_a - p_b)}


def combine_separate(
    item: Item,
    spec: JudgeSpec,
    probs_a: dict[str, float],
    probs_b: dict[str, float],
    judge: JudgeRef,
    latency_ms: float | None = None,
    truncated: dict[str, int] | None = None,
) -> Verdict:
    """One verdict from the yes/no distributions of the two responses, each judged alone. The judge never saw
    an order, so both "orders" are the same distribution and the verdict is consistent by construction."""
    space = spec.label_space
    probs = separate_probs(space, response_score(probs_a), response_score(probs_b), spec.tie_margin)
    return _verdict(item, space, probs, True, {"ab": probs, "ba": probs}, judge, latency_ms, truncated)


def error_verdict(item_id: str, judge: JudgeRef, reason: str) -> Verdict:
    return Verdict(id=item_id, judge=judge, error=reason)


def score_items(
    items: Iterable[Item],
    spec: JudgeSpec,
    backend: Backend,
    tokenizer,
    judge: JudgeRef,
    *,
    both_orders: bool = True,
    batch_size: int = 64,
) -> Iterator[Verdict]:
    """Verdicts for items, in input order, one per item, streaming in batches of ``batch_size`` items."""
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= batch_size:
            yield from _score_batch(batch, spec, backend, tokenizer, judge, both_orders)
            batch = []
    if batch:
        yield from _score_batch(batch, spec, backend, tokenizer, judge, both_orders)


def _unique_prompts(prompts: list[Rendered]) -> tuple[list[Rendered], list[int]]:
    """The distinct prompts of a batch (by token ids) and, per prompt, its index among them: a prompt seen
    twice is scored once (a separate-mode judge comparing all pairs of systems shows each response once per
    opponent; the same item twice in a batch)."""
    index: dict[tuple[int, ...], int] = {}
    unique, back = [], []
    for p in prompts:
        key = tuple(p.token_ids)
        if key not in index:
            index[key] = len(unique)
            unique.append(p)
        back.append(index[key])
    return unique, back


def _score_batch(items: list[Item], spec, backend, tokenizer, judge, both_orders) -> list[Verdict]:
    start = time.perf_counter()
    prompts, slots = _render_batch(items, spec, tokenizer, both_orders)
    unique, back = _unique_prompts(prompts)
    try:
        got = backend.label_probs(unique, spec.answer_spec()) if prompts else []
        dists = [got[i] for i in back]
    except ServerUnavailable:
        raise  # no engine at all: the caller decides (the API answers 503, a batch run stops to resume later)
    except JudgeloopError as exc:
        return [error_verdict(item.id, judge, f"backend: {exc.first.message}") for item in items]
    return _verdicts(items, slots, prompts, dists, spec, judge, start)


async def score_items_async(
    items: Sequence[Item], spec: JudgeSpec, backend: Backend, tokenizer, judge: JudgeRef, *, both_orders: bool = True
) -> list[Verdict]:
    """The same verdicts as ``score_items`` for one batch, without blocking the event loop.

    Rendering runs in a worker thread; a backend without ``alabel_probs`` runs in one too.
    """
    start = time.perf_counter()
    items = list(items)
    prompts, slots = await asyncio.to_thread(_render_batch, items, spec, tokenizer, both_orders)
    try:
        unique, back = _unique_prompts(prompts)
        if not prompts:
            dists = []
        elif hasattr(backend, "alabel_probs"):
            dists = await backend.alabel_probs(unique, spec.answer_spec())
        else:
            dists = await asyncio.to_thread(backend.label_probs, unique, spec.answer_spec())
        dists = [dists[i] for i in back]
    except ServerUnavailable:
        raise
    except JudgeloopError as exc:
        return [error_verdict(item.id, judge, f"backend: {exc.first.message}") for item in items]
    return _verdicts(items, slots, prompts, dists, spec, judge, start)


def _render_batch(items: list[Item], spec, tokenizer, both_orders) -> tuple[list[Rendered], list]:
    """Every prompt of a batch, and per item its prompt indices (ab, ba or None; separate mode: a, b), or an
    error text."""
    prompts: list[Rendered] = []
    slots: list[tuple[int, int | None] | str] = []
    for item in items:
        try:
            if spec.separate:  # a non-pairwise item gets render_response's kind error
                pair = [render_response(spec, item, tokenizer, "a"), render_response(spec, item, tokenizer, "b")]
                prompts += pair
                slots.append((len(prompts) - 2, len(prompts) - 1))
                continue
            ab = render(spec, item, tokenizer, "ab")
            prompts.append(ab)
            ba_index = None
            if both_orders and item.kind == "pairwise":
                prompts.append(render(spec, item, tokenizer, "ba"))
                ba_index = len(prompts) - 1
            slots.append((len(prompts) - 1 - (ba_index is not None), ba_index))
        except RenderError as exc:
            slots.append(f"render: {exc.first.message}")
    return prompts, slots


def _verdicts(
    items, slots, prompts, dists: Sequence[LabelProbs], spec: JudgeSpec, judge, start: float
) -> list[Verdict]:
    space = spec.label_space
    per_item_ms = (time.perf_counter() - start) * 1000 / max(len(items), 1)
    out = []
    for item, slot in zip(items, slots):
        if isinstance(slot, str):
            out.append(error_verdict(item.id, judge, slot))
            continue
        ab_i, ba_i = slot
        failed = next(
            (d for d in (dists[ab_i], dists[ba_i] if ba_i is not None else None) if isinstance(d, JudgeloopError)), None
        )
        if failed is not None:
            out.append(error_verdict(item.id, judge, f"backend: {failed.first.message}"))
            continue
        truncated = {}
        for i in (ab_i, ba_i):
            if i is not None:
                for name, n in prompts[i].truncated.items():
                    truncated[name] = max(truncated.get(name, 0), n)
        if spec.separate:
            out.append(combine_separate(item, spec, dists[ab_i], dists[ba_i], judge, per_item_ms, truncated))
        else:
            out.append(
                combine(
                    item, space, dists[ab_i], dists[ba_i] if ba_i is not None else None, judge, per_item_ms, truncated
                )
            )
    return out
