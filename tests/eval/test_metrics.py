"""Every metric against scipy/sklearn/krippendorff on random inputs, plus the headline figure."""

from __future__ import annotations

import contextlib
import math
import warnings

import krippendorff
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, brier_score_loss, cohen_kappa_score, f1_score

from data.labels import LabelSpace
from data.schema import Item, JudgeRef, Verdict
from data.spec import load_spec
from eval import metrics as M
from eval.ceiling import alpha_counts
from eval.table import Table
from judge import agreement as A
from tests.eval.helpers import PAIRWISE, constant_judge, pairwise_items

LABELS = ["A", "B", "tie", A.NO_VERDICT]
SETTINGS = settings(max_examples=60, deadline=None)


@contextlib.contextmanager
def _quiet():
    """sklearn and krippendorff warn (and numpy divides by zero) where a metric is undefined."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def same(a, b, tol=1e-9) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


pairs = st.integers(2, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from(LABELS[:3]), min_size=n, max_size=n),
        st.lists(st.sampled_from(LABELS), min_size=n, max_size=n),
    )
)


@SETTINGS
@given(pairs)
def test_categorical_metrics_match_sklearn(data):
    truth, pred = data
    assert same(M.accuracy(truth, pred), accuracy_score(truth, pred))
    with _quiet():
        ref_kappa = cohen_kappa_score(truth, pred)
    assert same(M.cohen_kappa(truth, pred), ref_kappa)
    assert same(
        M.macro_f1(truth, pred), f1_score(truth, pred, labels=sorted(set(truth)), average="macro", zero_division=0)
    )
    cm = M.confusion(truth, pred, LABELS)
    assert same(float(M.accuracy_cm(cm)), M.accuracy(truth, pred))
    assert same(float(M.kappa_cm(cm)), ref_kappa)
    assert same(float(M.macro_f1_cm(cm)), M.macro_f1(truth, pred))


@SETTINGS
@given(
    st.integers(2, 50).flatmap(
        lambda n: st.tuples(
            st.lists(st.sampled_from("12345"), min_size=n, max_size=n),
            st.lists(st.sampled_from("12345"), min_size=n, max_size=n),
        )
    )
)
def test_weighted_kappa_matches_sklearn_quadratic(data):
    truth, pred = data
    scale = list("12345")
    with _quiet():
        ref = cohen_kappa_score(truth, pred, labels=scale, weights="quadratic")
    assert same(M.weighted_kappa(truth, pred, scale), ref)
    assert same(float(M.kappa_cm(M.confusion(truth, pred, scale), "quadratic")), ref)


@SETTINGS
@given(pairs, st.integers(0, 2**31 - 1))
def test_confusion_stack_equals_metrics_of_resampled_items(data, seed):
    """The bootstrap's weighted confusion matrices give what sklearn gives on the repeated items."""
    truth, pred = data
    rng = np.random.default_rng(seed)
    weights = rng.integers(0, 3, size=(4, len(truth)))
    weights[:, 0] += 1  # never an empty replicate
    stack = M.confusion(truth, pred, LABELS, weights)
    for w, cm in zip(weights, stack):
        idx = np.repeat(np.arange(len(truth)), w)
        t, p = [truth[i] for i in idx], [pred[i] for i in idx]
        assert same(float(M.accuracy_cm(cm)), accuracy_score(t, p))
        with _quiet():
            assert same(float(M.kappa_cm(cm)), cohen_kappa_score(t, p))
        assert same(float(M.macro_f1_cm(cm)), f1_score(t, p, labels=sorted(set(t)), average="macro", zero_division=0))


floats = st.floats(-100, 100, allow_nan=False, allow_infinity=False)


@SETTINGS
@given(
    st.integers(3, 40).flatmap(
        lambda n: st.tuples(st.lists(floats, min_size=n, max_size=n), st.lists(floats, min_size=n, max_size=n))
    )
)
def test_correlations_match_scipy(data):
    x, y = map(np.array, data)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        for fn in (M.spearman, M.kendall, M.pearson):
            assert math.isnan(fn(x, y))
        return
    with _quiet():
        assert same(M.spearman(x, y), stats.spearmanr(x, y)[0])
        assert same(M.kendall(x, y), stats.kendalltau(x, y)[0])
        assert same(M.pearson(x, y), stats.pearsonr(x, y)[0])


