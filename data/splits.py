"""Deterministic train/dev/test splits grouped by prompt: no group ever lands in two splits.

Each group goes to a split by a seeded hash of its name, so the split does not depend on the
order of the rows, and adding rows never moves an existing group. A registered dataset's groups are
first mapped to their cross-source canonical group (``data.grouping``): one normalised instruction
has one split in every dataset, and instructions of a reserved dataset (vicuna80-human) go to the
``reserved`` split, never to train, dev or test.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from data.grouping import SplitGroups
from data.schema import Item

SPLITS = ("train", "dev", "test")
RESERVED = "reserved"  # kept for model evaluation: never trained, tuned or tested on
T = TypeVar("T")


def group_fraction(group: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, group)."""
    digest = hashlib.sha256(f"{seed}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(group: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0) -> str:
    if abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    x = group_fraction(group, seed)
    if x < fractions[0]:
        return "train"
    if x < fractions[0] + fractions[1]:
        return "dev"
    return "test"


def assign(
    items: Iterable[Item], fractions=(0.8, 0.1, 0.1), seed: int = 0, groups: SplitGroups | None = None
) -> Iterator[tuple[str, Item]]:
    """``(split, item)`` for each item: by the item's group, or with ``groups`` by its canonical group
    (``RESERVED`` for a reserved one)."""
    for item in items:
        if groups is None:
            yield split_of(item.group, fractions, seed), item
        elif groups.is_reserved(item.group):
            yield RESERVED, item
        else:
            yield split_of(groups.canonical(item.group), fractions, seed), item


# ------------------------------------------------------------------ seeded subsamples


def seeded_sample(items: Sequence[T], n: int | None, seed: int = 0) -> list[T]:
    """``n`` of the items drawn by ``random.Random(seed)`` (all when ``n`` is None or not fewer), in their order.

    Which items a seed draws depends only on ``len(items)`` and ``n`` (it is ``random.sample`` of the
    positions), so it matches ``random.Random(seed).sample(items, n)`` item for item, but for the order."""
    if n is None or n >= len(items):
        return list(items)
    keep = set(random.Random(seed).sample(range(len(items)), n))
    return [x for i, x in enumerate(items) if i in keep]


def seeded_groups(items: Sequence[Item], max_items: int | None, seed: int = 0) -> list[Item]:
    """Whole groups in a seeded order (``random.Random(seed)`` shuffles the sorted group names) until
    at least ``max_items`` items are taken (all when ``max_items`` is None or not fewer); the items come
    group by group in that order, each group's in their own order."""
    if max_items is None or len(items) <= max_items:
        return list(items)
    groups = sorted({it.group for it in items})
    random.Random(seed).shuffle(groups)
    by_group: dict[str, list[Item]] = {}
    for it in items:
        by_group.setdefault(it.group, []).append(it)
    chosen: list[Item] = []
    for g in groups:
        if len(chosen) >= max_items:
            break
        chosen.extend(by_group[g])
    return chosen
