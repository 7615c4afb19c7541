"""The judge registry and promotion: promotion only with a passing gate for that exact fingerprint; rollback."""

from __future__ import annotations

import json

import pytest

import judgeloop
from data.errors import UnknownNameError
from data.paths import CONFIGS_DIR
from eval.gate import check, load_gates, write_result
from judge.registry import Registry, RegistryError, registry_root, resolve
from tests.eval.test_gate import BREAKERS, passing_result
from workflows import promotion

FP1, FP2, FP3 = "1" * 64, "2" * 64, "3" * 64


def validation(tmp_path, fingerprint: str, passed: bool = True, gate_for: str | None = None, name="v") -> str:
    """A gated validation.json for ``fingerprint`` (its gate recorded for ``gate_for`` if given), its
    verdicts scored by judgeloop (`judgeloop eval --judge` records the engine)."""
    result = passing_result()
    result.judge.fingerprint = fingerprint
    result.inputs["verdicts"].scored_with = "vllm"
    if not passed:
        BREAKERS["ece"](result)
    result.gate = check(result, load_gates(CONFIGS_DIR / "gates" / "default.yaml"))
    if gate_for:
        result.gate.fingerprint = gate_for
    path = tmp_path / f"{name}-{fingerprint[:4]}-{passed}.json"
    write_result(path, result)
    return str(path)


@pytest.fixture
def reg(tmp_path):
    return Registry(tmp_path / "registry")


def test_promote_refuses_without_a_passing_gate_for_that_fingerprint(reg, tmp_path):
    promotion.register(reg, "helpful", "1", FP1, "models/m1")
    with pytest.raises(RegistryError, match="no passing gate for fingerprint 1111"):
        promotion.promote(reg, "helpful", "1")
    promotion.attach(reg, "helpful", "1", validation(tmp_path, FP1, passed=False))
    with pytest.raises(RegistryError, match="refusing to promote"):
        promotion.promote(reg, "helpful", "1")
    # a validation of another judge cannot be attached ...
    with pytest.raises(RegistryError, match="fingerprint 2222"):
        promotion.attach(reg, "helpful", "1", validation(tmp_path, FP2))
    # ... and a gate that was run for another fingerprint does not count
    promotion.attach(reg, "helpful", "1", validation(tmp_path, FP1, gate_for=FP2))
    with pytest.raises(RegistryError):
        promotion.promote(reg, "helpful", "1")
    assert reg.resolve("helpful", "1")["status"] == "candidate"
    with pytest.raises(RegistryError, match="no production version"):
        reg.resolve("helpful", "production")


def test_an_edited_copy_does_not_count(reg, tmp_path):
    promotion.register(reg, "helpful", "1", FP1, "models/m1", validation=validation(tmp_path, FP1, passed=False))
    stored = reg.root / reg.resolve("helpful", "1")["validations"][0]["file"]
    result = json.loads(stored.read_text())
    result["gate"]["passed"] = True
    stored.write_text(json.dumps(result))
    with pytest.raises(RegistryError):
        promotion.promote(reg, "helpful", "1")


def test_promote_then_rollback(reg, tmp_path):
    for version, fp in (("1", FP1), ("2", FP2), ("3", FP3)):
        promotion.register(
            reg,
            "helpful",
            version,
            fp,
            f"models/m{version}",
            adapter=f"adapters/a{version}",
            spec="helpfulness-pairwise",
            validation=validation(tmp_path, fp),
        )
    promotion.promote(reg, "helpful", "1")
    promotion.promote(reg, "helpful", "2")
    assert reg.resolve("helpful")["version"] == "2"
    assert reg.resolve("helpful", "1")["status"] == "retired"
    assert reg.rollback("helpful")["version"] == "1"
    assert resolve("helpful", "production", reg.root)["fingerprint"] == FP1
    assert reg.resolve("helpful", "2")["status"] == "retired"
    promotion.promote(reg, "helpful", "3")
    assert reg.rollback("helpful")["version"] == "1"  # 2 was rolled back earlier: not a target
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        reg.rollback("helpful")
    actions = [e["action"] for e in reg.history("helpful")]
    assert actions.count("promote") == 3 and actions.count("rollback") == 2
    assert all("time" in e for e in reg.history("helpful"))
    trend = reg.trend("helpful")
    assert [t["version"] for t in trend] == ["1", "2", "3"] and trend[0]["value"] == 0.82


