"""Promotion requires a gate that really passed: each way an outside review found to get a judge into
production without one ends in a refusal, and each explicit override is logged with its reason.

1. a failed candidate's validation.json edited to ``passed: true`` (before attaching it, or its stored
   copy and the registry's hash of it afterwards): promote recomputes the rules and refuses;
2. a gate with every threshold set to null: recorded as loosened against the default gate, refused
   without ``--override-loosened-gate --reason``;
3. hand-made verdicts stamped with the candidate's fingerprint, validated with ``judgeloop eval
   --verdicts``: recorded as not scored by judgeloop, refused without ``--allow-external-verdicts
   --reason``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import judgeloop
from data.jsonl import write_jsonl
from data.paths import CONFIGS_DIR
from eval.gate import STRICTER, check, config_sha256, load_gates, read_result, write_result
from judge.registry import Registry, RegistryError
from tests.eval.helpers import onehot, pairwise_items, verdict
from tests.eval.test_gate import BREAKERS, passing_result
from workflows import promotion

FP = "1" * 64
DEFAULT = CONFIGS_DIR / "gates" / "default.yaml"
ALL_OFF = [f"--{name}=null" for name in STRICTER]


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``judgeloop ARGS...`` against a registry in tmp_path: (exit code, stdout, stderr)."""
    monkeypatch.setenv("JUDGELOOP_REGISTRY", str(tmp_path / "reg"))

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = judgeloop.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def scored(tmp_path: Path, name: str, failing: str | None = None) -> Path:
    """An ungated validation.json for FP whose verdicts judgeloop scored; ``failing``: the rule it fails."""
    result = passing_result()
    result.judge.fingerprint = FP
    result.inputs["verdicts"].scored_with = "vllm"
    if failing:
        BREAKERS[failing](result)
    path = tmp_path / f"{name}.json"
    write_result(path, result)
    return path


