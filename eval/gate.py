"""The promotion gate: rules over a validation result, each with its figure, threshold and verdict.

A rule whose threshold is null is off. A rule whose figure does not exist because the data or
setting has no such thing (one annotator: no human ceiling; no incumbent; not pairwise: no
swap consistency) is SKIP and does not block. A rule whose figure is missing for a judge that
should have one (no probabilities for ECE, one scoring order for swap consistency) FAILS: an
unmeasured property is not a passed one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from data.config import build_config, load_config, load_yaml, option, parse_overrides, to_dict
from data.errors import ConfigError, Problem
from data.paths import CONFIGS_DIR, REPO_ROOT
from data.provenance import sha256_json
from eval.result import Gate, Interval, Judge, ValidationResult

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
DEFAULT_GATES = CONFIGS_DIR / "gates" / "default.yaml"
CRITERIA = CONFIGS_DIR / "criteria.yaml"


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
        non_finite = set()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                # inf/-inf would pass or fail every judge and cannot be written to JSON
                non_finite.add(f.name)
                problems.append(
                    Problem(f"must be a finite number, got {value}", field=f.name, hint="null turns the rule off")
                )
        for name in ("min_ci_low", "min_ceiling_fraction", "min_swap_consistency", "max_ece"):
            value = getattr(self, name)
            if name not in non_finite and value is not None and not 0 <= value <= 1:
                problems.append(Problem(f"must be between 0 and 1, got {value}", field=name))
        for name in ("min_n", "max_errors", "max_incumbent_drop"):
            value = getattr(self, name)
            if name not in non_finite and value is not None and value < 0:
                problems.append(Problem(f"must be >= 0, got {value}", field=name))
        return problems


def load_gates(path: str | Path | None, overrides: list[str] | None = None) -> GateConfig:
    try:
        return load_config(GateConfig, path, overrides)
    except ConfigError as exc:
        # a rule broken by a --key=value override is located at the override, not at the file's line
        try:
            given = parse_overrides(list(overrides or []))
        except ConfigError:
            raise exc from None
        for p in exc.problems:
            if p.field in given and (p.path is None or p.path == (str(path) if path else None)):
                p.path, p.line = f"--{p.field}", None
        raise ConfigError(problems=exc.problems) from None


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


def check(result: ValidationResult, cfg: GateConfig, *, config_path: str | None = None) -> Gate:
    """Apply the gate to a validation result; returns the gate record (rules, passed, fingerprint)."""
    metrics = result.metrics
    if cfg.metric not in metrics:
        raise ConfigError(
            f"the validation result has no metric '{cfg.metric}'",
            path=config_path,
            field="metric",
            hint=f"it has: {', '.join(metrics) or 'none'}",
        )
    value = metrics[cfg.metric].value
    ci_low = metrics[cfg.metric].ci_low
    kind = result.spec.kind
    baselines = {k: v for k, v in result.baselines.items() if v is not None}
    best = max(baselines, key=baselines.get) if baselines else None
    ceiling = result.human_ceiling
    comparison = result.comparison
    errors = result.errors.no_verdict
    beyond = result.length_control.beyond_length if result.length_control else None
    swap = result.bias.swap_consistency
    ece = result.calibration.ece
    rules = [
        _rule("min_n", f"{cfg.metric} is computed on at least this many items", result.n, cfg.min_n, ">="),
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
            ceiling.judge_to_ceiling if ceiling else None,
            cfg.min_ceiling_fraction,
            ">=",
            missing=SKIP if ceiling is None else FAIL,
            note="one annotator per item: no human ceiling"
            if ceiling is None
            else f"judge {_fmt(_value(ceiling.judge, 'accuracy'))} "
            f"vs humans {_fmt(_value(ceiling.metrics, 'accuracy'))}",
        ),
        _rule(
            "incumbent",
            "lower end of the paired 95% interval of (candidate - incumbent)",
            comparison.diff.ci_low if comparison else None,
            None if cfg.max_incumbent_drop is None else -cfg.max_incumbent_drop,
            ">=",
            missing=SKIP if comparison is None else FAIL,
            note="no incumbent"
            if comparison is None
            else f"difference {_fmt(comparison.diff.value)}, McNemar p = {_fmt(comparison.mcnemar.p_value)}",
        ),
        _rule(
            "swap_consistency",
            "share of items with the same winner in both orders",
            swap,
            cfg.min_swap_consistency,
            ">=",
            missing=SKIP if kind != "pairwise" else FAIL,
            note="not pairwise"
            if kind != "pairwise"
            else ""
            if swap is not None
            else "the judge was not scored in both orders",
        ),
        _rule(
            "beyond_length",
            "lower end of the 95% interval of the log-loss drop from adding the judge's odds to the length ratio",
            beyond.gain.ci_low if beyond else None,
            cfg.min_beyond_length,
            ">=",
            missing=SKIP,
            note="not pairwise"
            if kind != "pairwise"
            else "no probabilities or too few items"
            if beyond is None
            else f"gain {_fmt(beyond.gain.value)}, likelihood-ratio p = {_fmt(beyond.p_value)}",
        ),
        _rule(
            "ece",
            "expected calibration error of the verdict probability",
            ece,
            cfg.max_ece,
            "<=",
            note="" if ece is not None else "verdicts carry no probabilities",
        ),
        _rule("errors", "items without a usable verdict", errors, cfg.max_errors, "<="),
    ]
    loosened, baseline = loosened_rules(cfg, result.spec.name)
    return Gate.model_validate(
        {
            "passed": all(r["pass"] for r in rules),
            "fingerprint": result.judge.fingerprint,
            "judge": result.judge.model_dump(),
            "checked": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": str(config_path) if config_path else None,
            "config_sha256": config_sha256(to_dict(cfg)),
            "thresholds": to_dict(cfg),
            "rules": rules,
            "baseline": baseline,
            "loosened": loosened,
            "external_verdicts": external_verdicts(result),
        }
    )


def config_sha256(thresholds: dict) -> str:
    """The hash of a gate config as applied (a gate record's ``thresholds``): sha256 of its canonical JSON."""
    return sha256_json(thresholds, ensure_ascii=True)


def config_from_thresholds(thresholds: dict, path: str | None = None) -> GateConfig:
    """The GateConfig a gate record applied, rebuilt from its ``thresholds`` (checked like a config file)."""
    return build_config(GateConfig, dict(thresholds), path=path)


# --- what a gate may not do without an override ---------------------------------------------------

# config field -> (rule name, +1 when a larger threshold is stricter, -1 when a smaller one is)
STRICTER = {
    "min_n": ("min_n", +1),
    "min_margin_over_baseline": ("margin_over_baseline", +1),
    "min_ci_low": ("ci_low", +1),
    "min_ceiling_fraction": ("human_ceiling", +1),
    "max_incumbent_drop": ("incumbent", -1),
    "min_swap_consistency": ("swap_consistency", +1),
    "min_beyond_length": ("beyond_length", +1),
    "max_ece": ("ece", -1),
    "max_errors": ("errors", -1),
}


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def default_gates(spec: str | None) -> tuple[GateConfig, str]:
    """The default gate for a judge spec, and where it came from: the gate config configs/criteria.yaml
    names for the criterion whose spec this is, else configs/gates/default.yaml (the built-in defaults,
    which are the same, where the repository's configs are not installed). Read from the repository,
    never from the working directory."""
    path = DEFAULT_GATES
    if spec and CRITERIA.is_file():
        data, _ = load_yaml(CRITERIA)
        criteria = data.get("criteria") if isinstance(data, dict) else None
        for body in (criteria or {}).values():
            if isinstance(body, dict) and body.get("spec") == spec and body.get("gates"):
                given = Path(str(body["gates"]))
                path = given if given.is_absolute() else REPO_ROOT / given
                break
    if not path.is_file():
        return GateConfig(), "the built-in gate defaults (eval/gate.py)"
    return load_gates(path), _shown(path)


def loosened_rules(cfg: GateConfig, spec: str | None) -> tuple[list[str], str]:
    """The rules ``cfg`` switches off or sets looser than the spec's default gate ('metric' when it reads
    another metric), and which default that is."""
    default, where = default_gates(spec)
    out = ["metric"] if cfg.metric != default.metric else []
    for name, (rule, direction) in STRICTER.items():
        base, given = getattr(default, name), getattr(cfg, name)
        if base is None:
            continue  # off by default: nothing to loosen
        if given is None or (given - base) * direction < 0:
            out.append(rule)
    return out, where


def external_verdicts(result: ValidationResult) -> bool:
    """True when the result's verdicts were read from a file judgeloop did not score (`judgeloop eval
    --verdicts`): its ``inputs`` name a verdicts file without the engine that scored it. (Results
    computed in Python by the demo or retrain, which score through the serving engine themselves,
    record no verdicts file.)"""
    verdicts = result.inputs.get("verdicts")
    return verdicts is not None and not verdicts.scored_with


def _value(figures: dict[str, Interval], name: str) -> float | None:
    return figures[name].value if name in figures else None


def read_result(path: str | Path) -> ValidationResult:
    """A validation.json (any written since schema_version 1); a problem is a DataError naming file and field."""
    return ValidationResult.load(path)


def write_result(path: str | Path, result: ValidationResult) -> None:
    """Write a validation.json atomically."""
    result.save(path)


def format_rules(gate: Gate | dict) -> str:
    """The gate as plain text lines: rule, figure, threshold, PASS/FAIL/SKIP (a gate record, or its JSON form)."""
    if not isinstance(gate, Gate):
        gate = Gate.model_validate(gate)
    lines = []
    for r in gate.rules:
        fig = "n/a" if r.figure is None else f"{r.figure:.4g}"
        thr = "off" if r.threshold is None else f"{r.op} {r.threshold:.4g}"
        note = f"  ({r.note})" if r.note else ""
        lines.append(f"{r.status:<4}  {r.name:<21} {fig:>9}  {thr:<10} {r.rule}{note}")
    judge = gate.judge or Judge()
    who = " ".join(str(x) for x in (judge.name, judge.version) if x)
    lines.append(f"gate {'PASSED' if gate.passed else 'FAILED'} for {who} (fingerprint {str(gate.fingerprint)[:16]})")
    return "\n".join(lines)
