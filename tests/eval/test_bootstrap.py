"""Group bootstrap: nominal coverage in simulation, groups really resampled, pairing, McNemar."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from eval.bootstrap import GroupBootstrap, group_ci, mcnemar

TRUE_P = 0.7


def _clustered(rng, n_groups: int = 40, size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Correct/wrong per item; items of a group share a success rate (mean TRUE_P over groups)."""
    p_group = rng.beta(2.8, 1.2, n_groups)  # mean 0.7, strongly varying between prompts
    groups = np.repeat(np.arange(n_groups), size)
    return (rng.random(n_groups * size) < p_group[groups]).astype(float), groups


def test_group_intervals_cover_the_true_value_at_about_the_nominal_rate():
    rng = np.random.default_rng(12345)
    covered, naive_covered, trials = 0, 0, 300
    for i in range(trials):
        x, groups = _clustered(rng)
        ci = group_ci(x, groups, n_boot=400, seed=i)
        covered += ci.ci_low <= TRUE_P <= ci.ci_high
        # the same bootstrap that ignores the groups (every item its own group) is overconfident
        naive = group_ci(x, np.arange(len(x)), n_boot=400, seed=i)
        naive_covered += naive.ci_low <= TRUE_P <= naive.ci_high
    rate = covered / trials
    assert 0.88 <= rate <= 0.99, f"coverage {rate:.3f}"
    assert naive_covered / trials < rate - 0.05, "clustering should make item-level intervals under-cover"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=60), st.integers(0, 2**32 - 1))
def test_items_of_a_group_are_drawn_together(groups, seed):
    boot = GroupBootstrap([f"g{g}" for g in groups], n_boot=50, seed=seed)
    g = np.array(groups)
    for b in range(boot.n_boot):
        w = boot.weights[b]
        for value in set(groups):
            assert len(set(w[g == value])) == 1  # a group is in or out as a whole, with one count
        # the replicate draws as many groups as there are
        assert sum(w[g == value][0] for value in set(groups)) == len(set(groups))
        idx = boot.indices(b)
        assert sorted(idx) == sorted(np.repeat(np.arange(len(groups)), w))


def test_replicates_are_seeded_and_subsets_stay_paired():
    groups = [i // 4 for i in range(80)]
    a, b = GroupBootstrap(groups, 100, seed=7), GroupBootstrap(groups, 100, seed=7)
    assert np.array_equal(a.weights, b.weights)
    assert not np.array_equal(a.weights, GroupBootstrap(groups, 100, seed=8).weights)
    mask = np.arange(80) % 3 == 0
    assert np.array_equal(a.subset(mask).weights, a.weights[:, mask])
    x = np.random.default_rng(0).random(80)
    assert a.mean(x) == b.mean(x)


def test_paired_difference_uses_the_same_draws():
    rng = np.random.default_rng(1)
    x, groups = _clustered(rng)
    boot = GroupBootstrap(groups, 500, seed=0)
    same = boot.paired_diff(x, x)
    assert (same.value, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    better = np.maximum(x, (rng.random(len(x)) < 0.3).astype(float))  # right whenever x is, and more
    diff = boot.paired_diff(better, x)
    assert diff.value == pytest.approx(better.mean() - x.mean())
    assert 0 < diff.ci_low <= diff.value <= diff.ci_high


def test_statistics_on_index_lists_match_weighted_ones():
    rng = np.random.default_rng(2)
    x, groups = _clustered(rng, 20, 3)
    boot = GroupBootstrap(groups, 200, seed=3)
    assert boot.resampled(lambda idx: x[idx].mean()).as_dict() == boot.mean(x).as_dict()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=0, max_size=80))
def test_mcnemar_exact(pairs):
    a = [p[0] for p in pairs]
    b = [p[1] for p in pairs]
    out = mcnemar(a, b)
    only_a = sum(x and not y for x, y in pairs)
    only_b = sum(y and not x for x, y in pairs)
    assert (out["only_a_correct"], out["only_b_correct"]) == (only_a, only_b)
    n = only_a + only_b
    expected = 1.0 if n == 0 else min(1.0, 2 * binom.cdf(min(only_a, only_b), n, 0.5))
    assert out["p_value"] == pytest.approx(expected, abs=1e-6)
