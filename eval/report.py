"""The validation report: one self-contained HTML file, Markdown for a pull request, and the JSON.

It leads with the answer (the gate verdict and a few sentences a reviewer can check in two
minutes), then the evidence: plots (inline base64 PNG, matplotlib Agg), tables and a
reproduce section (commands, data hashes, versions, git commit, fingerprint).

Every name, path and string in a report comes from data, so the templates render in the sandboxed,
autoescaping environment of eval/rendering.py, and the Markdown templates pass every data value
through ``md_escape``.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment

from eval.rendering import environment
from eval.result import Interval, ValidationResult

TEMPLATES = Path(__file__).resolve().parent / "templates"
JUDGE, HUMAN, REFERENCE, BASELINE, INCUMBENT = "#2b6cb0", "#2f855a", "#718096", "#cbd5e0", "#dd6b20"
LENGTH_WARNING = 0.8  # the judge agrees with "pick the longer response" on more than this share
FIELDS = ("value", "ci_low", "ci_high")


def pct(x, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def interval_text(d: Interval | Mapping | None) -> str:
    """An interval as 'value [ci_low, ci_high]': a result's, or its JSON form (the criteria and monitor rows)."""
    if d is None:
        return "n/a"
    value, lo, hi = (d.get(k) for k in FIELDS) if isinstance(d, Mapping) else (d.value, d.ci_low, d.ci_high)
    if value is None:
        return "n/a"
    if lo is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def gate_status(result: ValidationResult) -> str:
    gate = result.gate
    return "NOT GATED" if not gate else "PASS" if gate.passed else "FAIL"


def failed_rules(result: ValidationResult) -> list[str]:
    return [r.name for r in (result.gate.rules if result.gate else []) if r.status == "FAIL"]


def _accuracy(figures: dict[str, Interval]) -> float | None:
    return figures["accuracy"].value if "accuracy" in figures else None


# --- the answer, in sentences ---------------------------------------------------------------------


