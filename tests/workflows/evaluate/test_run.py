"""`judgeloop evaluate` end to end with fake judges (no model): figures, correction, bad input, resume,
history and the regression gate."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest

import judgeloop
from tests.workflows.evaluate.helpers import FakeJudge, human_labels_for, write_responses
from workflows.evaluate import cli
from workflows.evaluate.result import Evaluation


@pytest.fixture
def judges(monkeypatch):
    """The judges `evaluate` opens: fakes, keyed by the --judge argument."""
    made: dict[str, FakeJudge] = {}

    @contextmanager
    def fake_open(names, engine, serve_config):
        yield [made.setdefault(n, FakeJudge(n)).handle() for n in names]

    monkeypatch.setattr(cli, "open_judges", fake_open)
    return made


def _run(tmp_path, *args) -> int:
    db = tmp_path / "history.db"
    return judgeloop.main(["evaluate", "--out", str(tmp_path / "out"), "--db", str(db), "--n-boot", "200", *args])


def _ev(tmp_path) -> Evaluation:
    return Evaluation.read(tmp_path / "out" / "evaluation.json")


def test_pairwise_against_a_baseline_uncorrected(tmp_path, judges, capsys):
    r = write_responses(tmp_path / "r.jsonl")
    assert _run(tmp_path, "--responses", str(r), "--judge", "helpfulness-pairwise", "--baseline", "v1") == 0
    ev = _ev(tmp_path)
    assert ev.schema_version == 1 and not ev.corrected
    assert ev.notice.startswith("NOT CORRECTED") and "validated on" in ev.notice
    (c,) = ev.criteria
    assert c.metric == "win_rate" and c.mode == "baseline" and c.n_prompts == 40
    wr = {w.system: w for w in c.win_rates}
    assert set(wr) == {"v2", "v3"} and all(w.opponent == "v1" for w in wr.values())
    for w in wr.values():
        assert w.wins + w.ties + w.losses == 40
        expect = (w.wins + 0.5 * w.ties) / 40
        assert w.judge.estimate == pytest.approx(expect)
        assert w.judge.lo <= w.judge.estimate <= w.judge.hi
        assert w.tie_rate == pytest.approx(w.ties / 40)
    assert wr["v3"].judge.estimate > wr["v2"].judge.estimate > 0.5
    assert [x.system for x in c.ranking] == ["v3", "v2", "v1"]
    assert next(x for x in c.ranking if x.system == "v1").strength.estimate == 0  # the baseline anchors the scale
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("NOT CORRECTED")
    assert (tmp_path / "out" / "report" / "evaluation.html").exists()


def test_all_pairs_and_two_criteria_give_one_scorecard(tmp_path, judges):
    r = write_responses(tmp_path / "r.jsonl")
    rc = _run(
        tmp_path,
        "--responses",
        str(r),
        "--judge",
        "helpfulness-pairwise",
        "--judge",
        "summary-coherence",
        "--all-pairs",
    )
    assert rc == 0
    ev = _ev(tmp_path)
    pair, point = ev.criteria
    assert pair.mode == "all_pairs" and len(pair.win_rates) == 3 and len(pair.ranking) == 3
    assert point.metric == "mean_score" and [s.system for s in point.systems] == ["v1", "v2", "v3"]
    assert len(point.paired_differences) == 3
    d = next(x for x in point.paired_differences if (x.system, x.other) == ("v1", "v3"))
    assert d.difference.hi < 0 and d.p_not_better > 0.9
    md = (tmp_path / "out" / "report" / "evaluation.md").read_text()
    assert "## Scorecard" in md and "helpfulness-pairwise" in md and "summary-coherence" in md


def test_human_labels_correct_the_judges_bias(tmp_path, monkeypatch):
    """A judge biased towards response A; people are not. The corrected win rates stand beside the judge's."""
    made = {}

    @contextmanager
    def fake_open(names, engine, serve_config):
        yield [made.setdefault(n, FakeJudge(n, bias=1.5)).handle() for n in names]

    monkeypatch.setattr(cli, "open_judges", fake_open)
    r = write_responses(tmp_path / "r.jsonl", n_prompts=200)
    labels = human_labels_for(tmp_path / "labels.jsonl", r, frac=0.3)
    assert (
        _run(
            tmp_path,
            "--responses",
            str(r),
            "--judge",
            "helpfulness-pairwise",
            "--baseline",
            "v1",
            "--labels",
            str(labels),
        )
        == 0
    )
    ev = _ev(tmp_path)
    assert ev.corrected and ev.notice.startswith("Corrected") and ev.labels["items"]["helpfulness-pairwise"] > 0
    for w in ev.criteria[0].win_rates:
        c = w.correction
        assert c.n_labelled > 20 and c.corrected.lo <= c.corrected.estimate <= c.corrected.hi
        assert c.human.n == c.n_labelled and c.n_effective is not None and c.n_effective > 0
    rc = ev.criteria[0].ranking_correction  # three systems: the Bradley-Terry ranking is corrected too
    assert rc is not None and rc.n_labelled == sum(w.correction.n_labelled for w in ev.criteria[0].win_rates)
    assert [r.system for r in rc.corrected][0] == "v3" and {r.system for r in rc.human} == {"v1", "v2", "v3"}
    v1 = next(r for r in rc.corrected if r.system == "v1").strength
    assert v1.estimate == v1.lo == v1.hi == 0  # anchored at the baseline, as the judge's ranking
    html = (tmp_path / "out" / "report" / "evaluation.html").read_text()
    assert "corrected (PPI++)" in html and "human only" in html and "Ranking corrected with" in html
    assert "Corrected with" in (tmp_path / "out" / "report" / "evaluation.md").read_text()


def _err(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("judgeloop: error")]