reliability = st.integers(2, 5).flatmap(
    lambda raters: st.integers(3, 30).flatmap(
        lambda units: st.lists(
            st.lists(st.one_of(st.none(), st.integers(1, 4)), min_size=units, max_size=units),
            min_size=raters,
            max_size=raters,
        )
    )
)


@SETTINGS
@given(reliability, st.sampled_from(["nominal", "interval", "ordinal"]))
def test_krippendorff_alpha_matches_package(data, level):
    arr = np.array([[np.nan if v is None else v for v in row] for row in data], dtype=float)
    pairable = np.isfinite(arr).sum(0) >= 2
    values = np.unique(arr[np.isfinite(arr)])
    mine = M.krippendorff_alpha(arr, level)
    if not pairable.any() or len(values) < 2 or len(np.unique(arr[:, pairable][np.isfinite(arr[:, pairable])])) < 2:
        return  # the package divides by zero here; ours says nan
    with _quiet():
        ref = krippendorff.alpha(reliability_data=arr, level_of_measurement=level)
    assert same(mine, ref, 1e-9)
    # the count form the bootstrap resamples gives the same alpha
    domain = list(values)
    counts = np.array([[np.sum(arr[:, u] == v) for v in domain] for u in range(arr.shape[1])])
    with _quiet():
        assert same(M.krippendorff_alpha_counts(counts, domain, level), ref, 1e-9)


def test_alpha_with_the_judge_as_one_more_annotator():
    items = pairwise_items(40, seed=3)
    verdicts = constant_judge(items, lambda it: ("A", "A") if len(it.response_a) > 80 else ("B", "B"))
    table = Table(items, verdicts, PAIRWISE)
    code = {"A": 0, "B": 1, "tie": 2}
    rows = [[code[it.labels[k]] for it in items] for k in range(3)] + [[code[j] for j in table.judge]]
    counts, domain, level = alpha_counts(table, with_judge=True)
    assert level == "nominal" and domain == ["A", "B", "tie"]
    ref = krippendorff.alpha(reliability_data=np.array(rows, dtype=float), level_of_measurement="nominal")
    assert same(M.krippendorff_alpha_counts(counts, range(len(domain)), level), ref, 1e-9)