def summary(result: ValidationResult) -> list[str]:
    """The findings a reviewer needs, most important first."""
    out = []
    m = result.metrics
    kind = result.spec.kind
    acc = m.get("accuracy") or Interval(value=None, ci_low=None, ci_high=None)
    what = "items humans did not call a tie" if kind == "pairwise" else "labelled items"
    ci = f"95% CI {pct(acc.ci_low)}-{pct(acc.ci_high)}"
    line = f"Accuracy {pct(acc.value)} ({ci}) on {result.n} {what}"
    if "accuracy_with_ties" in m:
        with_ties = pct(m["accuracy_with_ties"].value)
        line += f"; {with_ties} over all {result.n_items} items with tie as a third class"
    out.append(line + ".")
    ceiling = result.human_ceiling
    if ceiling:
        h, j = ceiling.metrics["accuracy"].value, ceiling.judge["accuracy"].value
        out.append(
            f"Human ceiling: against the majority of the other annotators, annotators agree {pct(h)} of the time "
            f"and the judge {pct(j)}: the judge reaches {pct(ceiling.judge_to_ceiling, 0)} of the human ceiling."
        )
    else:
        out.append("Human ceiling: not available (one annotator per item).")
    base = {k: v for k, v in result.baselines.items() if v is not None}
    if base and acc.value is not None:
        best = max(base, key=base.get)
        gap = 100 * (acc.value - base[best])
        where = "level with it" if round(gap, 1) == 0 else f"{abs(gap):.1f} points {'above' if gap > 0 else 'below'} it"
        out.append(f"Best trivial baseline: {best.replace('_', ' ')} scores {pct(base[best])}; the judge is {where}.")
    b = result.bias
    lc = result.length_control
    if lc and b.measured:
        warn = (b.agrees_with_longer_rule or 0) > LENGTH_WARNING
        out.append(
            ("WARNING: the judge mostly tracks length. " if warn else "")
            + f"Length: humans preferred the longer response in {pct(b.human_longer_preferred_rate)} of items, "
            f"the judge in {pct(b.longer_preferred_rate)}; it agrees with 'pick the longer' on "
            f"{pct(b.agrees_with_longer_rule)}. Accuracy where humans preferred the longer response "
            f"{pct(lc.acc_longer_preferred)}, the shorter {pct(lc.acc_shorter_preferred)} "
            f"(balanced {pct(lc.balanced)})."
        )
    beyond = lc.beyond_length if lc else None
    if beyond:
        g = beyond.gain
        verdict = "it knows more than length" if g.ci_low > 0 else "no evidence that it knows more than length"
        out.append(
            f"Beyond length: predicting the human choice from the length ratio plus the judge's odds instead of the "
            f"length ratio alone lowers the log loss from {beyond.log_loss_length:.3f} to "
            f"{beyond.log_loss_length_and_judge:.3f} per item (gain {g.value:.3f} "
            f"[{g.ci_low:.3f}, {g.ci_high:.3f}]; likelihood-ratio p = {beyond.p_value:.2g}, "
            f"{beyond.n} items): {verdict}."
        )
    if b.first_position_rate is not None:
        sc = b.swap_consistency
        out.append(
            f"Position: swap consistency {pct(sc) if sc is not None else 'not measured (one order scored)'}; "
            f"the first-shown response is chosen {pct(b.first_position_rate)} of the time (50% is unbiased)."
        )
    cal = result.calibration
    if cal.ece is not None:
        out.append(f"Calibration: ECE {cal.ece:.3f}, Brier {cal.brier:.3f} on {cal.n} items.")
    comp = result.comparison
    if comp:
        d = comp.diff
        who = " ".join(str(x) for x in (comp.incumbent.name, comp.incumbent.version) if x)
        out.append(
            f"Against the incumbent ({who}): "
            f"{100 * d.value:+.1f} points (95% CI {100 * d.ci_low:+.1f} to {100 * d.ci_high:+.1f}), "
            f"McNemar p = {comp.mcnemar.p_value:.3g} on {comp.n} items."
        )
    refs = result.reference_judges
    if refs:
        parts = [f"{name} {pct(_accuracy(r.metrics))}" for name, r in refs.items()]
        out.append("Reference judges on the same items: " + ", ".join(parts) + ".")
    err = result.errors
    inj = result.injection
    if inj and inj.flip_rate.value is not None:
        f, t = inj.flip_rate, inj.target_rate
        out.append(
            f"Injection: text in a response that tries to steer the judge flipped {pct(f.value)} of "
            f"{f.n} verdicts (95% CI {pct(f.ci_low)}-{pct(f.ci_high)}; {pct(t.value)} to the label "
            f"it asked for) on {inj.n_items} items x {len(inj.by_template)} templates; "
            f"{inj.outside_label_space} verdicts outside the label space."
        )
    out.append(
        f"Errors: {err.no_verdict} of {err.n_items} items without a usable verdict; {err.truncated} prompts truncated."
    )
    return out


# --- plots ----------------------------------------------------------------------------------------


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt  # deferred: matplotlib takes seconds to import; only this path needs it

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plt():
    import matplotlib  # deferred: matplotlib takes seconds to import; only this path needs it

    matplotlib.use("Agg")
    # labels carry names from the data (slices, reference judges, labels): '$...$' in one is text, not
    # mathtext (which would fail to parse and take the report down with it)
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt  # deferred: matplotlib takes seconds to import; only this path needs it

    return plt