def test_duplicate_rows_name_file_line_and_field(tmp_path, judges, capsys):
    extra = [{"prompt_id": "p0", "system": "v2", "response": "again", "instruction": "question 0"}]
    r = write_responses(tmp_path / "r.jsonl", n_prompts=3, extra_lines=extra)
    assert _run(tmp_path, "--responses", str(r), "--judge", "helpfulness-pairwise", "--baseline", "v1") == 2
    (line,) = _err(capsys)
    assert f"{r}:10: field 'prompt_id'" in line and "duplicate response of system 'v2' to prompt 'p0'" in line
    assert "first on line 2" in line


def test_unknown_baseline(tmp_path, judges, capsys):
    r = write_responses(tmp_path / "r.jsonl", n_prompts=3)
    assert _run(tmp_path, "--responses", str(r), "--judge", "helpfulness-pairwise", "--baseline", "v9") == 2
    (line,) = _err(capsys)
    assert "field '--baseline'" in line and "unknown baseline system 'v9'" in line and "v1, v2, v3" in line
    assert not judges  # nothing was started


def test_missing_prompts_evaluate_the_common_ones_and_say_so(tmp_path, judges):
    r = write_responses(tmp_path / "r.jsonl", n_prompts=10, skip={("p3", "v2"), ("p7", "v2")})
    assert _run(tmp_path, "--responses", str(r), "--judge", "summary-coherence") == 0
    ev = _ev(tmp_path)
    assert ev.dataset.missing == {"v2": ["p3", "p7"]} and ev.dataset.n_common == 8
    assert any("'v2' lacks 2 prompt(s) (p3, p7)" in w for w in ev.warnings)
    assert ev.criteria[0].n_prompts == 8
    assert "lacks 2 prompt(s)" in (tmp_path / "out" / "report" / "evaluation.html").read_text()


def test_labels_for_items_not_in_the_run(tmp_path, judges, capsys):
    r = write_responses(tmp_path / "r.jsonl", n_prompts=5)
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"id": "p0::v1::v2", "label": "A"}\n{"id": "p99::v1::v2", "label": "A"}\n')
    assert (
        _run(
            tmp_path,
            "--responses",
            str(r),
            "--judge",
            "helpfulness-pairwise",
            "--baseline",
            "v1",
            "--labels",
            str(labels),
        )
        == 2
    )
    (line,) = _err(capsys)
    assert f"{labels}:2: field 'id'" in line and "'p99::v1::v2' is not in this run's items" in line


def test_labels_outside_the_judges_label_space(tmp_path, judges, capsys):
    r = write_responses(tmp_path / "r.jsonl", n_prompts=5)
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"id": "p0::v1", "labels": [3, 7]}\n')
    assert _run(tmp_path, "--responses", str(r), "--judge", "summary-coherence", "--labels", str(labels)) == 2
    (line,) = _err(capsys)
    assert (
        f"{labels}:1: field 'labels[1]'" in line and "outside the label range" in line and "summary-coherence" in line
    )


def test_a_killed_run_resumes_and_scores_only_the_rest(tmp_path, monkeypatch, capsys):
    judge = FakeJudge("summary-coherence", fail_after=64)

    @contextmanager
    def fake_open(names, engine, serve_config):
        yield [judge.handle()]

    monkeypatch.setattr(cli, "open_judges", fake_open)
    r = write_responses(tmp_path / "r.jsonl", n_prompts=100)  # 300 items
    assert _run(tmp_path, "--responses", str(r), "--judge", "summary-coherence") == 3  # engine unavailable
    assert "no engine reachable" in capsys.readouterr().err
    (vfile,) = (tmp_path / "out" / "verdicts").glob("*.jsonl")  # beside it: the output lock
    kept = len(vfile.read_text().splitlines())
    assert kept >= 64
    judge.fail_after, judge.scored = None, 0
    assert _run(tmp_path, "--responses", str(r), "--judge", "summary-coherence") == 0
    assert judge.scored == 300 - kept  # only what was missing
    assert len(vfile.read_text().splitlines()) == 300
    judge.scored = 0
    assert _run(tmp_path, "--responses", str(r), "--judge", "summary-coherence") == 0
    assert judge.scored == 0  # a finished run rescoring nothing


def test_history_lists_runs_and_against_gates_a_regression(tmp_path, monkeypatch, capsys):
    shift = {}

    @contextmanager
    def fake_open(names, engine, serve_config):
        yield [FakeJudge(n, fingerprint="cd" * 32, shift=dict(shift)).handle() for n in names]

    monkeypatch.setattr(cli, "open_judges", fake_open)
    r = write_responses(tmp_path / "r.jsonl", n_prompts=150)
    args = ["--responses", str(r), "--judge", "summary-coherence"]
    assert _run(tmp_path, *args) == 0
    # the same systems again: no regression
    assert _run(tmp_path, *args, "--out", str(tmp_path / "out2"), "--against", "last", "--system", "v3") == 0
    # v3 got worse: a significant drop, exit 1
    shift["v3"] = -0.5
    rc = _run(
        tmp_path, *args, "--out", str(tmp_path / "out3"), "--against", "last", "--system", "v3", "--max-drop", "0.1"
    )
    captured = capsys.readouterr()
    assert rc == 1 and "REGRESSION: summary-coherence v3" in captured.err
    comp = json.loads((tmp_path / "out3" / "comparison.json").read_text())
    assert comp[0]["difference"]["hi"] < -0.1 and comp[0]["n_shared"] == 150
    assert judgeloop.main(["evaluate", "history", "--db", str(tmp_path / "history.db")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and "summary-coherence" in lines[1]
    assert _run(tmp_path, *args, "--against", "nosuchrun") == 2
    assert "field '--against'" in _err(capsys)[0]