probs_and_truth = st.integers(1, 80).flatmap(
    lambda n: st.tuples(
        st.lists(st.floats(0, 1, allow_nan=False), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
    )
)


@SETTINGS
@given(probs_and_truth)
def test_reliability_curve_and_ece_match_sklearn_binning(data):
    conf, hit = np.array(data[0]), np.array(data[1], dtype=float)
    curve = M.reliability_curve(conf, hit, 10)
    prob_true, prob_pred = calibration_curve(hit, conf, n_bins=10, strategy="uniform")
    assert np.allclose([b["accuracy"] for b in curve], prob_true)
    assert np.allclose([b["confidence"] for b in curve], prob_pred)
    expected = sum(b["n"] * abs(t - p) for b, t, p in zip(curve, prob_true, prob_pred)) / len(conf)
    assert same(M.ece(conf, hit, 10), expected, 1e-9)
    # weighted (bootstrap) form = ECE of the repeated items
    w = np.random.default_rng(len(conf)).integers(0, 3, size=(3, len(conf)))
    w[:, 0] += 1
    for row, value in zip(w, M.ece(conf, hit, 10, w)):
        idx = np.repeat(np.arange(len(conf)), row)
        assert same(float(value), M.ece(conf[idx], hit[idx], 10), 1e-9)


@SETTINGS
@given(
    st.integers(2, 3).flatmap(
        lambda k: st.integers(1, 40).flatmap(
            lambda n: st.tuples(
                st.just(k),
                st.lists(st.lists(st.floats(0.01, 1), min_size=k, max_size=k), min_size=n, max_size=n),
                st.lists(st.integers(0, k - 1), min_size=n, max_size=n),
            )
        )
    )
)
def test_brier_matches_sklearn(data):
    k, raw, truth_idx = data
    labels = ["A", "B", "tie"][:k]
    probs = np.array(raw) / np.array(raw).sum(1, keepdims=True)
    truth = [labels[i] for i in truth_idx]
    ref = (
        brier_score_loss(truth, probs if k > 2 else probs[:, 1], labels=labels, pos_label="B")
        if k == 2
        else brier_score_loss(truth, probs, labels=labels)
    )
    assert same(M.brier(truth, probs, labels), ref, 1e-9)
    assert same(float(M.brier_items(truth, probs, labels).mean()), ref, 1e-9)


def test_undefined_metrics_are_nan_not_errors():
    assert math.isnan(M.cohen_kappa(["A", "A"], ["A", "A"]))
    assert math.isnan(M.spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(M.krippendorff_alpha(np.array([[1.0, np.nan], [np.nan, 2.0]])))
    assert math.isnan(M.accuracy([], []))


# --- headline ---------------------------------------------------------------------------------------


def _item(i, label, labels=None, kind="pairwise", **kw):
    fields = {"response_a": "x", "response_b": "y"} if kind == "pairwise" else {"response": "r"}
    return Item(
        id=str(i), group=str(i), kind=kind, instruction="q", labels=labels or [label], label=label, **fields, **kw
    )


def test_headline_pairwise_skips_human_ties_and_counts_errors_wrong():
    spec = load_spec("helpfulness-pairwise")
    items = [_item(0, "A"), _item(1, "B"), _item(2, "tie"), _item(3, "A"), _item(4, "B")]
    orders = {"0": ("A", "A"), "1": ("A", "B"), "2": ("tie", "tie"), "3": ("tie", "tie")}
    verdicts = constant_judge(items[:4], lambda it: orders[it.id])
    verdicts.append(Verdict(id="4", judge=JudgeRef(name="j", fingerprint="f"), error="timeout"))
    out = A.headline(items, verdicts, spec)
    # non-tie items 0, 1, 3, 4: 0 right; 1 wrong (orders disagree, the average is a dead heat read as A);
    # 3 wrong (a judge tie on a non-tie item); 4 wrong (an error)
    assert verdicts[1].verdict == "A"
    assert out["n"] == 4
    assert out["accuracy"] == pytest.approx(0.25)
    # both orders scored on items 0-3: same winner on 0, 2, 3
    assert out["swap_consistency"] == pytest.approx(3 / 4)


def test_headline_pointwise_uses_the_label_nearest_the_mean():
    spec = load_spec("summary-coherence")
    items = [_item(0, 3.4, [3, 4, 3.2], kind="pointwise"), _item(1, 4.6, [5, 4, 5], kind="pointwise")]
    j = JudgeRef(name="j", fingerprint="f")
    verdicts = [Verdict(id="0", verdict="3", judge=j), Verdict(id="1", verdict=4, judge=j)]
    assert A.headline(items, verdicts, spec) == {"accuracy": 0.5, "swap_consistency": None, "n": 2}


def test_headline_binary():
    spec = load_spec("answer-correctness")
    items = [_item(0, "yes", kind="binary"), _item(1, "no", kind="binary"), _item(2, None, [None], kind="binary")]
    j = JudgeRef(name="j", fingerprint="f")
    verdicts = [
        Verdict(id="0", verdict="yes", judge=j),
        Verdict(id="1", verdict="yes", judge=j),
        Verdict(id="2", verdict="no", judge=j),
    ]
    assert A.headline(items, verdicts, spec) == {"accuracy": 0.5, "swap_consistency": None, "n": 2}


def test_judge_class_reads_numeric_pointwise_verdicts():
    space = LabelSpace("pointwise", ["1", "2", "3"])
    j = JudgeRef(name="j", fingerprint="f")
    assert A.judge_class(Verdict(id="x", verdict=2.0, judge=j), space) == "2"
    assert A.judge_class(Verdict(id="x", verdict="7", judge=j), space) == A.NO_VERDICT
    assert A.judge_class(None, space) == A.NO_VERDICT
