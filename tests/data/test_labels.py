import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from data.labels import LabelSpace, aggregate

PAIR = LabelSpace("pairwise", ["A", "B", "tie"])
ORD = LabelSpace("pointwise", ["1", "2", "3", "4", "5"])
BIN = LabelSpace("binary", ["yes", "no"])


def test_check_canonicalises_and_rejects():
    assert PAIR.check(" a ") == "A" and BIN.check("Yes") == "yes" and ORD.check("4") == 4 and ORD.check(3.5) == 3.5
    for bad in ("C", None, 1):
        with pytest.raises(ValueError):
            PAIR.check(bad)
    for bad in (float("nan"), 0, 6, "x", True):
        with pytest.raises(ValueError):
            ORD.check(bad)


def test_label_space_rules():
    for kind, labels in [
        ("pairwise", ["B", "A"]),
        ("binary", ["yes", "maybe"]),
        ("pointwise", ["1", "10"]),
        ("pointwise", ["a", "b"]),
        ("pairwise", ["A"]),
    ]:
        with pytest.raises(ValueError):
            LabelSpace(kind, labels)


def test_aggregate_rules():
    assert aggregate("pairwise", ["A", "A", "B"]) == "A"
    assert aggregate("pairwise", ["A", "B", "tie"]) == "tie"  # no majority
    assert aggregate("pairwise", ["A", "B"]) == "tie"
    assert aggregate("binary", ["yes", "no"]) is None
    assert aggregate("binary", ["yes", None, "yes"]) == "yes"
    assert aggregate("pointwise", [1, 2, 4]) == pytest.approx(7 / 3)
    assert aggregate("binary", [None]) is None


def test_distribution_and_expected_score():
    assert PAIR.distribution(["A", "A", "B"]) == pytest.approx({"A": 2 / 3, "B": 1 / 3, "tie": 0})
    assert ORD.distribution([3.25]) == pytest.approx({"1": 0, "2": 0, "3": 0.75, "4": 0.25, "5": 0})
    assert ORD.expected_score({"1": 0.5, "5": 0.5}) == 3
    assert ORD.nearest_label(3.5) == "4" and ORD.nearest_label(2.2) == "2"


@given(st.dictionaries(st.sampled_from(["A", "B", "tie"]), st.floats(0, 1), min_size=1))
def test_swap_is_an_involution_and_normalise_sums_to_one(probs):
    assert PAIR.swap_probs(PAIR.swap_probs(probs)) == probs
    norm = PAIR.normalise(probs)
    assert math.isclose(sum(norm.values()), 1.0) and list(norm) == PAIR.labels


@given(st.text())
def test_parse_output_never_raises(text):
    out = PAIR.parse_output(text)
    assert out is None or out in PAIR.labels


@given(st.lists(st.floats(1, 5), min_size=1, max_size=5))
def test_distribution_of_scores_preserves_the_mean(scores):
    dist = ORD.distribution(scores)
    assert math.isclose(sum(dist.values()), 1.0)
    assert math.isclose(ORD.expected_score(dist), sum(scores) / len(scores), rel_tol=1e-9, abs_tol=1e-9)
