"""Promotion: which validation result lets a registered judge version serve production.

The registry (judge/registry.py) stores versions; this module decides. A validation result is
attached to a version only if it is for that version's fingerprint; attaching seals it (the
sha256 of the stored copy and of the gate config its gate applied). A version is promoted only
if one of its attached copies

* is unchanged since attaching, and its gate config is the one sealed;
* carries a gate for exactly that fingerprint (keyed by fingerprint, not by name or version, so
  retraining, a new spec or a new base model needs a new gate) whose rules pass, **recomputed**
  here from the copy's figures and its gate config (``eval.gate.check``), not read from the
  recorded ``passed``;
* was gated with rules no looser than the default gate for its spec (``eval.gate.loosened_rules``),
  unless the promotion overrides that explicitly with a reason;
* was computed from verdicts judgeloop scored, not a verdicts file (``eval.gate.external_verdicts``),
  unless the promotion overrides that explicitly with a reason.

An override and its reason are recorded in the registry's history with the promotion.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from data.errors import ConfigError, DataError
from eval.gate import check, config_from_thresholds, config_sha256, external_verdicts, loosened_rules
from eval.result import ValidationResult
from judge.registry import Registry, RegistryError

DEFAULT_GATE_HINT = "configs/gates/default.yaml"


def _summary(result: ValidationResult) -> dict:
    """What the registry keeps beside an attached copy: the gate's metric with its interval, and the gate."""
    gate = result.gate
    metric = gate.thresholds.get("metric", "accuracy") if gate else "accuracy"
    figure = result.metrics.get(metric)
    return {
        "dataset": result.dataset.model_dump(exclude_unset=True),
        "metric": metric,
        "value": figure.value if figure else None,
        "ci_low": figure.ci_low if figure else None,
        "ci_high": figure.ci_high if figure else None,
        "gate_passed": gate.passed if gate else None,
        "gate_fingerprint": gate.fingerprint if gate else None,
    }


def attach(registry: Registry, name: str, version: str, validation: str | Path) -> dict:
    """Attach a validation result (usually gated) to a version; it must be for the version's fingerprint.
    The registry seals the copy and the gate config its gate applied."""
    path = Path(validation)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path=str(path)) from None
    except IsADirectoryError:
        raise DataError("is a directory, not a validation.json", path=str(path)) from None
    try:
        data = json.loads(content.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"not a JSON file: {exc}", path=str(path)) from None
    result = ValidationResult.from_data(data, path)  # the bytes that are copied, checked once
    entry = registry.resolve(name, version)
    fp = result.judge.fingerprint
    if fp != entry["fingerprint"]:
        raise RegistryError(
            f"the validation result is for fingerprint {str(fp)[:16]}, but {name} {version} is "
            f"{entry['fingerprint'][:16]}",
            path=str(validation),
            field="judge.fingerprint",
            hint="validate this exact judge (same spec, base model and adapter)",
        )
    sealed = None
    if result.gate is not None:
        sealed = config_sha256(result.gate.thresholds)
        if sealed != result.gate.config_sha256:
            raise RegistryError(
                "the gate record's thresholds are not the gate config it was checked with (config_sha256 differs)",
                path=str(validation),
                field="gate.thresholds",
                hint="gate the validation again: judgeloop gate VALIDATION.json",
            )
    return registry.attach(name, version, validation, _summary(result), content=content, gate_config_sha256=sealed)


def register(
    registry: Registry,
    name: str,
    version: str,
    fingerprint: str,
    model: str,
    adapter: str | None = None,
    spec: str | None = None,
    card: str | None = None,
    validation: str | Path | None = None,
) -> dict:
    """Add a candidate version; optionally attach its validation result at once."""
    entry = registry.register(name, version, fingerprint, model, adapter, spec, card)
    return attach(registry, name, version, validation) if validation is not None else entry


# --- what an attached validation vouches for ------------------------------------------------------


@dataclass
class Assessment:
    """One attached validation of a version, re-checked: whether (and with which overrides) it can promote."""

    info: dict
    """The registry's record of the attached copy."""
    problem: str | None = None
    """Why it cannot promote at all (no override helps); None when its gate passes, recomputed."""
    loosened: list[str] = field(default_factory=list)
    """Rules its gate switched off or loosened against ``baseline``."""
    baseline: str | None = None
    external: bool = False
    """Its verdicts were read from a file, not scored by judgeloop."""

    def blocked(self, override_loosened_gate: bool = False, allow_external_verdicts: bool = False) -> bool:
        return (
            self.problem is not None
            or (bool(self.loosened) and not override_loosened_gate)
            or (self.external and not allow_external_verdicts)
        )


