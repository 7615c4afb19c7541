"""What one item's labels are, and the headline agreement: shared by training's dev evaluation and validation.

``human_class`` / ``judge_class`` put a human aggregate and a verdict in the label space's spelling;
an item the judge gave no verdict for carries ``NO_VERDICT``, which is never correct. ``headline``
is the figure pair the training loop logs, computed exactly as validation computes its accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from data.labels import LabelSpace, aggregate
from data.schema import Item, Verdict
from data.spec import JudgeSpec

NO_VERDICT = "<no verdict>"
TIE = "tie"


def human_class(item: Item, space: LabelSpace) -> str | None:
    """The human aggregate as a label: pairwise A/B/tie, binary yes/no, pointwise the label
    nearest the mean score. None when the item has no human label."""
    label = item.label if item.label is not None else aggregate(item.kind, item.labels)
    return None if label is None else annotator_class(label, space)


def annotator_class(label, space: LabelSpace) -> str | None:
    """One annotator's (or an aggregate's) label in the label space's spelling."""
    if label is None:
        return None
    if space.kind == "pointwise":
        return space.nearest_label(float(label))
    if space.kind == "pairwise" and str(label).strip().lower() == TIE:
        return TIE  # a human tie stays a tie even when the judge has no tie label
    return space.check(label)


def judge_class(verdict: Verdict | None, space: LabelSpace) -> str:
    """The judge's label for an item, or NO_VERDICT when it has none (missing, error, unparseable)."""
    if verdict is None or verdict.error or verdict.verdict is None:
        return NO_VERDICT
    try:
        if space.kind == "pointwise":
            value = float(verdict.verdict)
            return next(lab for lab, v in space.values.items() if v == value)
        return space.check(verdict.verdict)
    except (ValueError, StopIteration):
        return NO_VERDICT


def order_labels(verdict: Verdict | None, space: LabelSpace) -> tuple[str, str] | None:
    """The two single-order verdicts (argmax of each order's distribution), in the item's A/B terms."""
    if verdict is None or verdict.error or not verdict.order_probs:
        return None
    ab, ba = verdict.order_probs.get("ab"), verdict.order_probs.get("ba")
    if not ab or not ba:
        return None
    return space.argmax(ab), space.argmax(ba)


def headline(items: Sequence[Item], verdicts: Sequence[Verdict], spec: JudgeSpec) -> dict:
    """The two numbers a training run logs, computed exactly as validation computes them.

    ``accuracy``: the judge's verdict against the human aggregate (``item.label``). Pairwise:
    on items whose human aggregate is not a tie (a judge's tie there is wrong). Pointwise: the
    verdict equals the label nearest the human mean. Binary: the verdict equals the label.
    An item without a verdict (missing or error) is wrong. ``n``: the items accuracy is over.
    ``swap_consistency``: share of pairwise items with both orders scored whose two single-order
    verdicts name the same winner (both A, both B or both tie); None for other kinds or when no
    verdict has ``order_probs``.
    """
    space = spec.label_space
    by_id = {v.id: v for v in verdicts}
    correct, same = [], []
    for item in items:
        verdict = by_id.get(item.id)
        human = human_class(item, space)
        if human is not None and not (space.kind == "pairwise" and human == TIE):
            correct.append(judge_class(verdict, space) == human)
        if space.kind == "pairwise":
            pair = order_labels(verdict, space)
            if pair is not None:
                same.append(pair[0] == pair[1])
    return {
        "accuracy": float(np.mean(correct)) if correct else None,
        "swap_consistency": float(np.mean(same)) if same else None,
        "n": len(correct),
    }