def test_names_versions_and_lookup(reg, tmp_path, monkeypatch):
    promotion.register(reg, "helpful", "1", FP1, "m")
    with pytest.raises(RegistryError, match="already has version '1'"):
        promotion.register(reg, "helpful", "1", FP1, "m")
    with pytest.raises(UnknownNameError, match="did you mean 'helpful'"):
        reg.resolve("helpfull")
    assert reg.find_fingerprint(FP1)["version"] == "1"
    monkeypatch.setenv("JUDGELOOP_REGISTRY", str(tmp_path / "elsewhere"))
    assert registry_root() == tmp_path / "elsewhere"
    assert registry_root("given") == registry_root("given")


def test_cli_promote_refuses_with_exit_2_then_promotes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("JUDGELOOP_REGISTRY", str(tmp_path / "reg"))
    ok1, ok2 = validation(tmp_path, FP1), validation(tmp_path, FP2)
    assert judgeloop.main(["registry", "register", "helpful", "1", "--model", "m1", "--fingerprint", FP1]) == 0
    assert judgeloop.main(["promote", "helpful", "1"]) == 2
    assert "refusing to promote helpful 1" in capsys.readouterr().err
    assert judgeloop.main(["promote", "helpful", "1", "--validation", ok1]) == 0
    assert judgeloop.main(["registry", "register", "helpful", "2", "--model", "m2", "--validation", ok2]) == 0
    assert judgeloop.main(["promote", "helpful", "2"]) == 0
    assert judgeloop.main(["rollback", "helpful"]) == 0
    assert "helpful 1" in capsys.readouterr().out
    assert judgeloop.main(["registry", "show", "helpful"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "1"
    assert judgeloop.main(["registry", "list"]) == 0
    assert "gate passed" in capsys.readouterr().out
    assert judgeloop.main(["registry", "history", "helpful", "--registry", str(tmp_path / "reg")]) == 0
    assert "rollback" in capsys.readouterr().out


@pytest.mark.parametrize("order", [["10", "9"], ["b", "a"], ["a", "b"]])
def test_latest_is_the_last_registered_even_within_the_same_second(tmp_path, capsys, monkeypatch, order):
    """``registered`` has one-second resolution: two versions registered in the same second tie on it."""
    monkeypatch.setattr("judge.registry._now", lambda: "2026-12-01T12:00:00Z")
    monkeypatch.setenv("JUDGELOOP_REGISTRY", str(tmp_path / "reg"))
    for version, fingerprint in zip(order, (FP1, FP2)):
        argv = ["registry", "register", "helpful", version, "--model", "m", "--fingerprint", fingerprint]
        assert judgeloop.main(argv) == 0
    capsys.readouterr()
    assert judgeloop.main(["registry", "show", "helpful", "latest"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["version"], shown["fingerprint"]) == (order[1], FP2)
    reg = Registry(tmp_path / "reg")
    for version in order:
        promotion.attach(reg, "helpful", version, validation(tmp_path, FP1 if version == order[0] else FP2))
    assert [t["version"] for t in reg.trend("helpful")] == order


def test_a_record_written_before_seq_keeps_its_order(reg):
    """Records without ``seq`` (written before it existed): the order of the versions in the file."""
    for version, fp in (("2", FP1), ("1", FP2)):
        promotion.register(reg, "helpful", version, fp, "m")
    path = reg.root / "helpful" / "versions.json"
    record = json.loads(path.read_text())
    for entry in record["versions"].values():
        entry.pop("seq")
        entry["registered"] = "2026-12-01T12:00:00Z"
    path.write_text(json.dumps(record))
    assert reg.resolve("helpful", "latest")["version"] == "1"
    promotion.register(reg, "helpful", "0", FP3, "m")  # a new version after the old ones
    assert reg.resolve("helpful", "0")["seq"] == 2 and reg.resolve("helpful", "latest")["version"] == "0"
