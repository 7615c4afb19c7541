"""Promotion: which validation result lets a registered judge version serve production.

The registry (judge/registry.py) stores versions; this module decides. A validation result is
attached to a version only if it is for that version's fingerprint, and a version is promoted
only if one of its attached copies (unchanged since attaching) carries a passing gate for
exactly that fingerprint: the gate is keyed by fingerprint, not by name or version, so
retraining, a new spec or a new base model needs a new gate.
"""

from __future__ import annotations

import json
from pathlib import Path

from eval.gate import read_result
from judge.registry import Registry, RegistryError


def _summary(result: dict) -> dict:
    gate = result.get("gate") or {}
    metric = (gate.get("thresholds") or {}).get("metric", "accuracy")
    figure = result["metrics"].get(metric) or {}
    return {
        "dataset": result.get("dataset"),
        "metric": metric,
        "value": figure.get("value"),
        "ci_low": figure.get("ci_low"),
        "ci_high": figure.get("ci_high"),
        "gate_passed": gate.get("passed") if gate else None,
        "gate_fingerprint": gate.get("fingerprint"),
    }


def attach(registry: Registry, name: str, version: str, validation: str | Path) -> dict:
    """Attach a validation result (usually gated) to a version; it must be for the version's fingerprint."""
    result = read_result(validation)
    entry = registry.resolve(name, version)
    fp = (result.get("judge") or {}).get("fingerprint")
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
        result = json.loads(path.read_text(encoding="utf-8"))
        gate = result.get("gate") or {}
        if (
            gate.get("passed") is True
            and gate.get("fingerprint") == entry["fingerprint"]
            and (result.get("judge") or {}).get("fingerprint") == entry["fingerprint"]
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
