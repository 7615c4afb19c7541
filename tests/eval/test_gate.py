"""The gate: every rule fails in a case built to fail it; the CLI exits 0/1 and records the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import judgeloop
from data.errors import ConfigError
from data.paths import CONFIGS_DIR
from eval.gate import GateConfig, check, load_gates, write_result
from eval.result import ValidationResult

DEFAULT = CONFIGS_DIR / "gates" / "default.yaml"
GOLDEN = Path(__file__).parent / "golden" / "validation-pairwise-v1.json"


def _merge(into: dict, figures: dict) -> dict:
    for key, value in figures.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


FIGURES = {  # what the rules read, set to clear every default rule by a clear margin
    "schema_version": 1,
    "judge": {"name": "j", "version": "2", "fingerprint": "f" * 64},
    "spec": {"kind": "pairwise"},
    "n": 500,
    "n_items": 560,
    "metrics": {"accuracy": {"value": 0.82, "ci_low": 0.78, "ci_high": 0.86}},
    "human_ceiling": {
        "metrics": {"accuracy": {"value": 0.9}},
        "judge": {"accuracy": {"value": 0.85}},
        "judge_to_ceiling": 0.944,
    },
    "bias": {"swap_consistency": 0.9, "first_position_rate": 0.51},
    "calibration": {"ece": 0.04, "brier": 0.2},
    "baselines": {"always_first": 0.5, "always_second": 0.5, "pick_longer": 0.66, "majority_class": 0.52},
    "comparison": {"diff": {"value": 0.01, "ci_low": -0.01, "ci_high": 0.03}, "mcnemar": {"p_value": 0.4}},
    "errors": {"no_verdict": 0},
    "length_control": {
        "beyond_length": {"n": 480, "gain": {"value": 0.05, "ci_low": 0.03, "ci_high": 0.07}, "p_value": 1e-9}
    },
}


def passing_result() -> ValidationResult:
    """A validation result that clears every default rule by a clear margin: a real result (the pairwise
    golden file, its gate removed) with the figures the rules read set by hand."""
    real = json.loads(GOLDEN.read_text())
    del real["gate"]
    return ValidationResult.model_validate(_merge(real, FIGURES))


BREAKERS = {
    "min_n": lambda r: setattr(r, "n", 150),
    "margin_over_baseline": lambda r: r.baselines.update(pick_longer=0.80),
    "ci_low": lambda r: setattr(r.metrics["accuracy"], "ci_low", 0.6),
    "human_ceiling": lambda r: setattr(r.human_ceiling, "judge_to_ceiling", 0.7),
    "incumbent": lambda r: setattr(r.comparison.diff, "ci_low", -0.05),
    "swap_consistency": lambda r: setattr(r.bias, "swap_consistency", 0.6),
    "beyond_length": lambda r: setattr(r.length_control.beyond_length.gain, "ci_low", -0.001),  # a length detector
    "ece": lambda r: setattr(r.calibration, "ece", 0.2),
    "errors": lambda r: setattr(r.errors, "no_verdict", 3),
}


def _status(gate) -> dict[str, str]:
    return {r.name: r.status for r in gate.rules}


def test_the_constructed_result_passes():
    gate = check(passing_result(), load_gates(DEFAULT))
    assert gate.passed, gate.rules
    assert [r.name for r in gate.rules] == list(BREAKERS)
    assert gate.fingerprint == "f" * 64


@pytest.mark.parametrize("rule", list(BREAKERS))
def test_each_rule_fails_on_its_own(rule):
    result = passing_result()
    BREAKERS[rule](result)
    gate = check(result, load_gates(DEFAULT))
    assert not gate.passed
    assert [r.name for r in gate.rules if r.status == "FAIL"] == [rule]


def test_missing_figures_fail_unless_the_data_has_no_such_thing():
    result = passing_result()
    result.human_ceiling = None  # one annotator: nothing to compare with
    result.comparison = None  # first version: no incumbent
    gate = check(result, load_gates(DEFAULT))
    status = _status(gate)
    assert gate.passed and status["human_ceiling"] == "SKIP" and status["incumbent"] == "SKIP"
    result.bias.swap_consistency = None  # scored in one order only
    result.calibration.ece = None  # no probabilities
    status = _status(check(result, load_gates(DEFAULT)))
    assert status["swap_consistency"] == "FAIL" and status["ece"] == "FAIL"
    result.spec.kind = "binary"
    status = _status(check(result, load_gates(DEFAULT)))
    assert status["swap_consistency"] == "SKIP"
    result.length_control = None  # not pairwise, or verdicts without probabilities: nothing to test
    status = _status(check(result, load_gates(DEFAULT)))
    assert status["beyond_length"] == "SKIP"


def test_a_null_threshold_turns_a_rule_off():
    result = passing_result()
    result.calibration.ece = 0.5
    gate = check(result, load_gates(DEFAULT, ["--max_ece=null"]))
    assert gate.passed


def test_config_errors_are_reported_together(tmp_path):
    bad = tmp_path / "gates.yaml"
    bad.write_text("min_n: lots\nmax_ecee: 0.1\nmin_ci_low: 1.5\n")
    with pytest.raises(ConfigError) as err:
        load_gates(bad)
    text = str(err.value)
    assert "gates.yaml:1: field 'min_n': must be an integer" in text
    assert "field 'max_ecee': unknown key (did you mean 'max_ece'?)" in text
    with pytest.raises(ConfigError, match="no metric 'spearman'"):
        check(passing_result(), GateConfig(metric="spearman"))


def test_every_gate_field_has_help():
    from data.config import field_help

    assert all(field_help(GateConfig).values())


def test_cli_prints_rules_exits_0_or_1_and_writes_the_gate(tmp_path, capsys):
    path = tmp_path / "validation.json"
    write_result(path, passing_result())
    assert judgeloop.main(["gate", str(path), "--gates", str(DEFAULT)]) == 0
    out = capsys.readouterr().out
    assert "PASS  min_n" in out and "gate PASSED" in out
    assert json.loads(path.read_text())["gate"]["passed"] is True

    failing = passing_result()
    BREAKERS["ece"](failing)
    write_result(path, failing)
    assert judgeloop.main(["gate", str(path), "--gates", str(DEFAULT), "--min_n=600"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  ece" in out and "FAIL  min_n" in out and "gate FAILED" in out
    gate = json.loads(path.read_text())["gate"]
    assert gate["passed"] is False and gate["thresholds"]["min_n"] == 600

    assert judgeloop.main(["gate", str(tmp_path / "missing.json")]) == 2
    (tmp_path / "x.json").write_text("{}")
    assert judgeloop.main(["gate", str(tmp_path / "x.json"), "--gates", str(DEFAULT)]) == 2
    assert "not a validation result" in capsys.readouterr().err


FLOAT_THRESHOLDS = [
    "min_margin_over_baseline",
    "min_ci_low",
    "min_ceiling_fraction",
    "max_incumbent_drop",
    "min_swap_consistency",
    "min_beyond_length",
    "max_ece",
]


@pytest.mark.parametrize("override,yaml", [("inf", ".inf"), ("-inf", "-.inf"), ("Infinity", "inf")])
@pytest.mark.parametrize("name", FLOAT_THRESHOLDS)
def test_a_non_finite_threshold_is_a_located_config_error(tmp_path, name, override, yaml):
    """inf would pass or fail every judge (and cannot be written into the gate record): refused at load."""
    assert GateConfig.__dataclass_fields__[name].type in ("Optional[float]", "float")
    with pytest.raises(ConfigError) as err:
        load_gates(DEFAULT, [f"--{name}={override}"])
    (problem,) = err.value.problems
    assert (problem.field, problem.path, problem.line) == (name, f"--{name}", None)
    assert "must be a finite number" in problem.message
    path = tmp_path / "gates.yaml"
    path.write_text(f"metric: accuracy\n{name}: {yaml}\n")
    with pytest.raises(ConfigError) as err:
        load_gates(path)
    assert (
        str(err.value)
        == f"{path}:2: field '{name}': must be a finite number, got {float(override)} (null turns the rule off)"
    )


def test_the_cli_refuses_a_non_finite_threshold_with_exit_2_and_leaves_the_result_alone(tmp_path, capsys):
    path = tmp_path / "validation.json"
    path.write_text(passing_result().to_json())
    before = path.read_bytes()
    for override in ("--max_ece=inf", "--min_margin_over_baseline=-inf", "--min_beyond_length=nan"):
        assert judgeloop.main(["gate", str(path), "--gates", str(DEFAULT), override]) == 2
        err = capsys.readouterr().err
        assert f"{override.split('=')[0]}: field '{override[2:].split('=')[0]}'" in err and "Traceback" not in err
    assert path.read_bytes() == before
