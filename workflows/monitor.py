"""`judgeloop monitor`: a time window of live verdicts against the judge's validation baseline.

Figures: the verdict distribution's shift (population stability index and a chi-square test of
the live counts against the baseline shares), the confidence shift (two-sample
Kolmogorov-Smirnov), the swap-inconsistency rate, the error rate and latency percentiles; the
live agreement with human reviewers when reviewed items are given; with ``--compare`` the paired
agreement of a shadow candidate with production on the same requests. Thresholds come from
``MonitorConfig`` (configs/monitor/default.yaml); a crossed one is an alert: exit 1 with a
message (for cron and CI). The same figures go to ``monitor.prom`` (Prometheus text format, for
node_exporter's textfile collector) and to a Markdown + HTML page with plots over time.

The baseline is the validation verdicts: the file ``validation.json`` names in ``inputs``, else
``verdicts.jsonl`` beside it. Only production verdicts of the judge (spec name) are compared.

Verdicts computed in another engine/dtype than the validated one are not the validated verdicts
(bfloat16 flips near ties that float32 does not): the ``engine`` rule fails when the live window
(or the baseline verdicts file) names another engine than ``validation.json`` does, and the
drift figures, still computed, are marked as compared across engines. Rows logged before the
verdict log recorded engines count as unknown, not as another engine.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from data.config import load_config, option, to_dict
from data.errors import ConfigError, DataError, Problem
from data.jsonl import read_jsonl
from data.labels import LabelSpace
from data.paths import CONFIGS_DIR
from data.schema import Verdict
from eval.bootstrap import GroupBootstrap
from eval.gate import FAIL, PASS, SKIP, _rule, read_result
from eval.metrics import cohen_kappa
from eval.report import BASELINE, HUMAN, INCUMBENT, JUDGE, _env, _plt, _png, interval_text, pct
from eval.result import ValidationResult
from serve.config import LiveConfig
from serve.verdict_log import read_rows
from workflows.review import live_agreement, read_reviewed

DEFAULT_CONFIG = CONFIGS_DIR / "monitor" / "default.yaml"
PSI_FLOOR = 1e-4  # a share of 0 would make PSI infinite: both shares are floored at this
UNKNOWN_ENGINE = "unknown"  # rows logged before the verdict log recorded engines


@dataclass
class MonitorConfig:
    baseline: Optional[str] = option(None, help="the production judge's validation.json (required): the baseline")
    baseline_verdicts: Optional[str] = option(
        None,
        help="the validation verdicts JSONL (null: the file validation.json "
        "names in inputs.verdicts, else verdicts.jsonl beside it)",
    )
    log: Optional[str] = option(
        None,
        help="the verdict log: SQLAlchemy URL or SQLite file (null: `judgeloop serve`'s "
        "default, verdicts.sqlite in the judgeloop cache's logs/)",
    )
    judge: Optional[str] = option(None, help="judge (spec name) to monitor (null: the baseline's)")
    window_hours: float = option(24.0, help="the live window: this many hours up to `until`")
    until: Optional[str] = option(None, help="end of the window, ISO 8601 (e.g. 2026-11-29T12:00:00Z; null: now)")
    buckets: int = option(12, help="time buckets of the window in the plots over time")
    min_n: int = option(50, help="fewest live verdicts to judge drift on; with fewer the drift rules are SKIP")
    max_psi: Optional[float] = option(
        0.2,
        help="population stability index of the verdict distribution at most this "
        "(< 0.1 no shift, 0.1-0.25 moderate, > 0.25 large)",
    )
    min_chi2_p: Optional[float] = option(
        0.001,
        help="chi-square test of the live verdict counts against the baseline "
        "shares: alert when its p-value is below this",
    )
    max_ks: Optional[float] = option(
        0.2, help="Kolmogorov-Smirnov distance between live and baseline confidences at most this"
    )
    max_inconsistency_increase: Optional[float] = option(
        0.1, help="pairwise: live swap-inconsistency rate minus the baseline's at most this"
    )
    max_error_rate: Optional[float] = option(0.01, help="share of live verdicts that are errors at most this")
    max_latency_p95_ms: Optional[float] = option(
        None, help="95th percentile of per-item latency (ms) at most this (null: off)"
    )
    reviews: list[str] = option(
        [], help="reviewed items (`judgeloop review import`): the live agreement with reviewers"
    )
    out: str = option("runs/monitor", help="output directory: monitor.md, monitor.html, monitor.json, monitor.prom")

    def validate(self) -> list[Problem]:
        problems = []
        if not self.baseline:
            problems.append(
                Problem(
                    "is required: the production judge's validation.json",
                    field="baseline",
                    hint="--baseline=runs/eval/validation.json",
                )
            )
        elif not Path(self.baseline).is_file():
            problems.append(Problem(f"file '{self.baseline}' not found", field="baseline"))
        if not 0 < self.window_hours < math.inf:
            problems.append(
                Problem(f"must be a positive, finite number of hours, got {self.window_hours}", field="window_hours")
            )
        if self.buckets < 1 or self.min_n < 1:
            problems.append(Problem("must be at least 1", field="buckets" if self.buckets < 1 else "min_n"))
        for name in ("min_chi2_p", "max_ks", "max_error_rate"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                problems.append(Problem(f"must be between 0 and 1, got {value}", field=name))
        for name in ("max_psi", "max_inconsistency_increase", "max_latency_p95_ms"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(Problem(f"must be >= 0, got {value}", field=name))
        if self.until is not None:
            try:
                parse_time(self.until)
            except ValueError:
                problems.append(Problem(f"'{self.until}' is not an ISO 8601 time", field="until"))
        for path in self.reviews:
            if not Path(path).is_file():
                problems.append(Problem(f"file '{path}' not found", field="reviews"))
        return problems


def load_monitor_config(path: str | Path | None, overrides: list[str] | None = None) -> MonitorConfig:
    return load_config(MonitorConfig, path or DEFAULT_CONFIG, overrides)


def parse_time(text: str) -> float:
    """Unix time of an ISO 8601 string (UTC when it names no zone)."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the statistics -----------------------------------------------------------------------------