def assess(info: dict, path: Path, entry: dict) -> Assessment:
    """Re-check one attached copy: the seal (the copy's sha256, on the bytes it reads, and its gate
    config's), the fingerprint, the rules recomputed from its figures, loosening and where its
    verdicts came from."""
    fp = entry["fingerprint"]
    try:
        content = path.read_bytes()
        if hashlib.sha256(content).hexdigest() != info["sha256"]:  # the seal, on the bytes read here
            return Assessment(info, "has changed since it was attached")
        result = ValidationResult.from_data(json.loads(content.decode("utf-8")), path)
    except (OSError, ValueError, DataError):  # ValueError: not JSON or not UTF-8
        return Assessment(info, "is not a validation result this code can read")
    gate = result.gate
    if gate is None:
        return Assessment(info, "is not gated")
    if result.judge.fingerprint != fp or gate.fingerprint != fp:
        return Assessment(info, f"has a gate for fingerprint {str(gate.fingerprint)[:16]}")
    sealed = info.get("gate_config_sha256")
    if sealed is None:
        return Assessment(info, "was attached before gates were sealed (attach it again)")
    if not (config_sha256(gate.thresholds) == sealed == gate.config_sha256):
        return Assessment(info, "has a gate config that is not the one sealed when it was attached")
    try:
        cfg = config_from_thresholds(gate.thresholds, str(path))
        again = check(result, cfg)
    except ConfigError as exc:
        return Assessment(info, f"has a gate config that cannot be applied ({exc.first.message})")
    if not again.passed:
        failed = ", ".join(r.name for r in again.rules if r.status == "FAIL")
        return Assessment(info, f"fails its gate when the rules are recomputed from its figures ({failed})")
    if not gate.passed:
        return Assessment(info, "has a failed gate")
    loosened, baseline = loosened_rules(cfg, result.spec.name)
    return Assessment(info, None, loosened, baseline, external_verdicts(result))


def assessments(registry: Registry, entry: dict) -> list[Assessment]:
    """Every attached validation whose copy is unchanged since attaching, newest first, re-checked."""
    return [assess(info, path, entry) for info, path in registry.attached(entry)]


def passing_gate(registry: Registry, entry: dict) -> dict | None:
    """The newest attached validation that can promote the entry without an override: its copy and gate
    config as sealed, its gate for the entry's fingerprint, its rules passing when recomputed, no rule
    loosened against the default gate and verdicts scored by judgeloop."""
    for a in assessments(registry, entry):
        if not a.blocked():
            return a.info
    return None


def _refusal(name: str, version: str, fp: str, found: list[Assessment], loosen: bool, external: bool) -> RegistryError:
    """One line: why the version cannot be promoted, and what would let it."""
    head = f"refusing to promote {name} {version}"
    usable = [a for a in found if a.problem is None]
    if not usable:
        why = f": the newest attached validation {found[0].problem}" if found else ""
        return RegistryError(
            f"{head}: no passing gate for fingerprint {fp[:16]}{why}",
            hint=f"run `judgeloop gate VALIDATION.json --gates {DEFAULT_GATE_HINT}`, then "
            f"`judgeloop promote {name} {version} --validation VALIDATION.json`",
        )
    a = usable[0]
    reasons, flags = [], []
    if a.loosened and not loosen:
        reasons.append(f"its gate was loosened against {a.baseline} ({', '.join(a.loosened)})")
        flags.append("--override-loosened-gate")
    if a.external and not external:
        reasons.append("its verdicts were read from a file, not scored by judgeloop (judgeloop eval --verdicts)")
        flags.append("--allow-external-verdicts")
    return RegistryError(
        f"{head}: " + "; ".join(reasons),
        hint=f"gate a validation scored by `judgeloop eval --judge` with {DEFAULT_GATE_HINT}, or pass "
        f'{" ".join(flags)} --reason "..." to promote anyway; the reason is kept in the registry history',
    )


def promote(
    registry: Registry,
    name: str,
    version: str,
    validation: str | Path | None = None,
    *,
    override_loosened_gate: bool = False,
    allow_external_verdicts: bool = False,
    reason: str | None = None,
) -> dict:
    """Make a version production (attaching ``validation`` first); refused without a gate that passes,
    recomputed, for its fingerprint. A gate loosened against the default, or verdicts not scored by
    judgeloop, promote only with the matching override and a ``reason``; both are logged."""
    reason = (reason or "").strip() or None
    if (override_loosened_gate or allow_external_verdicts) and reason is None:
        raise RegistryError(
            "an override needs a reason",
            field="--reason",
            hint='say why, e.g. --reason "threshold agreed with the team for this dataset"; it is kept in the history',
        )
    if validation is not None:
        attach(registry, name, version, validation)
    entry = registry.resolve(name, version)
    if registry.load(name)["production"] == version:
        raise RegistryError(f"{name} {version} is already production")
    found = assessments(registry, entry)
    chosen = next((a for a in found if not a.blocked()), None)  # no override needed: none used
    if chosen is None:
        chosen = next((a for a in found if not a.blocked(override_loosened_gate, allow_external_verdicts)), None)
    if chosen is None:
        raise _refusal(name, version, entry["fingerprint"], found, override_loosened_gate, allow_external_verdicts)
    overrides: dict = {}
    if chosen.loosened:
        overrides["override_loosened_gate"] = chosen.loosened
        overrides["gate_baseline"] = chosen.baseline
    if chosen.external:
        overrides["allow_external_verdicts"] = True
    if overrides:
        overrides["reason"] = reason
    return registry.promote(name, version, chosen.info, overrides)


def mlflow_run_id(*paths: str | None) -> str | None:
    """The MLflow run id that `--mlflow` / `judgeloop mlflow log` wrote beside a judge's files (``mlflow.json``
    in its run directory), if any: a registered version then carries it."""
    for path in filter(None, paths):
        for directory in (Path(path), Path(path).parent):
            record = directory / "mlflow.json"
            if record.is_file():
                try:
                    data = json.loads(record.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if data.get("kind") == "training" and data.get("run_id"):
                    return str(data["run_id"])
    return None
