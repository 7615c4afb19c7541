"""The validation harness: a judge's verdicts on labelled items -> the validation.json result.

Everything in the result is computed on the same items with the same seeded group bootstrap,
so the judge, the human ceiling, the baselines, the reference judges and the incumbent are
directly comparable and every paired comparison draws the same prompts. The result is an
``eval.result.ValidationResult`` (docs/validation.md says what each field means);
``SCHEMA_VERSION`` changes when a field changes meaning or disappears.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from data.errors import DataError
from data.provenance import git_commit, library_versions
from data.schema import Item, Verdict
from data.spec import JudgeSpec, spec_hash
from eval import bias, ceiling
from eval.bootstrap import LEVEL, GroupBootstrap, Interval, interval, mcnemar
from eval.metrics import (
    accuracy_cm,
    brier_items,
    confusion,
    ece,
    kappa_cm,
    kendall,
    macro_f1_cm,
    pearson,
    reliability_curve,
    spearman,
)
from eval.result import SCHEMA_VERSION, ValidationResult
from eval.table import Table, match_verdicts
from judge.agreement import NO_VERDICT, TIE

N_BINS = 10

TIE_POLICY = {
    "pairwise": (
        "The human aggregate is the majority of the annotators; an A/B split with no majority is a tie. "
        "'accuracy', 'cohen_kappa' and 'macro_f1' are over items whose human aggregate is A or B "
        "(a judge's tie there is wrong); the '*_with_ties' metrics are over all labelled items with "
        "tie as a third class. Krippendorff's alpha keeps ties as a category."
    ),
    "binary": (
        "No ties: every item with a human majority counts; items whose annotators split evenly have no "
        "aggregate and are left out."
    ),
    "pointwise": (
        "'accuracy' and 'weighted_kappa' compare the judge's label with the scale label nearest the human "
        "mean; correlations compare the judge's score (expected value of its distribution, else its label) "
        "with the human mean."
    ),
}
ERROR_POLICY = (
    "An item without a usable verdict (error, unparseable) counts as wrong in accuracy, Cohen's kappa "
    "and macro F1; it is left out of correlations, weighted kappa and calibration, is a missing rating "
    "in Krippendorff's alpha, and is counted in 'errors'."
)


def _nan() -> Interval:
    return Interval(float("nan"), float("nan"), float("nan"))


def categorical_metrics(table: Table, boot: GroupBootstrap, mask: np.ndarray, suffix: str = "") -> dict[str, Interval]:
    """Accuracy, Cohen's kappa and macro F1 on the masked items, from bootstrap confusion matrices."""
    if not mask.any():
        return {f"{name}{suffix}": _nan() for name in ("accuracy", "cohen_kappa", "macro_f1")}
    human = [h for h, m in zip(table.human, mask) if m]
    judge = [j for j, m in zip(table.judge, mask) if m]
    labels = list(dict.fromkeys([*table.space.labels, TIE, NO_VERDICT, *human, *judge]))
    point = confusion(human, judge, labels)[None]
    reps = confusion(human, judge, labels, boot.subset(mask).weights)
    return {
        f"{name}{suffix}": interval(float(fn(point)[0]), fn(reps))
        for name, fn in (("accuracy", accuracy_cm), ("cohen_kappa", kappa_cm), ("macro_f1", macro_f1_cm))
    }


def judge_scores(table: Table) -> np.ndarray:
    """Pointwise: the verdict's score, else the expected value of its distribution, else its label's value."""
    space = table.space
    out = []
    for v, j in zip(table.verdicts, table.judge):
        if j == NO_VERDICT:
            out.append(np.nan)
        elif v.score is not None:
            out.append(float(v.score))
        elif v.probs:
            out.append(space.expected_score(space.normalise(v.probs)))
        else:
            out.append(space.values[j])
    return np.array(out, dtype=float)


def human_scores(table: Table) -> np.ndarray:
    out = []
    for it in table.items:
        given = [float(x) for x in it.labels if x is not None]
        out.append(float(it.label) if it.label is not None else np.mean(given) if given else np.nan)
    return np.array(out, dtype=float)


def agreement_metrics(table: Table, boot: GroupBootstrap) -> dict[str, Interval]:
    """The metrics for the label kind, each with its 95% group-bootstrap interval."""
    out: dict[str, Interval] = {}
    if table.kind in ("pairwise", "binary"):
        out |= categorical_metrics(table, boot, table.main)
        if table.kind == "pairwise":
            out |= categorical_metrics(table, boot, table.labelled, "_with_ties")
    else:
        space = table.space
        main = table.main
        hits = table.correct
        out["accuracy"] = boot.subset(main).mean(hits[main]) if main.any() else _nan()
        scored = main & table.has_verdict
        scale = sorted(space.labels, key=space.values.get)
        human = [h for h, m in zip(table.human, scored) if m]
        judge = [j for j, m in zip(table.judge, scored) if m]
        sub = boot.subset(scored)
        out["weighted_kappa"] = (
            sub.weighted(lambda w: kappa_cm(confusion(human, judge, scale, w), "quadratic")) if scored.any() else _nan()
        )
        x, y = judge_scores(table)[scored], human_scores(table)[scored]
        for name, fn in (("spearman", spearman), ("kendall", kendall), ("pearson", pearson)):
            out[name] = sub.resampled(lambda idx, fn=fn: fn(x[idx], y[idx])) if scored.any() else _nan()
    out["krippendorff_alpha"] = ceiling.alpha_interval(table, boot, with_judge=True)
    return out