def refused(code: int, err: str, *words: str) -> None:
    """A refusal: exit 2 and one clear line saying why."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("judgeloop: error: refusing to promote helpful 1: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])


def production(tmp_path: Path) -> str | None:
    return Registry(tmp_path / "reg").load("helpful")["production"]


# --- 1. an edited gate record ---------------------------------------------------------------------


def test_a_failed_gate_edited_to_passed_is_refused(cli, tmp_path):
    path = scored(tmp_path, "failed", failing="ece")
    assert cli("gate", path, "--gates", DEFAULT)[0] == 1
    data = json.loads(path.read_text())
    data["gate"]["passed"] = True
    for rule in data["gate"]["rules"]:  # a thorough forger fixes the rules too
        rule.update(status="PASS", **{"pass": True})
    path.write_text(json.dumps(data))
    assert cli("registry", "register", "helpful", "1", "--model", "m", "--validation", path)[0] == 0
    code, out, err = cli("promote", "helpful", "1")
    refused(code, err, "no passing gate for fingerprint 1111111111111111", "recomputed from its figures (ece)")
    assert production(tmp_path) is None
    # no override lets a failing gate through
    code, _, err = cli(
        "promote", "helpful", "1", "--override-loosened-gate", "--allow-external-verdicts", "--reason", "x"
    )
    refused(code, err, "(ece)")
    assert cli("registry", "list", "helpful")[1].split()[4:6] == ["gate", "none"]


def test_a_stored_copy_edited_with_its_recorded_hash_is_refused(cli, tmp_path):
    path = scored(tmp_path, "failed", failing="errors")
    assert cli("gate", path)[0] == 1
    assert cli("registry", "register", "helpful", "1", "--model", "m", "--validation", path)[0] == 0
    reg = Registry(tmp_path / "reg")
    record_file = reg.root / "helpful" / "versions.json"
    record = json.loads(record_file.read_text())
    info = record["versions"]["1"]["validations"][0]
    stored = reg.root / info["file"]
    data = json.loads(stored.read_text())
    data["gate"]["passed"] = True
    stored.write_text(json.dumps(data))
    info["sha256"] = __import__("hashlib").sha256(stored.read_bytes()).hexdigest()  # the registry's hash too
    info["gate_passed"] = True
    record_file.write_text(json.dumps(record))
    code, _, err = cli("promote", "helpful", "1")
    refused(code, err, "recomputed from its figures (errors)")


def test_loosened_thresholds_written_into_the_record_are_refused(cli, tmp_path):
    """Thresholds edited in the file: attach refuses them unless config_sha256 is forged too; then the
    recomputed gate passes, but only because it is looser than the default."""
    path = scored(tmp_path, "failed", failing="ece")
    assert cli("gate", path)[0] == 1
    data = json.loads(path.read_text())
    data["gate"]["thresholds"]["max_ece"] = 0.5
    data["gate"]["passed"] = True
    path.write_text(json.dumps(data))
    assert cli("registry", "register", "helpful", "1", "--model", "m", "--fingerprint", FP)[0] == 0
    code, _, err = cli("registry", "attach", "helpful", "1", "--validation", path)
    assert code == 2 and "config_sha256 differs" in err
    data["gate"]["config_sha256"] = config_sha256(data["gate"]["thresholds"])
    path.write_text(json.dumps(data))
    assert cli("registry", "attach", "helpful", "1", "--validation", path)[0] == 0
    code, _, err = cli("promote", "helpful", "1")
    refused(code, err, "its gate was loosened against configs/gates/default.yaml (ece)", "--override-loosened-gate")


def test_a_gate_config_changed_after_attaching_is_refused(tmp_path):
    reg = Registry(tmp_path / "reg")
    path = scored(tmp_path, "ok")
    result = read_result(path)
    result.gate = check(result, load_gates(DEFAULT))
    write_result(path, result)
    promotion.register(reg, "helpful", "1", FP, "m", validation=path)
    record_file = reg.root / "helpful" / "versions.json"
    record = json.loads(record_file.read_text())
    info = record["versions"]["1"]["validations"][0]
    assert info["gate_config_sha256"] == result.gate.config_sha256  # the seal, in the version entry
    info["gate_config_sha256"] = "0" * 64
    record_file.write_text(json.dumps(record))
    with pytest.raises(RegistryError, match="gate config that is not the one sealed"):
        promotion.promote(reg, "helpful", "1")
    del info["gate_config_sha256"]  # attached before gates were sealed
    record_file.write_text(json.dumps(record))
    with pytest.raises(RegistryError, match="attach it again"):
        promotion.promote(reg, "helpful", "1")
    promotion.attach(reg, "helpful", "1", path)  # attaching again seals it
    assert promotion.promote(reg, "helpful", "1")["status"] == "production"


# --- 2. every threshold null ----------------------------------------------------------------------


def test_a_gate_with_every_rule_off_needs_a_logged_override(cli, tmp_path):
    path = scored(tmp_path, "bad", failing="ece")
    BREAKERS["ci_low"](result := read_result(path))
    write_result(path, result)
    code, out, _ = cli("gate", path, "--gates", DEFAULT, *ALL_OFF)
    assert code == 0 and "gate PASSED" in out  # every rule off: the gate itself passes
    gate = read_result(path).gate
    assert gate.loosened == [rule for rule, _ in STRICTER.values()] and gate.baseline == "configs/gates/default.yaml"
    assert cli("registry", "register", "helpful", "1", "--model", "m", "--validation", path)[0] == 0
    code, _, err = cli("promote", "helpful", "1")
    refused(code, err, "its gate was loosened against configs/gates/default.yaml (min_n, margin_over_baseline, ")
    assert production(tmp_path) is None

    code, _, err = cli("promote", "helpful", "1", "--override-loosened-gate")
    assert code == 2 and "an override needs a reason" in err
    code, _, err = cli("promote", "helpful", "1", "--override-loosened-gate", "--reason", "  ")
    assert code == 2 and "an override needs a reason" in err
    code, _, err = cli("promote", "helpful", "1", "--allow-external-verdicts", "--reason", "wrong override")
    refused(code, err, "loosened")

    code, out, _ = cli("promote", "helpful", "1", "--override-loosened-gate", "--reason", "smoke test, ticket 42")
    assert code == 0 and "is now production" in out
    assert "OVERRIDE: promoted despite loosened gate (min_n, " in out and "ticket 42" in out
    event = Registry(tmp_path / "reg").history("helpful")[-1]
    assert event["action"] == "promote" and event["version"] == "1"
    assert event["override_loosened_gate"] == gate.loosened and event["reason"] == "smoke test, ticket 42"
    assert event["gate_baseline"] == "configs/gates/default.yaml" and "allow_external_verdicts" not in event
    code, out, _ = cli("registry", "history", "helpful")
    assert "reason=smoke test, ticket 42" in out


def test_a_stricter_gate_is_not_loosened_and_a_criterion_keeps_its_own_default(tmp_path):
    reg = Registry(tmp_path / "reg")
    path = scored(tmp_path, "ok")
    result = read_result(path)
    result.gate = check(result, load_gates(DEFAULT, ["--min_n=300", "--max_ece=0.05"]))
    assert result.gate.loosened == [] and result.gate.passed
    write_result(path, result)
    promotion.register(reg, "helpful", "1", FP, "m", validation=path)
    entry = promotion.promote(reg, "helpful", "1")  # no override needed: none is logged
    assert entry["status"] == "production" and "reason" not in entry["history"][-1]
    # an ordinal criterion's spec is held to configs/gates/ordinal.yaml (configs/criteria.yaml), not default.yaml
    result.spec.name = "summary-coherence"
    ordinal = load_gates(CONFIGS_DIR / "gates" / "ordinal.yaml", ["--metric=accuracy"])
    gate = check(result, ordinal)
    assert gate.baseline == "configs/gates/ordinal.yaml" and gate.loosened == ["metric"]
    assert check(result, load_gates(DEFAULT)).loosened == ["metric"]  # accuracy, not the ordinal spearman


def test_an_override_without_a_reason_is_refused_in_python_too(tmp_path):
    reg = Registry(tmp_path / "reg")
    promotion.register(reg, "helpful", "1", FP, "m")
    with pytest.raises(RegistryError, match="an override needs a reason"):
        promotion.promote(reg, "helpful", "1", allow_external_verdicts=True)


# --- 3. hand-made verdicts ------------------------------------------------------------------------


def test_hand_made_verdicts_stamped_with_the_fingerprint_need_a_logged_override(cli, tmp_path):
    items = pairwise_items(330, seed=3)
    write_jsonl(tmp_path / "items.jsonl", items)
    forged = [verdict(it.id, onehot(it.label, 0.97), onehot(it.label, 0.97), FP, "helpful") for it in items]
    write_jsonl(tmp_path / "verdicts.jsonl", forged)
    code, _, err = cli(
        "eval",
        "--verdicts",
        tmp_path / "verdicts.jsonl",
        "--items",
        tmp_path / "items.jsonl",
        "--spec",
        "helpfulness-pairwise",
        "--n-boot",
        "200",
        "--out",
        tmp_path / "eval",
    )
    assert code == 0, err
    validation = tmp_path / "eval" / "validation.json"
    code, out, _ = cli("gate", validation, "--gates", DEFAULT)
    assert code == 0, out  # the forged verdicts pass the default gate with flying colours
    gate = read_result(validation).gate
    assert gate.external_verdicts is True and gate.loosened == [] and gate.fingerprint == FP
    assert cli("registry", "register", "helpful", "1", "--model", "m", "--validation", validation)[0] == 0
    code, _, err = cli("promote", "helpful", "1")
    refused(code, err, "its verdicts were read from a file, not scored by judgeloop", "--allow-external-verdicts")
    code, _, err = cli("promote", "helpful", "1", "--override-loosened-gate", "--reason", "wrong override")
    refused(code, err, "not scored by judgeloop")
    assert production(tmp_path) is None

    code, out, _ = cli("promote", "helpful", "1", "--allow-external-verdicts", "--reason", "verdicts from the vendor")
    assert code == 0 and "OVERRIDE: promoted despite verdicts not scored by judgeloop" in out
    event = Registry(tmp_path / "reg").history("helpful")[-1]
    assert event["allow_external_verdicts"] is True and event["reason"] == "verdicts from the vendor"
    assert "override_loosened_gate" not in event


def test_the_report_says_what_promotion_will_refuse(tmp_path):
    from eval.report import render_html, render_markdown

    result = passing_result()  # the golden result: its verdicts came from a file
    result.gate = check(result, load_gates(DEFAULT, ["--min_n=20"]))
    assert result.gate.external_verdicts and result.gate.loosened == ["min_n"]
    html, md = render_html(result), render_markdown(result)
    assert 'id="gate-loosened"' in html and 'id="gate-external"' in html
    assert "Gate loosened against configs/gates/default.yaml: min\\_n" not in md  # underscores are left alone
    assert "Gate loosened against configs/gates/default.yaml: min_n" in md
    assert "not scored by judgeloop" in md


@pytest.mark.parametrize(
    "inputs",
    [{}, {"items": {"path": "eval.jsonl", "sha256": "e" * 64}, "reviewed 0": {"path": "r.jsonl"}}],
    ids=["demo", "retrain"],
)
def test_results_scored_in_python_by_the_demo_and_retrain_promote_on_the_default_gate(tmp_path, inputs):
    """The demo and retrain score through the serving engine and build the result in Python: no verdicts
    file in ``inputs``, so nothing to override when the default gate passes."""
    reg = Registry(tmp_path / "reg")
    result = passing_result()
    result.judge.fingerprint = FP
    result.inputs = inputs
    result.gate = check(result, load_gates(DEFAULT))
    assert result.gate.passed and result.gate.loosened == [] and result.gate.external_verdicts is False
    path = tmp_path / "validation.json"
    write_result(path, result)
    promotion.register(reg, "helpful", "1", FP, "m", validation=path)
    assert promotion.promote(reg, "helpful", "1")["status"] == "production"
    assert "reason" not in reg.history("helpful")[-1]
