"""Deterministic train/dev/test splits grouped by prompt: no group ever lands in two splits.

Each group goes to a split by a seeded hash of its name, so the split does not depend on the
order of the rows, and adding rows never moves an existing group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from data.schema import Item

SPLITS = ("train", "dev", "test")


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


def assign(items: Iterable[Item], fractions=(0.8, 0.1, 0.1), seed: int = 0) -> Iterator[tuple[str, Item]]:
    for item in items:
        yield split_of(item.group, fractions, seed), item
