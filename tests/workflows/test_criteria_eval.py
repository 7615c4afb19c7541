"""`judgeloop eval all` on tiny criteria: a trained judge is validated beside its untuned base and gated,
an untrained one is reported missing with its train command; the report has a section per criterion."""

import json

import pytest

from judgeloop import main as cli_main
from tests.workflows.criteria_helpers import tiny_criteria

pytestmark = pytest.mark.slow  # two tiny training runs and transformers scoring: ~1 minute on 2 cores


def test_eval_all_reports_each_criterion_against_its_base_and_the_missing_one(tiny_model_dir, tmp_path, capsys):
    registry = tiny_criteria(
        tmp_path / "c",
        tiny_model_dir,
        names=("correctness", "coherence", "fluency"),
        train=("correctness", "coherence"),
    )
    out = tmp_path / "report"
    assert (
        cli_main(
            [
                "eval",
                "all",
                "--criteria",
                str(registry),
                "--engine",
                "transformers",
                "--out",
                str(out),
                "--n-boot",
                "200",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    summary = json.loads((out / "criteria.json").read_text())
    rows = {r["criterion"]: r for r in summary["rows"]}
    assert rows["fluency"]["status"] == "missing"
    assert rows["fluency"]["train_command"].startswith("judgeloop train ") and "MISSING" in printed
    for name, metric in (("correctness", "accuracy"), ("coherence", "accuracy")):
        r = rows[name]
        assert r["status"] == "validated" and r["metric"] == metric and r["n"] == 24
        assert r["gate"] in ("PASS", "FAIL") and r["judge"]["value"] is not None and r["base"]["value"] is not None
        assert r["judge_minus_base"] is not None
        assert r["ceiling"]["annotators"] == 3 and r["ceiling"]["base"] is not None  # 3 annotators: a ceiling
        judge = json.loads((out / name / "judge" / "validation.json").read_text())
        base = json.loads((out / name / "base" / "validation.json").read_text())
        assert judge["judge"]["fingerprint"] != base["judge"]["fingerprint"]
        assert judge["comparison"]["incumbent"]["fingerprint"] == base["judge"]["fingerprint"]
        assert judge["gate"]["passed"] == (r["gate"] == "PASS")
        assert (out / name / "report" / "report.html").exists()
    html = (out / "criteria.html").read_text()
    md = (out / "criteria.md").read_text()
    for name in rows:
        assert f'id="{name}"' in html and f"### {name} " in md
    assert 'id="criteria-table"' in html and "untuned base" in html and "MISSING" in md
    # a rerun reuses the verdicts scored by the same judges
    mtime = (out / "coherence" / "judge" / "verdicts.jsonl").stat().st_mtime_ns
    assert (
        cli_main(
            [
                "eval",
                "all",
                "--criteria",
                str(registry),
                "--engine",
                "transformers",
                "--out",
                str(out),
                "--n-boot",
                "200",
                "--only",
                "coherence",
            ]
        )
        == 0
    )
    assert (out / "coherence" / "judge" / "verdicts.jsonl").stat().st_mtime_ns == mtime
