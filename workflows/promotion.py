"""Promotion: which validation result lets a registered judge version serve production.

The registry (judge/registry.py) stores versions; this module decides. A validation result is
attached to a version only if it is for that version's fingerprint, and a version is promoted
only if one of its attached copies (unchanged since attaching) carries a passing gate for
exactly that fingerprint: the gate is keyed by fingerprint, not by name or version, so
retraining, a new spec or a new base model needs a new gate.
"""

from __future__ import annotations

from pathlib import Path

from data.errors import DataError
from eval.gate import read_result
from eval.result import ValidationResult
from judge.registry import Registry, RegistryError


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
    """Attach a validation result (usually gated) to a version; it must be for the version's fingerprint."""
    result = read_result(validation)
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
    return registry.attach(name, version, validation, _summary(result))


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


def passing_gate(registry: Registry, entry: dict) -> dict | None:
    """The newest attached validation whose stored copy has a passing gate for the entry's fingerprint."""
    for info, path in registry.attached(entry):
        try:
            result = read_result(path)
        except DataError:
            continue  # not a validation result this code can read: it cannot vouch for the version
        gate = result.gate
        if (
            gate is not None
            and gate.passed is True
            and gate.fingerprint == entry["fingerprint"]
            and result.judge.fingerprint == entry["fingerprint"]
        ):
            return info
    return None


def promote(registry: Registry, name: str, version: str, validation: str | Path | None = None) -> dict:
    """Make a version production (attaching ``validation`` first); refused without a passing gate."""
    if validation is not None:
        attach(registry, name, version, validation)
    entry = registry.resolve(name, version)
    if registry.load(name)["production"] == version:
        raise RegistryError(f"{name} {version} is already production")
    gate = passing_gate(registry, entry)
    if gate is None:
        raise RegistryError(
            f"refusing to promote {name} {version}: no passing gate for fingerprint {entry['fingerprint'][:16]}",
            hint=f"run `judgeloop gate VALIDATION.json --gates configs/gates/default.yaml`, then "
            f"`judgeloop promote {name} {version} --validation VALIDATION.json`",
        )
    return registry.promote(name, version, gate)
