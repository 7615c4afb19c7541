"""The agreement metrics of validation: the harness and the gate read them.

The per-item labels and ``headline`` (training's dev figure) are in judge/agreement.py. These are thin wrappers over
sklearn/scipy/krippendorff, plus confusion-matrix forms of the categorical metrics that take a
stack of matrices at once (the bootstrap computes a thousand replicates in one call); tests
check both forms against the libraries on random inputs.

Conventions: categorical labels are strings; an item the judge gave no verdict for carries the
label ``NO_VERDICT``, which is never correct. A metric that is undefined on its input (a kappa
when everyone used one label, a correlation of a constant) is ``nan``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

# --- categorical agreement (thin wrappers) ----------------------------------------------------------


def accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    from sklearn.metrics import (  # deferred: scikit-learn takes seconds to import; only this path needs it
        accuracy_score,
    )

    return float(accuracy_score(list(y_true), list(y_pred))) if len(y_true) else float("nan")


def cohen_kappa(y_true: Sequence, y_pred: Sequence) -> float:
    from sklearn.metrics import (  # deferred: scikit-learn takes seconds to import; only this path needs it
        cohen_kappa_score,
    )

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(list(y_true), list(y_pred))) if len(y_true) else float("nan")


def weighted_kappa(y_true: Sequence, y_pred: Sequence, labels: Sequence) -> float:
    """Quadratic-weighted kappa for ordinal labels; ``labels`` in scale order (a label outside
    them, such as NO_VERDICT, must be mapped by the caller)."""
    from sklearn.metrics import (  # deferred: scikit-learn takes seconds to import; only this path needs it
        cohen_kappa_score,
    )

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(list(y_true), list(y_pred), labels=list(labels), weights="quadratic"))


def macro_f1(y_true: Sequence, y_pred: Sequence) -> float:
    """Macro F1 over the classes that occur in the truth (the human labels): a prediction of any
    other label (a tie on non-tie items, no verdict) is a miss for the true class, not a class."""
    from sklearn.metrics import f1_score  # deferred: scikit-learn takes seconds to import; only this path needs it

    if not len(y_true):
        return float("nan")
    return float(f1_score(list(y_true), list(y_pred), labels=sorted(set(y_true)), average="macro", zero_division=0))


# --- the same metrics from confusion matrices (vectorised over bootstrap replicates) ------------------


def confusion(y_true: Sequence, y_pred: Sequence, labels: Sequence, weights=None) -> np.ndarray:
    """K x K counts (rows: truth, columns: prediction); ``weights`` (R x n) gives R matrices."""
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    cell = np.array([index[t] * k + index[p] for t, p in zip(y_true, y_pred)], dtype=np.int64)
    onehot = np.zeros((len(cell), k * k))
    onehot[np.arange(len(cell)), cell] = 1.0
    if weights is None:
        return onehot.sum(0).reshape(k, k)
    return (np.asarray(weights, dtype=float) @ onehot).reshape(-1, k, k)


def accuracy_cm(cm: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.trace(cm, axis1=-2, axis2=-1) / cm.sum(axis=(-2, -1))


def kappa_cm(cm: np.ndarray, weights: str | None = None) -> np.ndarray:
    """Cohen's kappa as sklearn computes it: 1 - sum(w * observed) / sum(w * expected)."""
    k = cm.shape[-1]
    if weights is None:
        w = 1.0 - np.eye(k)
    else:  # quadratic: (i - j)^2 over the label order
        i = np.arange(k)
        w = (i[:, None] - i[None, :]) ** 2.0
    total = cm.sum(axis=(-2, -1), keepdims=True)
    with np.errstate(all="ignore"):
        expected = cm.sum(-1, keepdims=True) * cm.sum(-2, keepdims=True) / total
        return 1.0 - (w * cm).sum(axis=(-2, -1)) / (w * expected).sum(axis=(-2, -1))


def macro_f1_cm(cm: np.ndarray) -> np.ndarray:
    """Macro F1 over the labels present in the truth (matches ``macro_f1``)."""
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    rows, cols = cm.sum(-1), cm.sum(-2)
    present = rows > 0
    with np.errstate(all="ignore"):
        f1 = np.where(present, 2 * tp / np.where(present, rows + cols, 1), 0.0)
        return f1.sum(-1) / present.sum(-1)


# --- scores ---------------------------------------------------------------------------------------


