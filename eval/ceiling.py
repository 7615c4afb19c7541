"""The human ceiling: how often annotators agree with each other, and the judge on the same footing.

Leave-one-out: for every item with at least two annotator labels and every annotator slot j,
the target is the aggregate of the *other* annotators (majority, by ``data.labels.aggregate``;
for pairwise an A/B split of the others is a tie; for pointwise the label nearest their mean).
Annotator j is scored against that target, and so is the judge: both figures are over the
same (item, annotator) pairs, so "the judge agrees with humans as often as humans agree with
each other" is a like-for-like statement. Pairs whose target is a tie are left out of
``accuracy`` (as in the main metrics) and kept in ``accuracy_with_ties``. Krippendorff's alpha
of the annotators alone is reported beside it.
"""

from __future__ import annotations

import numpy as np

from data.labels import aggregate
from eval.bootstrap import GroupBootstrap, Interval
from eval.metrics import confusion, kappa_cm, krippendorff_alpha_counts
from eval.table import Table
from judge.agreement import NO_VERDICT, TIE, annotator_class

METHOD = (
    "leave-one-out: each annotator against the majority of the other annotators on the same item; "
    "the judge against the same leave-one-out majorities"
)


def loo_pairs(table: Table) -> list[tuple[int, int, str, str]]:
    """(item index, annotator slot, annotator's label, target = aggregate of the others)."""
    out = []
    for i, item in enumerate(table.items):
        given = [(j, lab) for j, lab in enumerate(item.labels) if lab is not None]
        if len(given) < 2:
            continue
        for j, lab in given:
            others = [x for k, x in given if k != j]
            target = annotator_class(aggregate(item.kind, others), table.space)
            if target is not None:
                out.append((i, j, annotator_class(lab, table.space), target))
    return out


def _agreement(
    boot: GroupBootstrap, truth: list[str], pred: list[str], labels: list[str], mask: np.ndarray, weights: str | None
) -> dict[str, Interval]:
    sub = boot.subset(mask)
    t = [x for x, m in zip(truth, mask) if m]
    p = [x for x, m in zip(pred, mask) if m]
    if not t:
        nan = Interval(float("nan"), float("nan"), float("nan"))
        return {"accuracy": nan, "kappa": nan}
    hits = np.array([a == b for a, b in zip(t, p)], dtype=float)
    kappa = sub.weighted(lambda w: kappa_cm(confusion(t, p, labels, w), weights))
    return {"accuracy": sub.mean(hits), "kappa": kappa}


def human_ceiling(table: Table, boot: GroupBootstrap) -> dict | None:
    """Human-human and judge-human leave-one-out agreement, or None with fewer than two annotators."""
    pairs = loo_pairs(table)
    if not pairs:
        return None
    pair_boot = boot.take([p[0] for p in pairs])  # an item's replicate weight, once per pair

    human = [p[2] for p in pairs]
    target = [p[3] for p in pairs]
    judge = [table.judge[p[0]] for p in pairs]
    labels = list(dict.fromkeys([*table.space.labels, TIE, *human, *target, NO_VERDICT]))
    ordinal = table.kind == "pointwise"
    kappa_name = "weighted_kappa" if ordinal else "cohen_kappa"
    if ordinal:  # quadratic weights need the scale order; a missing verdict sits outside it
        labels = sorted(table.space.labels, key=table.space.values.get) + [NO_VERDICT]
    main = np.array([not (table.kind == "pairwise" and t == TIE) for t in target])

    out: dict = {
        "method": METHOD,
        "n_pairs": int(main.sum()),
        "n_items": len({p[0] for p, m in zip(pairs, main) if m}),
        "annotators": max(len([x for x in it.labels if x is not None]) for it in table.items),
    }
    humans = _agreement(pair_boot, target, human, labels, main, "quadratic" if ordinal else None)
    judges = _agreement(pair_boot, target, judge, labels, main, "quadratic" if ordinal else None)
    metrics = {"accuracy": humans["accuracy"], kappa_name: humans["kappa"]}
    judge_metrics = {"accuracy": judges["accuracy"], kappa_name: judges["kappa"]}
    if table.kind == "pairwise":
        everything = np.ones(len(pairs), dtype=bool)
        metrics["accuracy_with_ties"] = _agreement(pair_boot, target, human, labels, everything, None)["accuracy"]
        judge_metrics["accuracy_with_ties"] = _agreement(pair_boot, target, judge, labels, everything, None)["accuracy"]
    out["metrics"] = {k: v.as_dict() for k, v in metrics.items()}
    out["judge"] = {k: v.as_dict() for k, v in judge_metrics.items()}
    h, j = humans["accuracy"].value, judges["accuracy"].value
    out["judge_to_ceiling"] = round(j / h, 6) if h and np.isfinite(h) and np.isfinite(j) else None

    per_slot: dict[str, list[bool]] = {}
    for (i, slot, lab, tgt), m in zip(pairs, main):
        if m:
            per_slot.setdefault(str(slot + 1), []).append(lab == tgt)
    out["per_annotator"] = {
        k: {"accuracy": round(float(np.mean(v)), 6), "n": len(v)} for k, v in sorted(per_slot.items())
    }
    out["krippendorff_alpha_humans"] = alpha_interval(table, boot, with_judge=False).as_dict()
    return out


def alpha_counts(table: Table, with_judge: bool) -> tuple[np.ndarray, list, str]:
    """Units x values counts for Krippendorff's alpha: every annotator's label, plus the judge's
    verdict as one more annotator when ``with_judge``. Pointwise labels are interval values."""
    ordinal = table.kind == "pointwise"
    rows: list[list] = []
    for item, judged in zip(table.items, table.judge):
        if ordinal:
            values = [float(x) for x in item.labels if x is not None]
            if not item.labels and item.label is not None:
                values = [float(item.label)]
            if with_judge and judged != NO_VERDICT:
                values.append(table.space.values[judged])
        else:
            values = [annotator_class(x, table.space) for x in item.labels if x is not None]
            if not item.labels and item.label is not None:
                values = [annotator_class(item.label, table.space)]
            if with_judge and judged != NO_VERDICT:
                values.append(judged)
        rows.append(values)
    domain = sorted({v for r in rows for v in r}, key=lambda v: (isinstance(v, str), v))
    col = {v: k for k, v in enumerate(domain)}
    counts = np.zeros((len(rows), len(domain)))
    for u, r in enumerate(rows):
        for v in r:
            counts[u, col[v]] += 1
    return counts, domain, "interval" if ordinal else "nominal"


def alpha_interval(table: Table, boot: GroupBootstrap, with_judge: bool) -> Interval:
    counts, domain, level = alpha_counts(table, with_judge)
    if len(domain) < 2:
        return Interval(float("nan"), float("nan"), float("nan"))
    values = domain if level == "interval" else list(range(len(domain)))
    return boot.resampled(lambda idx: krippendorff_alpha_counts(counts[idx], values, level))
