"""The promotion gate: rules over a validation result, each with its figure, threshold and verdict.

A rule whose threshold is null is off. A rule whose figure does not exist because the data or
setting has no such thing (one annotator: no human ceiling; no incumbent; not pairwise: no
swap consistency) is SKIP and does not block. A rule whose figure is missing for a judge that
should have one (no probabilities for ECE, one scoring order for swap consistency) FAILS: an
unmeasured property is not a passed one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from data.config import load_config, option, to_dict
from data.errors import ConfigError, DataError, Problem
from data.provenance import sha256_json

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


@dataclass
class GateConfig:
    metric: str = option(
        "accuracy",
        help="agreement metric the rules read from the result's 'metrics' "
        "(pairwise 'accuracy' is over items humans did not call a tie)",
    )
    min_n: Optional[int] = option(200, help="fewest items the agreement metric must be computed on")
    min_margin_over_baseline: Optional[float] = option(
        0.05,
        help="agreement minus the best trivial baseline (always-first, always-second, majority class, "
        "pick-longer) must be at least this",
    )
    min_ci_low: Optional[float] = option(
        0.65, help="the lower end of the agreement's 95% bootstrap interval must be at least this"
    )
    min_ceiling_fraction: Optional[float] = option(
        0.8,
        help="the judge's agreement with leave-one-out human majorities, as a fraction of the annotators' own "
        "(skipped when the data has one annotator)",
    )
    max_incumbent_drop: Optional[float] = option(
        0.02,
        help="the lower end of the paired 95% interval of (candidate - incumbent) agreement must be at least "
        "minus this (skipped when there is no incumbent)",
    )
    min_swap_consistency: Optional[float] = option(
        0.8,
        help="pairwise: share of items whose two single-order verdicts agree (fails when only one order was scored)",
    )
    min_beyond_length: Optional[float] = option(
        0.005,
        help="pairwise: the lower end of the 95% interval of what the judge's odds add to the length ratio in "
        "predicting the human choice (drop in log loss, nats per item; length_control.beyond_length) must "
        "be at least this, so a length detector fails even where length agrees with people (skipped "
        "without the judge's probabilities)",
    )
    max_ece: Optional[float] = option(
        0.1,
        help="expected calibration error of the verdict probability at most this "
        "(fails when verdicts carry no probabilities)",
    )
    max_errors: Optional[int] = option(0, help="items without a usable verdict (errors, unparseable) at most this")

    def validate(self) -> list[Problem]:
        problems = []
        for name in ("min_ci_low", "min_ceiling_fraction", "min_swap_consistency", "max_ece"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                problems.append(Problem(f"must be between 0 and 1, got {value}", field=name))
        for name in ("min_n", "max_errors", "max_incumbent_drop"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(Problem(f"must be >= 0, got {value}", field=name))
        return problems


def load_gates(path: str | Path | None, overrides: list[str] | None = None) -> GateConfig:
    return load_config(GateConfig, path, overrides)


def _rule(name: str, text: str, figure, threshold, op: str, missing: str | None = None, note: str = "") -> dict:
    """One rule's outcome; ``missing`` is the status when the figure is None (SKIP or FAIL)."""
    if threshold is None:
        return {
            "name": name,
            "rule": text,
            "figure": figure,
            "threshold": None,
            "op": op,
            "status": SKIP,
            "pass": True,
            "note": "rule off (threshold is null)",
        }
    if figure is None:
        status = missing or FAIL
        return {
            "name": name,
            "rule": text,
            "figure": None,
            "threshold": threshold,
            "op": op,
            "status": status,
            "pass": status != FAIL,
            "note": note,
        }
    ok = figure >= threshold if op == ">=" else figure <= threshold
    return {
        "name": name,
        "rule": text,
        "figure": round(float(figure), 6),
        "threshold": threshold,
        "op": op,
        "status": PASS if ok else FAIL,
        "pass": bool(ok),
        "note": note,
    }


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _get(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def check(result: dict, cfg: GateConfig, *, config_path: str | None = None) -> dict:
    """Apply the gate to a validation result; returns the gate record (rules, passed, fingerprint)."""
    metrics = result.get("metrics") or {}
    if cfg.metric not in metrics:
        raise ConfigError(
            f"the validation result has no metric '{cfg.metric}'",
            path=config_path,
            field="metric",
            hint=f"it has: {', '.join(metrics) or 'none'}",
        )
    value = _get(metrics, cfg.metric, "value")
    ci_low = _get(metrics, cfg.metric, "ci_low")
    kind = _get(result, "spec", "kind")
    baselines = {k: v for k, v in (result.get("baselines") or {}).items() if v is not None}
    best = max(baselines, key=baselines.get) if baselines else None
    ceiling = result.get("human_ceiling")
    comparison = result.get("comparison")
    errors = _get(result, "errors", "no_verdict")
    beyond = _get(result, "length_control", "beyond_length")
    rules = [
        _rule("min_n", f"{cfg.metric} is computed on at least this many items", result.get("n"), cfg.min_n, ">="),
        _rule(
            "margin_over_baseline",
            f"{cfg.metric} minus the best trivial baseline ({best})",
            None if value is None or best is None else value - baselines[best],
            cfg.min_margin_over_baseline,
            ">=",
            note=f"{best} = {baselines[best]:.3f}" if best else "no baseline",
        ),
        _rule("ci_low", f"lower end of the 95% interval of {cfg.metric}", ci_low, cfg.min_ci_low, ">="),
        _rule(
            "human_ceiling",
            "judge / human agreement with leave-one-out majorities",
            _get(ceiling, "judge_to_ceiling"),
            cfg.min_ceiling_fraction,
            ">=",
            missing=SKIP if ceiling is None else FAIL,
            note="one annotator per item: no human ceiling"
            if ceiling is None
            else f"judge {_fmt(_get(ceiling, 'judge', 'accuracy', 'value'))} "
            f"vs humans {_fmt(_get(ceiling, 'metrics', 'accuracy', 'value'))}",
        ),
        _rule(
            "incumbent",
            "lower end of the paired 95% interval of (candidate - incumbent)",
            _get(comparison, "diff", "ci_low"),
            None if cfg.max_incumbent_drop is None else -cfg.max_incumbent_drop,
            ">=",
            missing=SKIP if comparison is None else FAIL,
            note="no incumbent"
            if comparison is None
            else f"difference {_fmt(_get(comparison, 'diff', 'value'))}, "
            f"McNemar p = {_fmt(_get(comparison, 'mcnemar', 'p_value'))}",
        ),
        _rule(
            "swap_consistency",
            "share of items with the same winner in both orders",
            _get(result, "bias", "swap_consistency"),
            cfg.min_swap_consistency,
            ">=",
            missing=SKIP if kind != "pairwise" else FAIL,
            note="not pairwise"
            if kind != "pairwise"
            else ""
            if _get(result, "bias", "swap_consistency") is not None
            else "the judge was not scored in both orders",
        ),
        _rule(
            "beyond_length",
            "lower end of the 95% interval of the log-loss drop from adding the judge's odds to the length ratio",
            _get(beyond, "gain", "ci_low"),
            cfg.min_beyond_length,
            ">=",
            missing=SKIP,
            note="not pairwise"
            if kind != "pairwise"
            else "no probabilities or too few items"
            if beyond is None
            else f"gain {_fmt(_get(beyond, 'gain', 'value'))}, likelihood-ratio p = {_fmt(beyond.get('p_value'))}",
        ),
        _rule(
            "ece",
            "expected calibration error of the verdict probability",
            _get(result, "calibration", "ece"),
            cfg.max_ece,
            "<=",
            note="" if _get(result, "calibration", "ece") is not None else "verdicts carry no probabilities",
        ),
        _rule("errors", "items without a usable verdict", errors, cfg.max_errors, "<="),
    ]
    return {
        "passed": all(r["pass"] for r in rules),
        "fingerprint": _get(result, "judge", "fingerprint"),
        "judge": result.get("judge"),
        "checked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": str(config_path) if config_path else None,
        "config_sha256": sha256_json(to_dict(cfg), ensure_ascii=True),
        "thresholds": to_dict(cfg),
        "rules": rules,
    }


def read_result(path: str | Path) -> dict:
    """A validation.json, checked for the fields the gate and the report read."""
    p = Path(path)
    try:
        result = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("file not found", path=str(p)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not a JSON file: {exc}", path=str(p)) from None
    if not isinstance(result, dict):
        raise DataError("expected a JSON object (a validation result)", path=str(p))
    missing = [k for k in ("schema_version", "judge", "n", "metrics", "baselines", "errors") if k not in result]
    if missing:
        raise DataError(
            f"not a validation result: missing {', '.join(missing)}",
            path=str(p),
            hint="write one with `judgeloop eval`",
        )
    return result


def write_result(path: str | Path, result: dict) -> None:
    """Rewrite a validation.json atomically."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(p)


def format_rules(gate: dict) -> str:
    """The gate as plain text lines: rule, figure, threshold, PASS/FAIL/SKIP."""
    lines = []
    for r in gate["rules"]:
        fig = "n/a" if r["figure"] is None else f"{r['figure']:.4g}"
        thr = "off" if r["threshold"] is None else f"{r['op']} {r['threshold']:.4g}"
        note = f"  ({r['note']})" if r["note"] else ""
        lines.append(f"{r['status']:<4}  {r['name']:<21} {fig:>9}  {thr:<10} {r['rule']}{note}")
    judge = gate.get("judge") or {}
    who = " ".join(str(x) for x in (judge.get("name"), judge.get("version")) if x)
    lines.append(
        f"gate {'PASSED' if gate['passed'] else 'FAILED'} for {who} (fingerprint {str(gate.get('fingerprint'))[:16]})"
    )
    return "\n".join(lines)