def _corr(fn, x, y) -> float:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(x, y)[0])


def spearman(x, y) -> float:
    from scipy.stats import spearmanr  # deferred: SciPy takes seconds to import; only this path needs it

    return _corr(spearmanr, x, y)


def kendall(x, y) -> float:
    """Kendall's tau-b (scipy's default)."""
    from scipy.stats import kendalltau  # deferred: SciPy takes seconds to import; only this path needs it

    return _corr(kendalltau, x, y)


def pearson(x, y) -> float:
    from scipy.stats import pearsonr  # deferred: SciPy takes seconds to import; only this path needs it

    return _corr(pearsonr, x, y)


# --- several annotators ---------------------------------------------------------------------------


def krippendorff_alpha(reliability_data, level: str = "nominal", value_domain=None) -> float:
    """Krippendorff's alpha; ``reliability_data`` is annotators x items with nan where one gave
    no label. The judge is added as one more row by the caller."""
    import krippendorff  # deferred: krippendorff (numpy, scipy) takes seconds to import; only this path needs it

    data = np.asarray(reliability_data, dtype=float)
    if np.isfinite(data).sum(0).max(initial=0) < 2 or len(np.unique(data[np.isfinite(data)])) < 2:
        return float("nan")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level, value_domain=value_domain))


def krippendorff_alpha_counts(value_counts: np.ndarray, value_domain, level: str = "nominal") -> float:
    """Alpha from a units x values count matrix (the form the bootstrap resamples)."""
    import krippendorff  # deferred: krippendorff (numpy, scipy) takes seconds to import; only this path needs it

    counts = np.asarray(value_counts)
    pairable = counts[counts.sum(1) >= 2]
    if len(pairable) == 0 or (pairable.sum(0) > 0).sum() < 2:
        return float("nan")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return float(
            krippendorff.alpha(value_counts=counts, value_domain=list(value_domain), level_of_measurement=level)
        )


# --- calibration ----------------------------------------------------------------------------------


def reliability_curve(confidence, correct, n_bins: int = 10) -> list[dict]:
    """Equal-width confidence bins (as sklearn's ``calibration_curve``, strategy 'uniform'):
    per non-empty bin its range, count, mean confidence and accuracy."""
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], conf)
    out = []
    for b in range(n_bins):
        mask = ids == b
        if mask.any():
            out.append(
                {
                    "lo": float(edges[b]),
                    "hi": float(edges[b + 1]),
                    "n": int(mask.sum()),
                    "confidence": float(conf[mask].mean()),
                    "accuracy": float(hit[mask].mean()),
                }
            )
    return out


def ece(confidence, correct, n_bins: int = 10, weights=None) -> float | np.ndarray:
    """Expected calibration error of the verdict's probability: sum over bins of
    (share of items) * |accuracy - mean confidence|. ``weights`` (R x n) gives R values."""
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    if len(conf) == 0:
        return float("nan")
    ids = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], conf)
    onehot = np.zeros((len(conf), n_bins))
    onehot[np.arange(len(conf)), ids] = 1.0
    w = np.ones((1, len(conf))) if weights is None else np.asarray(weights, dtype=float)
    count = w @ onehot
    gap = np.abs(w @ (onehot * hit[:, None]) - w @ (onehot * conf[:, None]))  # |sum hit - sum conf| per bin
    with np.errstate(all="ignore"):
        value = gap.sum(1) / count.sum(1)
    return float(value[0]) if weights is None else value


def brier(y_true: Sequence, probs: np.ndarray, labels: Sequence) -> float:
    """sklearn's Brier score over the label distribution: two labels, mean (p - y)^2 of one
    label; three or more, mean of the sum over labels of (p_k - y_k)^2."""
    from sklearn.metrics import (  # deferred: scikit-learn takes seconds to import; only this path needs it
        brier_score_loss,
    )

    return float(brier_score_loss(list(y_true), np.asarray(probs, dtype=float), labels=list(labels)))


def brier_items(y_true: Sequence, probs: np.ndarray, labels: Sequence) -> np.ndarray:
    """Each item's share of ``brier`` (their mean is ``brier``), for weighted resampling."""
    probs = np.asarray(probs, dtype=float)
    onehot = np.array([[1.0 if t == lab else 0.0 for lab in labels] for t in y_true]).reshape(probs.shape)
    per = ((probs - onehot) ** 2).sum(1)
    return per / 2 if len(labels) == 2 else per