def calibration(table: Table, boot: GroupBootstrap) -> dict:
    """ECE and Brier of the verdict's probability, and the reliability curve, on items whose
    verdict has probabilities and whose human aggregate is one of the judge's labels."""
    space = table.space
    rows, conf, hit, probs, truth = [], [], [], [], []
    for i, (v, h, j) in enumerate(zip(table.verdicts, table.human, table.judge)):
        if j == NO_VERDICT or not v.probs or h not in space.labels:
            continue
        p = space.normalise(v.probs)
        rows.append(i)
        conf.append(p[j])
        hit.append(float(j == h))
        probs.append([p[lab] for lab in space.labels])
        truth.append(h)
    basis = "probability of the verdict's label (probs renormalised over the label space)"
    if not rows:
        return {
            "ece": None,
            "brier": None,
            "n": 0,
            "n_bins": N_BINS,
            "reliability": [],
            "confidence": basis,
            "note": "no verdict carries probabilities",
        }
    sub = boot.take(rows)
    conf_a, hit_a = np.array(conf), np.array(hit)
    per_item = brier_items(truth, np.array(probs), space.labels)
    intervals = {"ece": sub.weighted(lambda w: ece(conf_a, hit_a, N_BINS, w)), "brier": sub.mean(per_item)}
    return {
        "ece": intervals["ece"].as_dict()["value"],
        "brier": intervals["brier"].as_dict()["value"],
        "n": len(rows),
        "n_bins": N_BINS,
        "confidence": basis,
        "reliability": reliability_curve(conf_a, hit_a, N_BINS),
        "intervals": {k: v.as_dict() for k, v in intervals.items()},
    }


def confusion_table(table: Table) -> dict:
    """Counts of human aggregate (rows) x judge verdict (columns) over all labelled items."""
    mask = table.labelled
    human = [h for h, m in zip(table.human, mask) if m]
    judge = [j for j, m in zip(table.judge, mask) if m]
    rows = list(table.space.labels) + ([TIE] if TIE in human and TIE not in table.space.labels else [])
    cols = list(table.space.labels) + sorted(set(judge) - set(table.space.labels))
    labels = list(dict.fromkeys(rows + cols))
    cm = confusion(human, judge, labels) if human else np.zeros((len(labels), len(labels)))
    ri, ci = [labels.index(r) for r in rows], [labels.index(c) for c in cols]
    return {
        "rows": rows,
        "columns": cols,
        "counts": cm[np.ix_(ri, ci)].astype(int).tolist(),
        "axes": "rows: human aggregate, columns: judge verdict",
    }


def _judge_info(verdicts: Sequence[Verdict], given: dict | None) -> dict:
    prints = sorted({(v.judge.name, v.judge.fingerprint) for v in verdicts})
    info = dict(given or {})
    if len({fp for _, fp in prints}) > 1 and "fingerprint" not in info:
        raise DataError(
            f"the verdicts come from {len(prints)} judges ({', '.join(n for n, _ in prints[:3])} ...)",
            field="judge.fingerprint",
            hint="evaluate one judge's verdicts at a time",
        )
    if prints:
        info.setdefault("name", prints[0][0])
        info.setdefault("fingerprint", prints[0][1])
    engines = sorted({v.judge.engine for v in verdicts if v.judge.engine})
    if len(engines) > 1 and "engine" not in info:
        raise DataError(
            f"the verdicts were computed in {len(engines)} engines/dtypes ({', '.join(engines)})",
            field="judge.engine",
            hint="validate the verdicts of one engine and dtype at a time: near-tie verdicts differ between them",
        )
    info.setdefault("engine", engines[0] if engines else None)
    info.setdefault("version", None)
    return info


def compare(table: Table, other: Table, boot: GroupBootstrap, mask: np.ndarray) -> dict:
    """Paired comparison of two judges' main accuracy on the masked items: the bootstrap interval
    of the difference (this table minus ``other``) and McNemar's exact test."""
    a, b = table.correct[mask], other.correct[mask]
    sub = boot.subset(mask)
    return {"n": int(mask.sum()), "diff": sub.paired_diff(a, b).as_dict(), "mcnemar": mcnemar(a, b)}


