"""The evaluation report: HTML, Markdown and JSON, from ``evaluation.json`` and the run history.

Leaderboard with intervals (corrected and judge-only side by side), a per-criterion scorecard, the
pairwise win-rate matrix and each system's trend across runs. Whether the figures are corrected is
said first. Templates render in the sandboxed Jinja2 environment of eval/rendering.py; HTML autoescapes
every value and the Markdown escapes each one (``md``), so text from the data cannot change the page.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from jinja2.sandbox import ImmutableSandboxedEnvironment

from eval.rendering import environment, md_escape
from workflows.evaluate.result import Evaluation

TEMPLATES = Path(__file__).parent / "templates"


def _plt():
    import matplotlib  # deferred: matplotlib takes seconds to import; only the report needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred, as above

    return plt


def _png(fig) -> str:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _fmt(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _iv(iv) -> str:
    if iv is None or iv.estimate is None:
        return "n/a"
    return f"{iv.estimate:.3f} [{_fmt(iv.lo)}, {_fmt(iv.hi)}]"


def leaderboard(c) -> list[dict]:
    """One row per system: the headline figure (mean/pass rate, win rate against the baseline, or the
    Bradley-Terry strength), judge-only and corrected, best first."""
    rows = []
    if c.systems:
        for s in c.systems:
            corr = s.correction
            rows.append(
                {
                    "system": s.system,
                    "judge": s.judge,
                    "corrected": corr.corrected if corr else None,
                    "human": corr.human if corr else None,
                    "n_labelled": corr.n_labelled if corr else 0,
                    "n_effective": corr.n_effective if corr else None,
                }
            )
    elif c.mode == "baseline":
        for w in c.win_rates:
            corr = w.correction
            rows.append(
                {
                    "system": f"{w.system} vs {w.opponent}",
                    "judge": w.judge,
                    "corrected": corr.corrected if corr else None,
                    "human": corr.human if corr else None,
                    "n_labelled": corr.n_labelled if corr else 0,
                    "n_effective": corr.n_effective if corr else None,
                }
            )
    else:
        rc = c.ranking_correction
        corrected = {r.system: r.strength for r in rc.corrected} if rc else {}
        human = {r.system: r.strength for r in rc.human} if rc else {}
        for r in c.ranking:
            rows.append(
                {
                    "system": r.system,
                    "judge": r.strength,
                    "corrected": corrected.get(r.system),
                    "human": human.get(r.system),
                    "n_labelled": rc.n_labelled if rc else 0,
                    "n_effective": rc.n_effective if rc else None,
                }
            )

    def key(r):
        best = r["corrected"] if r["corrected"] is not None else r["judge"]
        return -(best.estimate if best and best.estimate is not None else float("-inf"))

    return sorted(rows, key=key)


def win_matrix(c, systems: list[str]) -> list[list[str]]:
    cell = {}
    for w in c.win_rates:
        est = w.correction.corrected if (w.correction and w.correction.corrected) else w.judge
        if est.estimate is None:
            continue
        cell[(w.system, w.opponent)] = est.estimate
        cell[(w.opponent, w.system)] = 1 - est.estimate
    return [[("" if a == b else _fmt(cell.get((a, b)), 2)) for b in systems] for a in systems]


def plot_leaderboard(c, rows: list[dict]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows):
        for off, iv, colour, label in (
            (0.15, r["judge"], "#888888", "judge only"),
            (-0.15, r["corrected"], "#1f6fb2", "corrected (PPI++)"),
        ):
            if iv is None or iv.estimate is None or iv.lo is None:
                continue
            ax.errorbar(
                iv.estimate,
                y + off,
                xerr=[[iv.estimate - iv.lo], [iv.hi - iv.estimate]],
                fmt="o",
                color=colour,
                capsize=3,
                label=label if y == ys[0] else None,
            )
    ax.set_yticks(ys)
    ax.set_yticklabels([r["system"] for r in rows])
    ax.set_xlabel({"win_rate": "win rate (tie = half)", "pass_rate": "pass rate", "mean_score": "mean score"}[c.metric])
    if not c.systems and c.mode == "all_pairs":
        ax.set_xlabel("Bradley-Terry strength")
    ax.set_title(f"{c.criterion}: 95% intervals")
    ax.legend(loc="best", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def plot_matrix(c, systems: list[str]) -> str | None:

    m = np.full((len(systems), len(systems)), np.nan)
    for i, row in enumerate(win_matrix(c, systems)):
        for j, v in enumerate(row):
            if v not in ("", "n/a"):
                m[i, j] = float(v)
    if np.isnan(m).all():
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(systems), 0.8 + 0.5 * len(systems)))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="RdBu")
    ax.set_xticks(range(len(systems)))
    ax.set_xticklabels(systems, rotation=45, ha="right")
    ax.set_yticks(range(len(systems)))
    ax.set_yticklabels(systems)
    for i in range(len(systems)):
        for j in range(len(systems)):
            if not np.isnan(m[i, j]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title("row's win rate against column")
    fig.colorbar(im, ax=ax, fraction=0.04)
    return _png(fig)


def trend(history_rows, criterion: str, current: Evaluation) -> dict[str, list[tuple[str, float]]]:
    """system -> [(run id, headline figure)] over the recorded runs of this criterion, then this run."""
    out: dict[str, list[tuple[str, float]]] = {}
    evs = []
    for row in history_rows:
        try:
            evs.append(Evaluation.model_validate(row.evaluation))
        except ValueError:
            continue  # a run of another schema version: left out of the trend
    if not any(e.run_id == current.run_id for e in evs):
        evs.append(current)
    for ev in evs:
        for c in ev.criteria:
            if c.criterion != criterion:
                continue
            for r in leaderboard(c):
                best = r["corrected"] if r["corrected"] is not None else r["judge"]
                if best.estimate is not None:
                    out.setdefault(r["system"], []).append((ev.run_id, best.estimate))
    return out


def plot_trend(series: dict[str, list[tuple[str, float]]], criterion: str) -> str | None:
    if not series or max(len(v) for v in series.values()) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3))
    runs = sorted({r for v in series.values() for r, _ in v})
    for name, pts in series.items():
        ax.plot([runs.index(r) for r, _ in pts], [y for _, y in pts], marker="o", label=name)
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels([r[:15] for r in runs], rotation=30, ha="right", fontsize=7)
    ax.set_title(f"{criterion}: across runs")
    ax.legend(fontsize=7)
    return _png(fig)


def context(ev: Evaluation, history_rows=(), plots: bool = True) -> dict:
    crits = []
    for c in ev.criteria:
        rows = leaderboard(c)
        series = trend(history_rows, c.criterion, ev)
        crits.append(
            {
                "c": c,
                "rows": rows,
                "matrix": win_matrix(c, ev.dataset.systems) if c.win_rates else None,
                "trend": series,
                "plot_leaderboard": plot_leaderboard(c, rows) if plots and rows else None,
                "plot_matrix": plot_matrix(c, ev.dataset.systems) if plots and c.win_rates else None,
                "plot_trend": plot_trend(series, c.criterion) if plots else None,
            }
        )
    scorecard = []
    for s in ev.dataset.systems:
        cells = []
        for c in ev.criteria:
            found = None
            for r in leaderboard(c):
                if r["system"] == s or r["system"].startswith(f"{s} vs "):
                    found = r
                    break
            cells.append(found)
        scorecard.append({"system": s, "cells": cells})
    return {"ev": ev, "crits": crits, "scorecard": scorecard, "iv": _iv, "fmt": _fmt}


def _env() -> ImmutableSandboxedEnvironment:
    """The report environment shared with eval/report.py (eval/rendering.py); ``md`` is its ``md_escape``."""
    env = environment(TEMPLATES)
    env.filters["md"] = md_escape
    return env


def render_html(ev: Evaluation, history_rows=()) -> str:
    return _env().get_template("evaluation.html.j2").render(**context(ev, history_rows))


def render_markdown(ev: Evaluation, history_rows=()) -> str:
    return _env().get_template("evaluation.md.j2").render(**context(ev, history_rows, plots=False))


def write_report(ev: Evaluation, out_dir: str | Path, history_rows=()) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "evaluation.html", "md": out / "evaluation.md", "json": out / "evaluation.json"}
    paths["html"].write_text(render_html(ev, history_rows), encoding="utf-8")
    paths["md"].write_text(render_markdown(ev, history_rows), encoding="utf-8")
    paths["json"].write_text(json.dumps(ev.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    return paths
