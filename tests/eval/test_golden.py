"""validation.json files written before the result was a typed model still load, round-trip, gate and
report as they did; the committed JSON Schema is the model's; broken files are located errors.

tests/eval/golden/*-v1.* were written by the code at commit b678963 (tests/eval/golden/make_v1.py says how).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from markupsafe import escape

import judgeloop
from data.errors import DataError
from data.paths import REPO_ROOT
from eval.gate import GateConfig, check, read_result, write_result
from eval.report import render_html, render_markdown, summary
from eval.result import Gate, ValidationResult, schema_text

GOLDEN = Path(__file__).parent / "golden"
KINDS = ("pairwise", "binary")
SCHEMA = REPO_ROOT / "docs" / "schemas" / "validation.schema.json"


def golden(kind: str) -> Path:
    return GOLDEN / f"validation-{kind}-v1.json"


@pytest.mark.parametrize("kind", KINDS)
def test_an_old_file_loads_and_round_trips(kind, tmp_path):
    result = read_result(golden(kind))
    assert isinstance(result, ValidationResult) and result.schema_version == 1
    old = json.loads(golden(kind).read_text())
    assert json.loads(result.to_json()) == old  # the same fields and values, nothing added or lost
    write_result(tmp_path / "v.json", result)
    again = read_result(tmp_path / "v.json")
    assert again == result and json.loads((tmp_path / "v.json").read_text()) == old


def test_old_files_read_by_attribute():
    pairwise, binary = read_result(golden("pairwise")), read_result(golden("binary"))
    assert pairwise.spec.kind == "pairwise" and pairwise.dataset.name == "constructed"
    assert pairwise.human_ceiling.annotators == 3 and pairwise.comparison.incumbent.fingerprint == "0" * 64
    assert pairwise.length_control.beyond_length.n == 35 and pairwise.calibration.intervals.ece.value is not None
    assert pairwise.inputs["verdicts"].path == "judge.jsonl" and pairwise.gate.rules[0].passed
    assert pairwise.reference_judges["ref"].judge_minus_reference.mcnemar.only_a_correct == 10
    assert binary.human_ceiling is None and binary.length_control is None and binary.comparison is None
    assert not binary.bias.measured and binary.calibration.ece is None and binary.calibration.note
    assert binary.injection.flip_rate.k == 8 and binary.injection.by_template["fake-rubric"].flip_rate.n == 4
    assert binary.gate is None and binary.inputs == {} and binary.errors.error_kinds == {"timeout": 1}


NEWER = {"checked", "baseline", "loosened", "external_verdicts"}  # the timestamp; fields added since v1


def test_the_gate_rules_as_before():
    result = read_result(golden("pairwise"))
    old = result.gate
    again = check(result, GateConfig(**old.thresholds), config_path=old.config)
    assert again.model_dump(exclude=NEWER) == old.model_dump(exclude=NEWER)
    # v1 gated it with --min_n=20 on a file of verdicts: both are recorded now
    assert again.loosened == ["min_n"] and again.baseline == "configs/gates/default.yaml"
    assert again.external_verdicts is True

    binary = read_result(golden("binary"))
    old = Gate.model_validate_json((GOLDEN / "gate-binary-v1.json").read_text())
    again = check(binary, GateConfig())
    assert again.model_dump(exclude=NEWER) == old.model_dump(exclude=NEWER)
    assert again.loosened == [] and again.external_verdicts is False  # the defaults; no inputs recorded


def test_the_gate_cli_on_an_old_file(tmp_path, capsys):
    path = tmp_path / "validation.json"
    path.write_text(golden("binary").read_text())
    assert judgeloop.main(["gate", str(path), "--min_n=20"]) == 1
    assert "FAIL  errors" in capsys.readouterr().out
    gated = read_result(path)
    assert gated.gate.passed is False and gated.injection == read_result(golden("binary")).injection


@pytest.mark.parametrize("kind", KINDS)
def test_the_report_as_before(kind):
    result = read_result(golden(kind))
    lines = json.loads((GOLDEN / f"summary-{kind}-v1.json").read_text())
    assert summary(result) == lines
    assert render_markdown(result) == (GOLDEN / f"report-{kind}-v1.md").read_text()
    html = render_html(result)
    assert all(line in html or str(escape(line)) in html for line in lines)  # escaped or not, each sentence


def _flat(data, path="") -> dict:
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in _flat(value, f"{path}.{key}").items()}
    if isinstance(data, list):
        return {k: v for i, value in enumerate(data) for k, v in _flat(value, f"{path}[{i}]").items()}
    return {path: data}


def _same(new: dict, old: dict, skip: tuple[str, ...]) -> None:
    """Equal but for the fields in ``skip`` (path prefixes) and the last digit of a rounded float."""
    new, old = ({k: v for k, v in _flat(d).items() if not k.startswith(skip)} for d in (new, old))
    assert new.keys() == old.keys()
    for key, value in old.items():
        assert new[key] == (pytest.approx(value, rel=1e-5, abs=2e-6) if isinstance(value, float) else value), key


def test_the_current_code_writes_what_the_old_code_wrote(tmp_path, monkeypatch):
    """make_v1.py, run on this checkout: the same results, gate records, report sentences and Markdown
    (timestamps, git commit, library versions and the gate's copy of the config aside)."""
    from tests.eval.golden import make_v1

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JUDGELOOP_REGISTRY", str(tmp_path / "registry"))
    out = tmp_path / "out"
    out.mkdir()
    make_v1.pairwise(out)
    make_v1.binary(out)
    for kind in KINDS:
        new, old = (json.loads((d / f"validation-{kind}-v1.json").read_text()) for d in (out, GOLDEN))
        newer = (".gate.baseline", ".gate.loosened", ".gate.external_verdicts")  # added since v1
        newer += (".gate.judge.engine", ".judge.engine", ".comparison.incumbent.engine")
        newer += (".reference_judges.ref.slices",)  # a reference judge's accuracy per slice: added 2026-12-07
        # the shipped specs changed since v1 (their prompt budget is the model's: max_prompt_tokens null)
        # the verdict files are written by this run with today's pydantic, whose JSON differs from v1's by bytes
        # (not values): their hashes are provenance, not results
        newer += (".spec.sha256", ".inputs.verdicts.sha256", ".inputs.reference ", ".inputs.incumbent.sha256")
        _same(new, old, (".created", ".provenance", ".gate.checked", ".gate.config_sha256", ".gate.thresholds", *newer))
        assert json.loads((out / f"summary-{kind}-v1.json").read_text()) == json.loads(
            (GOLDEN / f"summary-{kind}-v1.json").read_text()
        )
        new, old = ((d / f"report-{kind}-v1.md").read_text().splitlines() for d in (out, GOLDEN))
        # provenance changes; the notes on a loosened gate and on verdicts from a file were added since v1
        skip = ("- git commit ", "- versions: ", "Gate loosened against ", "The verdicts were read from a file")
        skip += ("- spec ", "- verdicts: ", "- reference ref: ", "- incumbent: ")  # the hashes skipped above
        assert [x for x in new if x and not x.startswith(skip)] == [x for x in old if x and not x.startswith(skip)]
    new, old = (json.loads((d / "gate-binary-v1.json").read_text()) for d in (out, GOLDEN))
    _same(
        new,
        old,
        (".checked", ".config_sha256", ".thresholds", ".baseline", ".loosened", ".external_verdicts", ".judge.engine"),
    )


def test_the_committed_schema_is_the_models():
    assert json.loads(SCHEMA.read_text()) == json.loads(schema_text()), (
        "docs/schemas/validation.schema.json is out of date: "
        "python -m eval.result --schema > docs/schemas/validation.schema.json"
    )
    out = subprocess.run(
        [sys.executable, "-m", "eval.result", "--schema"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout == schema_text()


@pytest.mark.parametrize("kind", KINDS)
def test_old_files_match_the_schema(kind):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(json.loads(golden(kind).read_text()), json.loads(SCHEMA.read_text()))


def _broken(tmp_path, edit) -> str:
    data = json.loads(golden("pairwise").read_text())
    edit(data)
    path = tmp_path / "v.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError) as err:
        read_result(path)
    return str(err.value)


def test_a_broken_file_is_a_located_error(tmp_path):
    text = _broken(tmp_path, lambda d: d["metrics"]["accuracy"].update(value="high"))
    assert text.startswith(f"{tmp_path / 'v.json'}: field 'metrics.accuracy.value'") and "\n" not in text
    text = _broken(tmp_path, lambda d: d["calibration"].pop("n"))
    assert "field 'calibration.n': is missing" in text
    text = _broken(tmp_path, lambda d: d["bias"].update(swap_consistancy=0.9))
    assert "field 'bias.swap_consistancy': is not a known field" in text
    text = _broken(tmp_path, lambda d: d.pop("errors"))
    assert "not a validation result: missing errors" in text
    text = _broken(tmp_path, lambda d: d.update(schema_version=2))
    assert "field 'schema_version': schema_version 2 is newer" in text
    text = _broken(tmp_path, lambda d: d["calibration"].update(ece=float("nan")))  # json.loads reads NaN
    assert "field 'calibration.ece': Input should be a finite number" in text


def test_non_finite_figures_are_refused():
    result = read_result(golden("pairwise"))
    with pytest.raises(ValueError, match="finite"):
        result.metrics["accuracy"].value = float("nan")
    result.baselines["always_first"] = float("inf")  # a dict entry is not validated on assignment ...
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        result.to_json()  # ... but the file never gets one (allow_nan=False, as before)
