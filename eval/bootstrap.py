"""Seeded bootstrap intervals that resample groups (prompts), a paired bootstrap of a difference,
and McNemar's exact test.

Items that share a group (the same prompt, the same article) are not independent: a replicate
draws groups with replacement and takes all items of each drawn group. A replicate is a vector
of item weights (how many times each item was drawn), so a statistic that is a weighted sum (a
mean, a confusion matrix) is computed for all replicates in one matrix product; any other
statistic runs on the expanded index list of each replicate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    value: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict:
        return {"value": _clean(self.value), "ci_low": _clean(self.ci_low), "ci_high": _clean(self.ci_high)}


def _clean(x) -> float | None:
    """JSON has no NaN: an undefined figure is null."""
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 6)


class GroupBootstrap:
    """``n_boot`` replicates over items labelled with ``groups``, fixed by ``seed``.

    Two statistics computed on the same ``GroupBootstrap`` (same groups, seed, n_boot) are
    paired: replicate b draws the same groups for both.
    """

    def __init__(self, groups: Sequence, n_boot: int = 1000, seed: int = 0):
        self.groups = list(groups)
        self.n = len(self.groups)
        self.n_boot = n_boot
        codes: dict = {}
        self.group_index = np.array([codes.setdefault(g, len(codes)) for g in self.groups], dtype=np.int64)
        self.n_groups = len(codes)
        rng = np.random.default_rng(seed)
        if self.n_groups:
            draws = rng.integers(0, self.n_groups, size=(n_boot, self.n_groups))
            group_counts = np.zeros((n_boot, self.n_groups), dtype=np.int64)
            np.add.at(group_counts, (np.arange(n_boot)[:, None], draws), 1)
        else:
            group_counts = np.zeros((n_boot, 0), dtype=np.int64)
        # item weight = how often its group was drawn
        self.weights = group_counts[:, self.group_index]

    def take(self, index) -> GroupBootstrap:
        """The same replicates for a selection of items, in the given order and possibly repeated
        (e.g. one row per (item, annotator) pair): a statistic on it stays paired with the rest."""
        index = np.asarray(index, dtype=np.int64)
        sub = object.__new__(GroupBootstrap)
        sub.groups = [self.groups[i] for i in index]
        sub.n, sub.n_boot, sub.n_groups = len(index), self.n_boot, self.n_groups
        sub.group_index = self.group_index[index]
        sub.weights = self.weights[:, index]
        return sub

    def subset(self, mask) -> GroupBootstrap:
        """The same replicates restricted to some items (e.g. the non-tie ones)."""
        return self.take(np.flatnonzero(np.asarray(mask, dtype=bool)))

    def indices(self, b: int) -> np.ndarray:
        """Item indices of replicate b (an item appears as often as its group was drawn)."""
        return np.repeat(np.arange(self.n), self.weights[b])

    def weighted(self, stat: Callable[[np.ndarray], np.ndarray]) -> Interval:
        """Interval of a statistic given as ``stat(weights) -> values``; weights is R x n."""
        value = float(np.asarray(stat(np.ones((1, self.n))))[0])
        return interval(value, np.asarray(stat(self.weights), dtype=float))

    def resampled(self, stat: Callable[[np.ndarray], float]) -> Interval:
        """Interval of a statistic given as ``stat(indices) -> value`` (run once per replicate)."""
        value = float(stat(np.arange(self.n)))
        reps = np.array([stat(self.indices(b)) for b in range(self.n_boot)], dtype=float)
        return interval(value, reps)

    def mean(self, values) -> Interval:
        """Interval of the mean of per-item values (e.g. 1 for correct, 0 for wrong)."""
        x = np.asarray(values, dtype=float)
        with np.errstate(all="ignore"):
            return self.weighted(lambda w: (w @ x) / w.sum(1))

    def paired_diff(self, a, b) -> Interval:
        """Interval of mean(a) - mean(b) over the same items, each replicate drawing the same groups."""
        return self.mean(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))


def interval(value: float, replicates: np.ndarray, level: float = LEVEL) -> Interval:
    """Percentile interval; replicates where the statistic is undefined are left out."""
    reps = replicates[np.isfinite(replicates)]
    if not math.isfinite(value) or len(reps) == 0:
        return Interval(value, float("nan"), float("nan"))
    lo, hi = np.quantile(reps, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(value, float(lo), float(hi))


def group_ci(values, groups: Sequence, n_boot: int = 1000, seed: int = 0) -> Interval:
    """95% interval of the mean of ``values`` resampling ``groups``."""
    return GroupBootstrap(groups, n_boot, seed).mean(values)


def mcnemar(correct_a, correct_b) -> dict:
    """McNemar's exact test on paired right/wrong: b = only A right, c = only B right;
    p = two-sided binomial test of b out of b + c at 1/2 (1.0 when they never differ)."""
    from scipy.stats import binomtest  # deferred: SciPy takes seconds to import; only this path needs it

    a = np.asarray(correct_a, dtype=bool)
    bb = np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~bb).sum()), int((~a & bb).sum())
    p = 1.0 if only_a + only_b == 0 else float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return {"only_a_correct": only_a, "only_b_correct": only_b, "p_value": float(f"{p:.6g}")}