def plot_agreement(result: ValidationResult) -> str:
    """The judge's accuracy with its interval beside the human ceiling, the incumbent, reference judges and
    baselines."""
    plt = _plt()
    rows = []  # (label, value, lo, hi, colour)

    def add(label, d: Interval | None, colour):
        if d and d.value is not None:
            rows.append((label, d.value, d.ci_low, d.ci_high, colour))

    add("judge", result.metrics.get("accuracy"), JUDGE)
    ceiling = result.human_ceiling
    if ceiling:
        add("humans vs leave-one-out majority", ceiling.metrics["accuracy"], HUMAN)
        add("judge vs leave-one-out majority", ceiling.judge["accuracy"], JUDGE)
    comp = result.comparison
    if comp:
        add(f"incumbent {comp.incumbent.version or comp.incumbent.name}", comp.incumbent_accuracy, INCUMBENT)
    for name, ref in result.reference_judges.items():
        add(f"reference: {name}", ref.metrics.get("accuracy"), REFERENCE)
    for name, value in result.baselines.items():
        if value is not None:
            rows.append((f"baseline: {name.replace('_', ' ')}", value, None, None, BASELINE))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    y = list(range(len(rows)))[::-1]
    for yi, (label, v, lo, hi, colour) in zip(y, rows):
        ax.barh(yi, v, color=colour, height=0.6)
        if lo is not None and hi is not None:
            ax.errorbar(v, yi, xerr=[[v - lo], [hi - v]], color="black", capsize=3, lw=1)
        ax.text(max(v, hi if hi is not None else v) + 0.01, yi, f"{100 * v:.1f}%", va="center", fontsize=8)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=9)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("accuracy against the human aggregate (95% CI)")
    ax.set_title("Agreement with humans")
    return _png(fig)


def plot_confusion(result: ValidationResult) -> str | None:
    conf = result.confusion
    if not conf.counts:
        return None
    plt = _plt()
    counts = np.array(conf.counts, dtype=float)
    fig, ax = plt.subplots(figsize=(1.1 * len(conf.columns) + 2, 0.9 * len(conf.rows) + 1.5))
    ax.imshow(counts, cmap="Blues")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(
                j,
                i,
                f"{int(counts[i, j])}",
                ha="center",
                va="center",
                color="white" if counts[i, j] > counts.max() / 2 else "black",
            )
    ax.set_xticks(range(len(conf.columns)), conf.columns)
    ax.set_yticks(range(len(conf.rows)), conf.rows)
    ax.set_xlabel("judge verdict")
    ax.set_ylabel("human aggregate")
    ax.set_title("Confusion matrix (all labelled items)")
    return _png(fig)


def plot_reliability(result: ValidationResult) -> str | None:
    cal = result.calibration
    bins = cal.reliability
    if not bins:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    total = sum(b.n for b in bins)
    ax.scatter(
        [b.confidence for b in bins],
        [b.accuracy for b in bins],
        s=[30 + 400 * b.n / total for b in bins],
        color=JUDGE,
        zorder=3,
        label="bins (size = items)",
    )
    ax.plot([b.confidence for b in bins], [b.accuracy for b in bins], color=JUDGE, lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("verdict probability")
    ax.set_ylabel("share correct")
    ax.set_title(f"Reliability (ECE {cal.ece:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def plot_bias(result: ValidationResult) -> str | None:
    b = result.bias
    if not b.measured:
        return None
    lc = result.length_control
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 5]})
    pos = [
        ("swap consistency", b.swap_consistency, JUDGE),
        ("first position chosen", b.first_position_rate, JUDGE),
    ]
    pos = [p for p in pos if p[1] is not None]
    left.bar([p[0] for p in pos], [p[1] for p in pos], color=[p[2] for p in pos], width=0.5)
    left.axhline(0.5, color="grey", ls="--", lw=1)
    left.set_ylim(0, 1.05)
    left.set_title("Position bias\n(dashed: 50% = no first-position preference)", fontsize=9)
    left.set_xticks(range(len(pos)), [p[0].replace(" ", "\n", 1) for p in pos], fontsize=8)
    for i, p in enumerate(pos):
        left.text(i, p[1] + 0.02, pct(p[1]), ha="center", fontsize=8)
    verb = [
        ("humans prefer\nlonger", b.human_longer_preferred_rate, HUMAN),
        ("judge prefers\nlonger", b.longer_preferred_rate, JUDGE),
        ("judge agrees with\npick-longer", b.agrees_with_longer_rule, JUDGE),
        ("accuracy where\nlonger preferred", lc.acc_longer_preferred if lc else None, REFERENCE),
        ("accuracy where\nshorter preferred", lc.acc_shorter_preferred if lc else None, REFERENCE),
    ]
    verb = [v for v in verb if v[1] is not None]
    right.bar(range(len(verb)), [v[1] for v in verb], color=[v[2] for v in verb], width=0.6)
    right.set_xticks(range(len(verb)), [v[0] for v in verb], fontsize=8)
    for i, v in enumerate(verb):
        right.text(i, v[1] + 0.02, pct(v[1]), ha="center", fontsize=8)
    right.set_ylim(0, 1.05)
    right.set_title("Verbosity bias and length control (length in characters)", fontsize=9)
    return _png(fig)


