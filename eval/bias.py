"""Position and verbosity bias, trivial baselines, length control, per-slice metrics, error counts.

Length is measured in characters of the response text (``len(str)``), the same for judge,
humans and baselines. Baselines are scored by the main accuracy rule on the same items as the
judge; ``majority_class`` uses the evaluated items' own labels (hindsight), so it is an upper
bound for a constant answer, not a deployable rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy.stats import chi2
from sklearn.linear_model import LogisticRegression

from data.schema import Item, JudgeRef, Verdict
from eval.bootstrap import GroupBootstrap
from eval.table import Table
from judge.agreement import NO_VERDICT, TIE

SLICE_KEYS = ("source", "language")
MAX_SLICE_VALUES = 20  # the rest are pooled as "other"
LENGTH_BUCKETS = ("short", "medium", "long")
MIN_BEYOND_LENGTH_ITEMS = 30


def _rate(x) -> float | None:
    x = np.asarray(x, dtype=float)
    return round(float(x.mean()), 6) if len(x) else None


def position_bias(table: Table) -> dict:
    """Swap consistency and the rate of choosing the response shown first.

    With both orders scored, the first-shown response is A in the "ab" pass and B in the "ba"
    pass (whose probabilities are already in the item's A/B terms), and the rate is over all
    decisive single-order verdicts. A judge scored in one order only has no swap consistency;
    its rate is the share of decisive verdicts that are A (shown first).
    """
    pairs = table.order_pairs()
    both = [p for p in pairs if p is not None]
    if both:
        firsts = [ab == "A" for ab, _ in both if ab != TIE] + [ba == "B" for _, ba in both if ba != TIE]
        basis = "single-order verdicts of both passes"
    else:
        firsts = [j == "A" for j in table.judge if j in ("A", "B")]
        basis = "final verdicts (one order only)"
    return {
        "swap_consistency": _rate([ab == ba for ab, ba in both]) if both else None,
        "first_position_rate": _rate(firsts),
        "n_both_orders": len(both),
        "first_position_basis": basis,
    }


def longer_of(table: Table) -> list[str | None]:
    """'A' or 'B' for the longer response (characters); None when they are equally long."""
    la, lb = table.lengths()
    return ["A" if a > b else "B" if b > a else None for a, b in zip(la, lb)]


LONGER_RULE = JudgeRef(name="pick-the-longer", fingerprint="rule:longer-by-characters")


def longer_rule_verdicts(items: Sequence[Item]) -> list[Verdict]:
    """Pick-the-longer as a reference judge's verdicts (characters; no verdict where the two are equally long), so
    a judge's margin over the length rule is a paired difference with its interval."""
    return [
        Verdict(id=it.id, verdict="A" if len(it.response_a) > len(it.response_b) else "B", judge=LONGER_RULE)
        for it in items
        if it.response_a is not None and it.response_b is not None and len(it.response_a) != len(it.response_b)
    ]


def verbosity_bias(table: Table) -> dict:
    """How often the judge prefers the longer response, against how often humans do (over
    decisive verdicts and decisive human aggregates with unequal lengths), and how often the
    judge's verdict equals the pick-the-longer rule."""
    longer = longer_of(table)
    judge = [j == lg for j, lg in zip(table.judge, longer) if lg and j in ("A", "B")]
    human = [h == lg for h, lg in zip(table.human, longer) if lg and h in ("A", "B")]
    same_as_rule = [j == lg for j, lg in zip(table.judge, longer) if lg and j != NO_VERDICT]
    return {
        "longer_preferred_rate": _rate(judge),
        "human_longer_preferred_rate": _rate(human),
        "agrees_with_longer_rule": _rate(same_as_rule),
        "n_judge": len(judge),
        "n_human": len(human),
        "length_unit": "characters",
    }


def baseline_predictions(table: Table) -> dict[str, list[str]]:
    """Trivial judges' answers per item."""
    main = table.main
    counts = Counter(h for h, m in zip(table.human, main) if m)
    majority = min(counts, key=lambda lab: (-counts[lab], str(lab))) if counts else table.space.labels[0]
    n = table.n
    out = {}
    if table.kind == "pairwise":
        out["always_first"] = ["A"] * n
        out["always_second"] = ["B"] * n
        out["pick_longer"] = [lg or "A" for lg in longer_of(table)]  # equal lengths: the first
    elif table.kind == "binary":
        for lab in table.space.labels:
            out[f"always_{lab.lower()}"] = [lab] * n
    out["majority_class"] = [majority] * n
    return out


def baselines(table: Table) -> dict[str, float | None]:
    """Each trivial baseline's accuracy on the judge's main items."""
    main = table.main
    out = {}
    for name, pred in baseline_predictions(table).items():
        out[name] = _rate([p == h for p, h, m in zip(pred, table.human, main) if m])
    return out


def length_control(table: Table, boot: GroupBootstrap) -> dict | None:
    """The judge's accuracy where humans preferred the longer response and where they preferred
    the shorter one, and their mean: a judge that tracks length scores high on the first and
    low on the second. Pairwise only; ties and equal lengths left out."""
    if table.kind != "pairwise":
        return None
    longer = longer_of(table)
    correct = table.correct
    out: dict = {}
    intervals = {}
    for name, want in (("acc_longer_preferred", True), ("acc_shorter_preferred", False)):
        mask = np.array(
            [h in ("A", "B") and lg is not None and (h == lg) == want for h, lg in zip(table.human, longer)]
        )
        out[name] = _rate(correct[mask])
        out["n_" + name.removeprefix("acc_")] = int(mask.sum())
        intervals[name] = boot.subset(mask).mean(correct[mask]) if mask.any() else None
    parts = [out["acc_longer_preferred"], out["acc_shorter_preferred"]]
    out["balanced"] = round(sum(parts) / 2, 6) if None not in parts else None
    if None not in intervals.values():
        # the mean of the two accuracies, on the same replicates
        lm = np.array(
            [h in ("A", "B") and lg is not None and h == lg for h, lg in zip(table.human, longer)], dtype=float
        )
        sm = np.array(
            [h in ("A", "B") and lg is not None and h != lg for h, lg in zip(table.human, longer)], dtype=float
        )
        with np.errstate(all="ignore"):
            intervals["balanced"] = boot.weighted(
                lambda w: ((w @ (correct * lm)) / (w @ lm) + (w @ (correct * sm)) / (w @ sm)) / 2
            )
    out["intervals"] = {k: v.as_dict() for k, v in intervals.items() if v is not None}
    out["beyond_length"] = beyond_length(table, boot)
    return out


def beyond_length(table: Table, boot: GroupBootstrap) -> dict | None:
    """Does the judge know more than length? Two logistic models of the human choice (A over B): one on
    the log ratio of the responses' lengths, one on that plus the judge's log odds log(P(A)/P(B)). The
    judge's information beyond length is how much the second lowers the log loss (nats per item, with a
    group-bootstrap interval over the fitted models' per-item losses) and the likelihood-ratio test of
    it (chi-square, 1 degree of freedom; it treats pairs as independent, so with several pairs per
    prompt its p is optimistic, the interval is not). A length detector adds ~0. Pairwise judges with
    probabilities only; human ties, equal lengths and items without the judge's A/B probabilities left out."""
    if table.kind != "pairwise":
        return None
    la, lb = table.lengths()
    rows = []
    for i, (h, v) in enumerate(zip(table.human, table.verdicts)):
        probs = (v.probs or {}) if v is not None else {}
        pa, pb = probs.get("A"), probs.get("B")
        if h in ("A", "B") and la[i] != lb[i] and pa and pb:
            rows.append(
                (i, np.log((la[i] + 1) / (lb[i] + 1)), np.log(np.clip(pa, 1e-9, 1) / np.clip(pb, 1e-9, 1)), h == "A")
            )
    if len(rows) < MIN_BEYOND_LENGTH_ITEMS:
        return None
    idx, length, judge, y = (np.array(c) for c in zip(*rows))
    if y.all() or not y.any():
        return None

    def losses(features: np.ndarray) -> np.ndarray:
        model = LogisticRegression(C=np.inf).fit(features, y)
        p = np.clip(model.predict_proba(features)[:, 1], 1e-12, 1 - 1e-12)
        return -np.where(y, np.log(p), np.log1p(-p))

    alone, both = losses(length[:, None]), losses(np.c_[length, judge])
    stat = float(2 * (alone.sum() - both.sum()))
    mask = np.zeros(table.n, dtype=bool)
    mask[idx] = True
    gain = boot.subset(mask).mean(alone - both)
    return {
        "n": len(rows),
        "log_loss_length": round(float(alone.mean()), 6),
        "log_loss_length_and_judge": round(float(both.mean()), 6),
        "gain": gain.as_dict(),
        "lr_chi2": round(stat, 3),
        "p_value": float(chi2.sf(max(stat, 0.0), 1)),
        "length_unit": "log ratio of characters",
    }


def total_lengths(table: Table) -> np.ndarray:
    """Characters per item: the response, or for pairwise the two responses together."""
    lengths = table.lengths()
    return lengths[0] + lengths[1] if table.kind == "pairwise" else lengths


def slice_values(table: Table) -> dict[str, list[str]]:
    """For each slice dimension present in the items, each item's value."""
    dims: dict[str, list[str]] = {}
    for key in SLICE_KEYS:
        values = [it.meta.get(key) for it in table.items]
        if any(v is not None for v in values):
            values = ["(none)" if v is None else str(v) for v in values]
            common = {v for v, _ in Counter(values).most_common(MAX_SLICE_VALUES)}
            dims[key] = [v if v in common else "other" for v in values]
    total = total_lengths(table)
    lo, hi = (float(x) for x in np.quantile(total, [1 / 3, 2 / 3]))  # terciles of this item set
    names = (f"short (<= {lo:.0f} chars)", f"medium ({lo:.0f}-{hi:.0f} chars)", f"long (> {hi:.0f} chars)")
    dims["length"] = [names[0] if t <= lo else names[1] if t <= hi else names[2] for t in total]
    return dims


def slices(table: Table, boot: GroupBootstrap, mask: np.ndarray | None = None) -> dict:
    """Main accuracy (with its interval), item count and swap consistency per slice value, over ``mask`` (default:
    the main items; a reference judge passes the main items it has a verdict for)."""
    main = table.main if mask is None else mask
    correct = table.correct
    pairs = table.order_pairs()
    out: dict = {}
    for dim, values in slice_values(table).items():
        rows = {}
        order = (
            (lambda v: LENGTH_BUCKETS.index(v.split()[0]))
            if dim == "length"
            else (lambda v: (v == "other", -values.count(v), v))
        )
        for value in sorted(set(values), key=order):
            mask = np.array([v == value for v in values]) & main
            if not mask.any():
                continue
            same = [p[0] == p[1] for p, v in zip(pairs, values) if p is not None and v == value]
            rows[value] = {
                "n": int(mask.sum()),
                "accuracy": boot.subset(mask).mean(correct[mask]).as_dict(),
                "swap_consistency": _rate(same) if same else None,
            }
        out[dim] = rows
    return out


def error_counts(table: Table) -> dict:
    """Items without a usable verdict (missing, error, unparseable) and truncated prompts."""
    kinds: Counter = Counter()
    error = unparseable = missing = truncated = 0
    for v, j in zip(table.verdicts, table.judge):
        if v is None:
            missing += 1
        elif v.error:
            error += 1
            kinds[v.error.split(":")[0][:80]] += 1
        elif j == NO_VERDICT:
            unparseable += 1
        if v is not None and v.truncated and any(v.truncated.values()):
            truncated += 1
    return {
        "no_verdict": missing + error + unparseable,
        "error": error,
        "unparseable": unparseable,
        "missing": missing,
        "truncated": truncated,
        "n_items": table.n,
        "error_kinds": dict(kinds.most_common(5)),
    }