def shares(counts: dict[str, int], labels: Sequence[str]) -> np.ndarray:
    c = np.array([counts.get(lab, 0) for lab in labels], dtype=float)
    return c / c.sum() if c.sum() else c


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index sum((a - e) ln(a / e)) over the labels, shares floored at PSI_FLOOR."""
    e, a = np.maximum(expected, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def chi_square(expected_shares: np.ndarray, live_counts: np.ndarray) -> dict:
    """Goodness of fit of the live counts to the baseline shares (labels the baseline never gave get the
    floor share)."""
    from scipy.stats import chisquare  # deferred: SciPy takes seconds to import; only this path needs it

    exp = np.maximum(expected_shares, PSI_FLOOR)
    keep = (exp > PSI_FLOOR) | (live_counts > 0)
    if keep.sum() < 2 or live_counts.sum() == 0:
        return {"statistic": None, "p_value": None, "dof": 0}
    exp = exp[keep] / exp[keep].sum() * live_counts[keep].sum()
    res = chisquare(live_counts[keep], f_exp=exp)
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue), "dof": int(keep.sum() - 1)}


def ks(baseline: Sequence[float], live: Sequence[float]) -> dict:
    from scipy.stats import ks_2samp  # deferred: SciPy takes seconds to import; only this path needs it

    if not len(baseline) or not len(live):
        return {"statistic": None, "p_value": None}
    res = ks_2samp(np.asarray(baseline, dtype=float), np.asarray(live, dtype=float))
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue)}


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def window_figures(rows: list[dict], labels: Sequence[str]) -> dict:
    """Counts, shares, confidences, inconsistency, errors and latency of logged verdict rows."""
    ok = [r for r in rows if r["error"] is None and r["verdict"] is not None]
    counts = {lab: sum(r["verdict"] == lab for r in ok) for lab in labels}
    both = [r for r in ok if r["consistent"] is not None]
    latency = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
    return {
        "n": len(rows),
        "n_verdicts": len(ok),
        "counts": counts,
        "shares": dict(zip(labels, shares(counts, labels).round(6).tolist())),
        "confidences": [r["confidence"] for r in ok if r["confidence"] is not None],
        "n_both_orders": len(both),
        "swap_inconsistency": (sum(not r["consistent"] for r in both) / len(both)) if both else None,
        "error_rate": (len(rows) - len(ok)) / len(rows) if rows else None,
        "latency_ms": {"p50": _pct(latency, 50), "p95": _pct(latency, 95), "p99": _pct(latency, 99)},
    }


def baseline_rows(verdicts: Sequence[Verdict]) -> list[dict]:
    """Validation verdicts in the verdict log's row shape, so one function computes both sides' figures."""
    return [
        {
            "verdict": None if v.verdict is None else str(v.verdict),
            "error": v.error,
            "confidence": v.confidence,
            "consistent": v.consistent,
            "latency_ms": v.latency_ms,
        }
        for v in verdicts
    ]


def baseline_verdicts_path(cfg: MonitorConfig, result: ValidationResult) -> Path:
    if cfg.baseline_verdicts:
        return Path(cfg.baseline_verdicts)
    named = result.inputs["verdicts"].path if "verdicts" in result.inputs else None
    beside = Path(cfg.baseline).parent / "verdicts.jsonl"
    for candidate in ([Path(named)] if named else []) + [beside]:
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "cannot find the baseline's verdicts",
        path=cfg.baseline,
        field="baseline_verdicts",
        hint=f"validation.json names none that exists and there is no {beside}; pass --baseline_verdicts=FILE",
    )


# --- the engine ---------------------------------------------------------------------------------


def engine_counts(engines: Sequence[str | None]) -> dict[str, int]:
    """Verdicts per engine/dtype; one that names none counts as unknown."""
    return dict(sorted(Counter(e or UNKNOWN_ENGINE for e in engines).items()))


def engine_check(validated: str | None, baseline: dict[str, int], live: dict[str, int], base_path: Path) -> dict:
    """Whether the live verdicts (and the baseline verdicts) come from the engine/dtype the baseline was
    validated on: ``validated`` (validation.json's judge.engine), else what the baseline verdicts name."""
    known_base = sorted(e for e in baseline if e != UNKNOWN_ENGINE)
    validated_on = [validated] if validated else known_base
    problems = []
    if validated and any(e != validated for e in known_base):
        others = ", ".join(e for e in known_base if e != validated)
        problems.append(
            f"the baseline verdicts ({base_path}) were scored by {others}, the baseline was validated on "
            f"{validated}: not the validated verdicts"
        )
    known = {e: n for e, n in live.items() if e != UNKNOWN_ENGINE}
    other = {e: n for e, n in known.items() if e not in validated_on}
    if validated_on and other:
        whole = sum(other.values()) == sum(live.values())
        scored_by = ", ".join(e if whole else f"{e} ({n} of {sum(live.values())})" for e, n in other.items())
        problems.append(
            f"live verdicts were scored by {scored_by}, the baseline was validated on {', '.join(validated_on)}: "
            "not the validated verdicts"
        )
    unknown = live.get(UNKNOWN_ENGINE, 0)
    notes = problems + (
        [f"{unknown} of {sum(live.values())} live verdicts name no engine (logged before the log recorded it)"]
        if unknown
        else []
    )
    figure = sum(other.values()) / sum(known.values()) if known and validated_on else None
    if problems:
        status = FAIL
    elif figure is None:
        status = SKIP
        if not live:
            notes.append("no live verdicts")
        elif not validated_on:
            notes.append("the baseline names no engine (validated before verdicts recorded it)")
    else:
        status = PASS
    rule = {
        "name": "engine",
        "rule": "share of live verdicts (of known engine) scored in another engine/dtype than validated",
        "figure": None if figure is None else round(figure, 6),
        "threshold": 0,
        "op": "<=",
        "status": status,
        "pass": status != FAIL,
        "note": "; ".join(notes),
    }
    return {
        "validated": ", ".join(validated_on) or None,
        "baseline": baseline,
        "live": live,
        "mismatch": bool(problems),
        "message": "; ".join(problems) or None,
        "rule": rule,
    }


# --- the comparison -----------------------------------------------------------------------------


def drift_rules(cfg: MonitorConfig, live: dict, base: dict, stats: dict, across_engines: bool = False) -> list[dict]:
    """The drift rules; ``across_engines`` (the engine rule failed) marks the figures that compare with the
    baseline: they measure the engine change too."""
    enough = live["n_verdicts"] >= cfg.min_n
    few = f"only {live['n_verdicts']} live verdicts (min_n {cfg.min_n})"

    def drift(name, text, figure, threshold, op, note=""):
        if not enough:
            return _rule(name, text, None, threshold, op, missing=SKIP, note=few)
        if across_engines:
            note = "; ".join(filter(None, ["across engines: see the engine rule", note]))
        return _rule(name, text, figure, threshold, op, missing=SKIP, note=note)

    inc_limit = None
    if cfg.max_inconsistency_increase is not None and base["swap_inconsistency"] is not None:
        inc_limit = base["swap_inconsistency"] + cfg.max_inconsistency_increase
    return [
        drift("psi", "population stability index of the verdict distribution", stats["psi"], cfg.max_psi, "<="),
        drift(
            "chi2_p",
            "p-value of the chi-square test of live verdict counts against the baseline shares",
            stats["chi2"]["p_value"],
            cfg.min_chi2_p,
            ">=",
            note=f"chi2 {stats['chi2']['statistic']:.4g}, dof {stats['chi2']['dof']}"
            if stats["chi2"]["statistic"] is not None
            else "",
        ),
        drift(
            "ks",
            "Kolmogorov-Smirnov distance of the confidences",
            stats["ks"]["statistic"],
            cfg.max_ks,
            "<=",
            note=f"p = {stats['ks']['p_value']:.3g}" if stats["ks"]["p_value"] is not None else "",
        ),
        drift(
            "swap_inconsistency",
            "live swap-inconsistency rate (baseline + allowed increase)",
            live["swap_inconsistency"],
            inc_limit,
            "<=",
            note="" if base["swap_inconsistency"] is None else f"baseline {base['swap_inconsistency']:.3f}",
        ),
        _rule(
            "error_rate",
            "share of live verdicts that are errors",
            live["error_rate"],
            cfg.max_error_rate,
            "<=",
            missing=SKIP,
            note="" if live["n"] else "no live verdicts",
        ),
        _rule(
            "latency_p95_ms",
            "95th percentile of per-item latency (ms)",
            live["latency_ms"]["p95"],
            cfg.max_latency_p95_ms,
            "<=",
            missing=SKIP,
            note="" if live["n"] else "no live verdicts",
        ),
    ]


def timeline(
    rows: list[dict], labels: Sequence[str], base_shares: np.ndarray, since: float, until: float, buckets: int
) -> list[dict]:
    """The window in equal time buckets: figures per bucket (empty buckets have n = 0)."""
    width = (until - since) / buckets
    out = []
    for b in range(buckets):
        lo, hi = since + b * width, since + (b + 1) * width
        part = [r for r in rows if lo <= r["ts"] < hi]
        f = window_figures(part, labels)
        out.append(
            {
                "start": iso(lo),
                "end": iso(hi),
                "n": f["n"],
                "shares": f["shares"],
                "mean_confidence": float(np.mean(f["confidences"])) if f["confidences"] else None,
                "swap_inconsistency": f["swap_inconsistency"],
                "error_rate": f["error_rate"],
                "latency_p50_ms": f["latency_ms"]["p50"],
                "latency_p95_ms": f["latency_ms"]["p95"],
                "psi": psi(base_shares, shares(f["counts"], labels)) if f["n_verdicts"] else None,
            }
        )
    return out


def shadow_comparison(rows: list[dict], candidate: str, labels: Sequence[str], n_boot: int = 1000) -> dict:
    """Paired agreement of a shadow candidate's verdicts with production's on the same requests (by pair_id)."""

    production = {r["pair_id"]: r for r in rows if r["role"] == "production" and r["pair_id"]}
    shadow = [
        r
        for r in rows
        if r["role"] == "shadow" and (r["judge_key"] == candidate or r["fingerprint"].startswith(candidate))
    ]
    if not shadow:
        keys = sorted({r["judge_key"] for r in rows if r["role"] == "shadow"})
        raise DataError(
            f"no shadow verdicts of '{candidate}' in the window",
            field="--compare",
            hint=f"shadow candidates logged: {', '.join(keys)}"
            if keys
            else "serve the candidate with `candidates: [DIR]` and live.shadow on",
        )
    pairs = [(production[s["pair_id"]], s) for s in shadow if s["pair_id"] in production]
    pairs = [(p, s) for p, s in pairs if p["verdict"] is not None and s["verdict"] is not None]
    production_engines = engine_counts([p["engine"] for p, _ in pairs])
    candidate_engines = engine_counts([s["engine"] for _, s in pairs])
    known_production, known_candidate = (
        set(production_engines) - {UNKNOWN_ENGINE},
        set(candidate_engines) - {UNKNOWN_ENGINE},
    )
    out = {
        "candidate": candidate,
        "candidate_fingerprint": shadow[0]["fingerprint"],
        "n_shadow": len(shadow),
        "n_pairs": len(pairs),
        "production_engines": production_engines,
        "candidate_engines": candidate_engines,
        "engines_differ": bool(known_production and known_candidate and known_production != known_candidate),
        "agreement": None,
        "cohen_kappa": None,
        "confusion": None,
        "candidate_shares": None,
        "production_shares": None,
    }
    if not pairs:
        return out
    prod_v, cand_v = [p["verdict"] for p, _ in pairs], [s["verdict"] for _, s in pairs]
    agree = np.array([a == b for a, b in zip(prod_v, cand_v)], dtype=float)
    out["agreement"] = GroupBootstrap([p["item_hash"] for p, _ in pairs], n_boot, 0).mean(agree).as_dict()
    kappa = cohen_kappa(prod_v, cand_v)
    out["cohen_kappa"] = None if math.isnan(kappa) else round(kappa, 6)
    out["confusion"] = {
        "rows": list(labels),
        "columns": list(labels),
        "axes": "rows: production, columns: candidate",
        "counts": [[sum(1 for a, b in zip(prod_v, cand_v) if a == r and b == c) for c in labels] for r in labels],
    }
    count = lambda vs: {lab: sum(v == lab for v in vs) for lab in labels}  # noqa: E731
    out["production_shares"] = dict(zip(labels, shares(count(prod_v), labels).round(6).tolist()))
    out["candidate_shares"] = dict(zip(labels, shares(count(cand_v), labels).round(6).tolist()))
    return out


def monitor(cfg: MonitorConfig, compare: str | None = None, now: float | None = None) -> dict:
    """Every figure, rule and series of the monitoring page for the configured window."""

    result = read_result(cfg.baseline)
    judge = cfg.judge or result.judge.name
    labels = [str(x) for x in result.spec.labels]
    if not judge or not labels:
        raise DataError("the baseline names no judge or labels", path=cfg.baseline, field="judge")
    base_path = baseline_verdicts_path(cfg, result)
    base_verdicts = list(read_jsonl(base_path, Verdict))
    base = window_figures(baseline_rows(base_verdicts), labels)
    until = parse_time(cfg.until) if cfg.until else (now or time.time())
    since = until - cfg.window_hours * 3600
    log = cfg.log or _default_log()
    rows = read_rows(log, since=since, until=until, judge=judge)
    production = [r for r in rows if r["role"] == "production"]
    live = window_figures(production, labels)
    base_shares = shares(base["counts"], labels)
    live_shares = shares(live["counts"], labels)
    stats = {
        "psi": psi(base_shares, live_shares) if live["n_verdicts"] else None,
        "chi2": chi_square(base_shares, np.array([live["counts"][lab] for lab in labels], dtype=float)),
        "ks": ks(base["confidences"], live["confidences"]),
    }
    engine = engine_check(
        result.judge.engine,
        engine_counts([v.judge.engine for v in base_verdicts]),
        engine_counts([r["engine"] for r in production]),
        base_path,
    )
    stats["across_engines"] = engine["mismatch"]  # the drift figures measure the engine change too
    rules = [engine["rule"], *drift_rules(cfg, live, base, stats, engine["mismatch"])]
    fingerprints = sorted({r["fingerprint"] for r in production})
    base_fp = result.judge.fingerprint
    notes = []
    if fingerprints and fingerprints != [base_fp]:
        notes.append(
            f"live verdicts come from fingerprint(s) {', '.join(f[:16] for f in fingerprints)}, "
            f"the baseline from {str(base_fp)[:16]}: the baseline is not the judge serving"
        )
    out = {
        "schema_version": 1,
        "created": iso(time.time()),
        "judge": judge,
        "baseline_fingerprint": base_fp,
        "live_fingerprints": fingerprints,
        "engine": {k: v for k, v in engine.items() if k != "rule"},
        "window": {"since": iso(since), "until": iso(until), "hours": cfg.window_hours},
        "log": str(log),
        "baseline": {
            "validation": cfg.baseline,
            "verdicts": str(base_path),
            **{k: v for k, v in base.items() if k != "confidences"},
        },
        "live": {k: v for k, v in live.items() if k != "confidences"},
        "drift": stats,
        "rules": rules,
        "alert": any(r["status"] == FAIL for r in rules),
        "notes": notes,
        "timeline": timeline(production, labels, base_shares, since, until, cfg.buckets),
        "config": to_dict(cfg),
        "review": None,
        "compare": None,
    }
    if cfg.reviews:
        items = [it for path in cfg.reviews for it in read_reviewed(path)]
        out["review"] = live_agreement(items, LabelSpace(result.spec.kind, labels))
    if compare:
        c = out["compare"] = shadow_comparison(rows, compare, labels)
        if c["engines_differ"]:
            notes.append(
                f"shadow {compare} verdicts were scored by {', '.join(c['candidate_engines'])}, production's by "
                f"{', '.join(c['production_engines'])}: the agreement measures the engine change too"
            )
    return out


def _default_log() -> str:

    return LiveConfig().url(None)


# --- outputs ------------------------------------------------------------------------------------


def prometheus_text(m: dict) -> str:
    """The monitor's figures in Prometheus text format."""

    reg = CollectorRegistry()
    judge = m["judge"]

    def gauge(name, doc, value, **labels):
        if value is None:
            return
        g = gauge.made.get(name) or Gauge(name, doc, ["judge", *labels], registry=reg)
        gauge.made[name] = g
        g.labels(judge, *labels.values()).set(value)

    gauge.made = {}

    live = m["live"]
    gauge("judgeloop_monitor_verdicts", "live verdicts in the window", live["n"])
    for engine, n in m["engine"]["live"].items():
        gauge("judgeloop_monitor_verdicts_by_engine", "live verdicts in the window per engine/dtype", n, engine=engine)
    for lab, share in live["shares"].items():
        gauge("judgeloop_monitor_verdict_share", "share of each label among live verdicts", share, label=lab)
    gauge("judgeloop_monitor_psi", "population stability index of the verdict distribution", m["drift"]["psi"])
    gauge(
        "judgeloop_monitor_chi2_p",
        "chi-square p-value of live verdict counts vs the baseline",
        m["drift"]["chi2"]["p_value"],
    )
    gauge("judgeloop_monitor_ks", "Kolmogorov-Smirnov distance of the confidences", m["drift"]["ks"]["statistic"])
    gauge("judgeloop_monitor_swap_inconsistency", "live swap-inconsistency rate", live["swap_inconsistency"])
    gauge("judgeloop_monitor_error_rate", "share of live verdicts that are errors", live["error_rate"])
    for q, value in live["latency_ms"].items():
        gauge("judgeloop_monitor_latency_ms", "per-item latency percentiles (ms)", value, quantile=q)
    for r in m["rules"]:
        gauge(
            "judgeloop_monitor_alert",
            "1 when the rule's threshold is crossed",
            float(r["status"] == FAIL),
            rule=r["name"],
        )
    if m.get("review") and m["review"].get("agreement"):
        gauge(
            "judgeloop_monitor_live_agreement",
            "judge vs reviewers, weighted estimate over the window",
            m["review"]["agreement"]["value"],
        )
    if m.get("compare") and m["compare"].get("agreement"):
        gauge(
            "judgeloop_monitor_shadow_agreement",
            "paired agreement of a shadow candidate with production",
            m["compare"]["agreement"]["value"],
            candidate=m["compare"]["candidate"],
        )
    return generate_latest(reg).decode()


def rule_lines(rules: list[dict]) -> list[str]:
    out = []
    for r in rules:
        fig = "n/a" if r["figure"] is None else f"{r['figure']:.4g}"
        thr = "off" if r["threshold"] is None else f"{r['op']} {r['threshold']:.4g}"
        out.append(
            f"{r['status']:<4}  {r['name']:<19} {fig:>9}  {thr:<12} {r['rule']}"
            + (f"  ({r['note']})" if r["note"] else "")
        )
    return out


def plots(m: dict) -> list[dict]:

    plt = _plt()
    series = m["timeline"]
    labels = list(m["live"]["shares"])
    x = list(range(len(series)))
    ticks = [s["start"][5:16].replace("T", "\n") for s in series]
    step = max(1, len(series) // 8)
    out = []

    fig, ax = plt.subplots(figsize=(8, 3.4))
    colours = [JUDGE, INCUMBENT, HUMAN, BASELINE, "#805ad5"]
    for i, lab in enumerate(labels):
        ys = [s["shares"][lab] if s["n"] else np.nan for s in series]
        ax.plot(x, ys, marker="o", ms=3, color=colours[i % len(colours)], label=f"{lab} (live)")
        ax.axhline(m["baseline"]["shares"][lab], color=colours[i % len(colours)], ls="--", lw=1)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(x[::step], ticks[::step], fontsize=7)
    ax.set_ylabel("share of verdicts")
    ax.set_title("Verdict distribution over time (dashed: validation baseline)")
    ax.legend(fontsize=7, loc="upper right")
    out.append(
        {
            "title": "Verdict distribution",
            "png": _png(fig),
            "caption": "Share of each label per time bucket; dashed lines are the validation shares.",
        }
    )

    fig, ax = plt.subplots(figsize=(8, 3.2))
    for key, name, colour in (
        ("mean_confidence", "mean confidence", JUDGE),
        ("swap_inconsistency", "swap inconsistency", INCUMBENT),
        ("error_rate", "error rate", "#c53030"),
        ("psi", "PSI vs baseline", HUMAN),
    ):
        ys = [np.nan if s[key] is None else s[key] for s in series]
        ax.plot(x, ys, marker="o", ms=3, color=colour, label=name)
    ax.set_xticks(x[::step], ticks[::step], fontsize=7)
    ax.set_title("Confidence, consistency, errors and drift over time")
    ax.legend(fontsize=7)
    out.append(
        {
            "title": "Quality over time",
            "png": _png(fig),
            "caption": (
                "Per time bucket: mean verdict probability, swap-inconsistency rate, error rate, "
                "PSI against the baseline."
            ),
        }
    )

    fig, ax = plt.subplots(figsize=(8, 3.0))
    for key, colour in (("latency_p50_ms", JUDGE), ("latency_p95_ms", INCUMBENT)):
        ax.plot(
            x,
            [np.nan if s[key] is None else s[key] for s in series],
            marker="o",
            ms=3,
            color=colour,
            label=key.replace("latency_", "").replace("_ms", ""),
        )
    ax.set_xticks(x[::step], ticks[::step], fontsize=7)
    ax.set_ylabel("ms per item")
    ax.set_title("Latency over time")
    ax.legend(fontsize=7)
    out.append({"title": "Latency", "png": _png(fig), "caption": "Per-item latency percentiles per time bucket."})
    return out


def write_outputs(m: dict, out_dir: str | Path) -> dict[str, Path]:

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "monitor.json",
        "prometheus": out / "monitor.prom",
        "markdown": out / "monitor.md",
        "html": out / "monitor.html",
    }
    paths["json"].write_text(json.dumps(m, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    paths["prometheus"].write_text(prometheus_text(m), encoding="utf-8")
    ctx = {
        "m": m,
        "rules": rule_lines(m["rules"]),
        "pct": pct,
        "interval_text": interval_text,
        "status": "ALERT" if m["alert"] else "OK",
    }
    paths["markdown"].write_text(_env().get_template("monitor.md.j2").render(**ctx, plots=[]), encoding="utf-8")
    paths["html"].write_text(_env().get_template("monitor.html.j2").render(**ctx, plots=plots(m)), encoding="utf-8")
    return paths


# --- the command --------------------------------------------------------------------------------


def cmd_monitor(args) -> int:
    """`judgeloop monitor` (its flags: workflows/cli.py)."""
    cfg = load_monitor_config(args.config, args.overrides)
    m = monitor(cfg, compare=args.compare)
    paths = write_outputs(m, cfg.out)
    live = m["live"]
    print(f"{m['judge']}: {live['n']} live verdicts {m['window']['since']} .. {m['window']['until']}")
    for line in rule_lines(m["rules"]):
        print(line)
    for note in m["notes"]:
        print(f"note: {note}")
    if m["review"]:
        r = m["review"]
        print(
            f"live agreement with reviewers: {interval_text(r.get('agreement'))} "
            f"({r['n_reviewed']} reviewed items; {r['estimator']})"
        )
    if m["compare"]:
        c = m["compare"]
        print(
            f"shadow {c['candidate']} vs production: agreement {interval_text(c['agreement'])} on "
            f"{c['n_pairs']} paired requests, Cohen's kappa {c['cohen_kappa']}"
        )
    print(f"wrote {paths['html']}, {paths['markdown']}, {paths['json']} and {paths['prometheus']}")
    if m["alert"]:
        crossed = [
            f"{r['name']}: {m['engine']['message']}"
            if r["name"] == "engine"
            else f"{r['name']} {r['figure']:.4g} (threshold {r['op']} {r['threshold']:.4g})"
            for r in m["rules"]
            if r["status"] == FAIL
        ]
        print(f"judgeloop monitor: ALERT for {m['judge']}: " + "; ".join(crossed), file=sys.stderr)
        return 1
    return 0