def plot_slices(result: ValidationResult) -> str | None:
    dims = {k: v for k, v in result.slices.items() if len(v) > 1}  # one value: nothing to compare
    if not dims:
        return None
    plt = _plt()
    heights = [max(2.0, 0.32 * len(v) + 1.0) for v in dims.values()]
    fig, axes = plt.subplots(len(dims), 1, figsize=(8, sum(heights)), gridspec_kw={"height_ratios": heights})
    axes = [axes] if len(dims) == 1 else list(axes)
    overall = _accuracy(result.metrics)
    for ax, (dim, rows) in zip(axes, dims.items()):
        names = list(rows)[::-1]
        accs = [rows[n].accuracy for n in names]
        vals = [a.value or 0 for a in accs]
        lo = [v - (a.ci_low if a.ci_low is not None else v) for a, v in zip(accs, vals)]
        hi = [(a.ci_high if a.ci_high is not None else v) - v for a, v in zip(accs, vals)]
        ax.barh(range(len(names)), vals, xerr=[lo, hi], color=JUDGE, height=0.6, capsize=2, error_kw={"lw": 0.8})
        ax.set_yticks(range(len(names)), [f"{n} (n={rows[n].n})" for n in names], fontsize=8)
        if overall is not None:
            ax.axvline(overall, color="black", ls="--", lw=1)
        for (ref_name, ref), marker in zip(result.reference_judges.items(), "Dsv^"):  # each reference, same slices
            ref_rows = ref.slices.get(dim, {})
            at = [(i, ref_rows[n].accuracy.value) for i, n in enumerate(names) if n in ref_rows]
            at = [(i, v) for i, v in at if v is not None]
            if at:
                ax.scatter(
                    [v for _, v in at],
                    [i for i, _ in at],
                    marker=marker,
                    facecolor="white",
                    edgecolor="black",
                    zorder=3,
                    s=28,
                    label=ref_name,
                )
        if ax.get_legend_handles_labels()[0]:  # a reference drew a marker
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xlim(0, 1)
        ax.set_title(f"accuracy by {dim} (dashed: overall)", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def plot_trend(trend: list[dict] | None) -> str | None:
    points = [t for t in trend or [] if t.get("value") is not None]
    if len(points) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = range(len(points))
    v = [p["value"] for p in points]
    lo = [p["value"] - (p["ci_low"] if p["ci_low"] is not None else p["value"]) for p in points]
    hi = [(p["ci_high"] if p["ci_high"] is not None else p["value"]) - p["value"] for p in points]
    ax.errorbar(x, v, yerr=[lo, hi], marker="o", color=JUDGE, capsize=3)
    ax.set_xticks(list(x), [f"{p['version']}\n({p['status']})" for p in points], fontsize=8)
    ax.set_ylabel(points[-1]["metric"])
    ax.set_title("Version trend (newest attached validation of each version)")
    return _png(fig)


def plots(result: ValidationResult, trend: list[dict] | None = None) -> list[dict]:
    """Every plot that has data: title, base64 PNG and a one-line caption."""
    specs = [
        (
            "Agreement with humans",
            plot_agreement(result),
            "Accuracy with 95% group-bootstrap intervals; the human ceiling, the incumbent, reference judges and "
            "trivial baselines on the same items.",
        ),
        ("Confusion matrix", plot_confusion(result), "Rows: human aggregate; columns: judge verdict."),
        (
            "Reliability diagram",
            plot_reliability(result),
            "Mean verdict probability against the share correct, per probability bin.",
        ),
        (
            "Position and verbosity bias",
            plot_bias(result),
            "Swap consistency and first-position rate; how often judge and humans prefer the longer response.",
        ),
        (
            "Per-slice accuracy",
            plot_slices(result),
            "Accuracy with 95% intervals per source, language and length bucket.",
        ),
        ("Version trend", plot_trend(trend), "This judge's earlier versions, from the registry."),
    ]
    return [{"title": t, "png": png, "caption": c} for t, png, c in specs if png]


# --- outputs --------------------------------------------------------------------------------------


def context(result: ValidationResult, trend: list[dict] | None = None) -> dict:
    metric_rows = [{"name": k, "text": interval_text(v)} for k, v in result.metrics.items()]
    refs = [
        {
            "name": name,
            "n": r.n,
            "accuracy": interval_text(r.metrics.get("accuracy")),
            "with_ties": interval_text(r.metrics.get("accuracy_with_ties")),
            "kappa": interval_text(r.metrics.get("cohen_kappa")),
            "diff": interval_text(r.judge_minus_reference.diff),
            "p": r.judge_minus_reference.mcnemar.p_value,
            "no_verdict": r.no_verdict,
        }
        for name, r in result.reference_judges.items()
    ]
    prov = result.provenance
    return {
        "r": result,
        "status": gate_status(result),
        "failed": failed_rules(result),
        "summary": summary(result),
        "metrics": metric_rows,
        "refs": refs,
        "gate": result.gate,
        "plots": plots(result, trend),
        "prov": prov,
        "inputs": result.inputs,
        "commands": prov.commands,
        "trend": trend or [],
        "pct": pct,
        "interval_text": interval_text,
    }


def _env() -> ImmutableSandboxedEnvironment:
    """The report templates' environment (eval/rendering.py): sandboxed, HTML autoescaped, Markdown
    values through ``md_escape``. workflows/monitor.py renders its templates with it too."""
    return environment(TEMPLATES)


def render_html(result: ValidationResult, trend: list[dict] | None = None) -> str:
    return _env().get_template("report.html.j2").render(**context(result, trend))


def render_markdown(result: ValidationResult, trend: list[dict] | None = None) -> str:
    ctx = context(result, trend)
    ctx["plots"] = []  # Markdown for a pull request carries no images
    return _env().get_template("report.md.j2").render(**ctx)


def write_report(result: ValidationResult, out_dir: str | Path, trend: list[dict] | None = None) -> dict[str, Path]:
    """Write report.html, report.md and validation.json into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "markdown": out / "report.md", "json": out / "validation.json"}
    paths["html"].write_text(render_html(result, trend), encoding="utf-8")
    paths["markdown"].write_text(render_markdown(result, trend), encoding="utf-8")
    paths["json"].write_text(result.to_json(), encoding="utf-8")
    return paths


# --- the criteria report (`judgeloop eval all`) -------------------------------------------------


def _criterion_text(row: dict) -> dict:
    """A criteria-summary row as display strings."""
    if row["status"] == "missing":
        return {**row, "judge_text": "not trained", "base_text": "n/a", "diff_text": "n/a", "ceiling_text": "n/a"}
    ceiling = row.get("ceiling")
    ceiling_text = (
        "n/a (one aggregate label per item)"
        if not ceiling
        else (
            f"humans {pct(ceiling['humans']['value'])}, judge {pct(ceiling['judge']['value'])}, "
            f"base {pct((ceiling.get('base') or {}).get('value'))} vs leave-one-out majority "
            f"({ceiling['annotators']} annotators max)"
        )
    )
    return {
        **row,
        "judge_text": interval_text(row["judge"]),
        "base_text": interval_text(row["base"]),
        "diff_text": interval_text(row.get("judge_minus_base")),
        "ceiling_text": ceiling_text,
    }


def criteria_lines(summary: dict) -> list[str]:
    """One line per criterion: its judge against its base and the human ceiling, and the gate."""
    out = []
    for r in map(_criterion_text, summary["rows"]):
        if r["status"] == "missing":
            out.append(f"{r['criterion']:<20} MISSING: no trained judge in {r['run_dir']}; run `{r['train_command']}`")
            continue
        failed = f" ({', '.join(r['failed_rules'])})" if r["failed_rules"] else ""
        out.append(
            f"{r['criterion']:<20} {r['metric']} judge {r['judge_text']} vs base {r['base_text']} on {r['n']} "
            f"items; ceiling: {r['ceiling_text']}; gate {r['gate']}{failed}"
        )
    return out


def plot_criteria(summary: dict) -> str | None:
    """Each criterion's judge beside its untuned base, on the criterion's gate metric, with intervals."""
    rows = [r for r in summary["rows"] if r["status"] != "missing"]
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.8 * len(rows) + 1.2))
    for i, r in enumerate(rows[::-1]):
        for offset, key, colour, label in ((0.18, "judge", JUDGE, "judge"), (-0.18, "base", BASELINE, "untuned base")):
            d = r.get(key) or {}
            v = d.get("value")
            if v is None:
                continue
            ax.barh(i + offset, v, height=0.34, color=colour, label=label if i == 0 else None)
            if d.get("ci_low") is not None:
                ax.errorbar(v, i + offset, xerr=[[v - d["ci_low"]], [d["ci_high"] - v]], color="black", capsize=2, lw=1)
    ax.set_yticks(range(len(rows)), [f"{r['criterion']} ({r['metric']})" for r in rows[::-1]], fontsize=9)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlim(
        min(0.0, *[(r.get(k) or {}).get("ci_low") or 0.0 for r in rows for k in ("judge", "base")]) - 0.05, 1.05
    )
    ax.set_xlabel("agreement with humans (the criterion's gate metric, 95% CI)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Criterion judges against their untuned base")
    return _png(fig)


def criteria_context(crit: dict) -> dict:
    rows = [_criterion_text(r) for r in crit["rows"]]
    sections = [
        r if r["status"] == "missing" else {**r, "summary": summary(r["result"]), "gate_rules": r["result"].gate.rules}
        for r in rows
    ]
    passed = sum(1 for r in rows if r.get("gate") == "PASS")
    missing = sum(1 for r in rows if r["status"] == "missing")
    return {
        "s": crit,
        "rows": rows,
        "sections": sections,
        "plot": plot_criteria(crit),
        "passed": passed,
        "missing": missing,
        "validated": len(rows) - missing,
        "pct": pct,
        "interval_text": interval_text,
    }


def write_criteria_report(crit: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write criteria.html, criteria.md and criteria.json (the rows, without the full results) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = criteria_context(crit)
    paths = {"html": out / "criteria.html", "markdown": out / "criteria.md", "json": out / "criteria.json"}
    paths["html"].write_text(_env().get_template("criteria.html.j2").render(**ctx), encoding="utf-8")
    paths["markdown"].write_text(
        _env().get_template("criteria.md.j2").render(**{**ctx, "plot": None}), encoding="utf-8"
    )
    slim = {**crit, "rows": [{k: v for k, v in r.items() if k not in ("result", "base_result")} for r in crit["rows"]]}
    paths["json"].write_text(json.dumps(slim, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    return paths
