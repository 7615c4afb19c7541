"""Items lined up with a judge's verdicts: the per-item columns every eval module reads.

``match_verdicts`` is where bad input is caught: a verdict for an id that is not an item, or an
item without a verdict, is a ``DataError`` naming the file and the ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from data.errors import DataError
from data.labels import LabelSpace
from data.schema import Item, Verdict
from judge.agreement import NO_VERDICT, TIE, human_class, judge_class, order_labels

SHOWN = 5  # ids listed in an error message


def _ids(ids: list[str]) -> str:
    head = ", ".join(f"'{i}'" for i in ids[:SHOWN])
    return head + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


def match_verdicts(
    items: Sequence[Item], verdicts: Sequence[Verdict], *, path=None, what: str = "verdicts", partial: bool = False
) -> list[Verdict | None]:
    """One verdict per item, in item order.

    Strict (the judge under test, the incumbent): every item needs a verdict and every verdict
    an item. ``partial`` (a reference judge's file covers the whole dataset, the items may be
    one split): verdicts for other ids are ignored and missing ones are None.
    """
    by_id: dict[str, Verdict] = {}
    for v in verdicts:
        if v.id in by_id:
            raise DataError(f"two {what} for id '{v.id}'", path=path, field="id")
        by_id[v.id] = v
    item_ids = {it.id for it in items}
    if not partial:
        extra = [v.id for v in verdicts if v.id not in item_ids]
        if extra:
            raise DataError(
                f"{len(extra)} {what} have ids that are not items: {_ids(extra)}",
                path=path,
                field="id",
                hint="are these verdicts for another item file or split?",
            )
        missing = [it.id for it in items if it.id not in by_id]
        if missing:
            raise DataError(
                f"{len(missing)} of {len(items)} items have no {what[:-1] if what.endswith('s') else what}: "
                f"{_ids(missing)}",
                path=path,
                field="id",
                hint="score every item (a failed item still gets a verdict with 'error' set)",
            )
    return [by_id.get(it.id) for it in items]


@dataclass
class Table:
    """Per-item columns: the human aggregate, the judge's label, lengths, groups, slices."""

    items: list[Item]
    verdicts: list[Verdict | None]
    space: LabelSpace
    human: list[str | None] = field(init=False)
    judge: list[str] = field(init=False)

    def __post_init__(self):
        self.human = [human_class(it, self.space) for it in self.items]
        self.judge = [judge_class(v, self.space) for v in self.verdicts]

    @property
    def kind(self) -> str:
        return self.space.kind

    @property
    def n(self) -> int:
        return len(self.items)

    @property
    def groups(self) -> list[str]:
        return [it.group for it in self.items]

    @property
    def labelled(self) -> np.ndarray:
        """Items with a human aggregate."""
        return np.array([h is not None for h in self.human], dtype=bool)

    @property
    def main(self) -> np.ndarray:
        """The items the headline metrics are over: labelled, and for pairwise not a human tie."""
        return np.array([h is not None and not (self.kind == "pairwise" and h == TIE) for h in self.human], dtype=bool)

    @property
    def correct(self) -> np.ndarray:
        return np.array([h is not None and j == h for h, j in zip(self.human, self.judge)], dtype=float)

    @property
    def has_verdict(self) -> np.ndarray:
        return np.array([j != NO_VERDICT for j in self.judge], dtype=bool)

    def order_pairs(self) -> list[tuple[str, str] | None]:
        return [order_labels(v, self.space) for v in self.verdicts]

    def lengths(self) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
        """Characters of each response: (len_a, len_b) for pairwise, len(response) otherwise."""
        if self.kind == "pairwise":
            return (
                np.array([len(str(it.response_a)) for it in self.items]),
                np.array([len(str(it.response_b)) for it in self.items]),
            )
        return np.array([len(str(it.response)) for it in self.items])

    def with_verdicts(self, verdicts: list[Verdict | None]) -> Table:
        """The same items judged by another judge (a reference, the incumbent)."""
        return Table(self.items, verdicts, self.space)