def reference_summary(table: Table, ref: Table, boot: GroupBootstrap) -> dict:
    """A reference judge's metrics on the items it covers, and the judge minus it, paired."""
    covered = np.array([v is not None for v in ref.verdicts], dtype=bool)
    if ref.kind == "pointwise":
        m = ref.main & covered
        metrics = {"accuracy": boot.subset(m).mean(ref.correct[m]) if m.any() else _nan()}
    else:
        metrics = categorical_metrics(ref, boot, ref.main & covered)
        if ref.kind == "pairwise":
            metrics |= categorical_metrics(ref, boot, ref.labelled & covered, "_with_ties")
    errors = bias.error_counts(
        Table([it for it, c in zip(ref.items, covered) if c], [v for v in ref.verdicts if v is not None], ref.space)
    )
    out = {
        "n": int((ref.main & covered).sum()),
        "n_items": int(covered.sum()),
        "n_missing": int((~covered).sum()),
        "metrics": {k: v.as_dict() for k, v in metrics.items()},
        "no_verdict": errors["no_verdict"],
    }
    if ref.kind == "pairwise":
        out["longer_preferred_rate"] = bias.verbosity_bias(ref)["longer_preferred_rate"]
        out["first_position_rate"] = bias.position_bias(ref)["first_position_rate"]
    out["judge_minus_reference"] = compare(table, ref, boot, table.main & covered)
    out["slices"] = bias.slices(ref, boot, ref.main & covered)  # where the judge beats it, not only overall
    return out


def evaluate(
    items: Sequence[Item],
    verdicts: Sequence[Verdict],
    spec: JudgeSpec,
    judge_info: dict | None = None,
    dataset_info: dict | None = None,
    reference_verdicts: dict[str, Sequence[Verdict]] | None = None,
    incumbent_verdicts: Sequence[Verdict] | None = None,
    seed: int = 0,
    n_boot: int = 1000,
    incumbent_info: dict | None = None,
    injection: dict | None = None,
) -> ValidationResult:
    """Validate a judge's verdicts against the human labels of ``items``; returns the validation result.

    ``injection``, when given, is ``eval.injection.measure``'s result: kept as the "injection" section."""
    items = list(items)
    if not items:
        raise DataError("no items to evaluate")
    wrong_kind = [it.id for it in items if it.kind != spec.kind]
    if wrong_kind:
        raise DataError(
            f"{len(wrong_kind)} items are not {spec.kind} (spec '{spec.name}'), e.g. '{wrong_kind[0]}'", field="kind"
        )
    space = spec.label_space
    table = Table(items, match_verdicts(items, verdicts), space)
    if not table.labelled.any():
        raise DataError("no item has a human label", field="label", hint="validation needs labelled items")
    boot = GroupBootstrap(table.groups, n_boot, seed)

    sections: dict = {
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "judge": _judge_info(verdicts, judge_info),
        "spec": {
            "name": spec.name,
            "version": spec.version,
            "kind": spec.kind,
            "labels": space.labels,
            "sha256": spec_hash(spec),
        },
        "dataset": {"name": None, "split": None, "sha256": None, **(dataset_info or {})},
        "n": int(table.main.sum()),
        "n_items": table.n,
        "n_groups": boot.n_groups,
        "tie_policy": TIE_POLICY[spec.kind],
        "error_policy": ERROR_POLICY,
        "interval": {
            "level": LEVEL,
            "method": "percentile bootstrap resampling groups (prompts) with replacement",
            "n_boot": n_boot,
            "seed": seed,
        },
        "metrics": {k: v.as_dict() for k, v in agreement_metrics(table, boot).items()},
        "human_ceiling": ceiling.human_ceiling(table, boot),
        "bias": {**bias.position_bias(table), **bias.verbosity_bias(table)} if spec.kind == "pairwise" else {},
        "calibration": calibration(table, boot),
        "confusion": confusion_table(table),
        "baselines": bias.baselines(table),
        "length_control": bias.length_control(table, boot),
        "slices": bias.slices(table, boot),
        "errors": bias.error_counts(table),
    }

    references = {}
    for name, ref_verdicts in (reference_verdicts or {}).items():
        ref = table.with_verdicts(match_verdicts(items, list(ref_verdicts), what=f"'{name}' verdicts", partial=True))
        if not any(v is not None for v in ref.verdicts):
            raise DataError(
                f"reference judge '{name}' has no verdict for any of the {table.n} items",
                hint="is it a reference for another dataset?",
            )
        references[name] = reference_summary(table, ref, boot)

    comparison = None
    if incumbent_verdicts is not None:
        inc = table.with_verdicts(match_verdicts(items, list(incumbent_verdicts), what="incumbent verdicts"))
        comparison = {
            "incumbent": _judge_info(incumbent_verdicts, incumbent_info),
            "metric": "accuracy",
            "candidate": boot.subset(table.main).mean(table.correct[table.main]).as_dict(),
            "incumbent_accuracy": boot.subset(table.main).mean(inc.correct[table.main]).as_dict(),
            **compare(table, inc, boot, table.main),
        }
    if injection is not None:  # absent otherwise, as the section of a result that did not measure it
        sections["injection"] = injection
    return ValidationResult(
        **sections,
        reference_judges=references,
        comparison=comparison,
        provenance={"git_commit": git_commit(), "versions": library_versions()},
    )
