"""`judgeloop evaluate --label-sample N`: a seeded sample stratified by criterion and system (or pair), exported
through the review export; people label it in Label Studio's format; the labels come back through
`judgeloop review import` or straight into `--labels`, and correct the figures."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from contextlib import contextmanager

import pytest

import judgeloop
from tests.workflows.evaluate.helpers import QUALITY, FakeJudge, _sys_of, write_responses
from workflows.evaluate import cli
from workflows.evaluate.labelsample import allocate
from workflows.evaluate.result import Evaluation

PAIR, POINT = "helpfulness-pairwise", "summary-coherence"


@pytest.fixture
def judges(monkeypatch):
    """A pairwise judge biased towards response A and a pointwise judge that overrates v1 (people are not)."""

    @contextmanager
    def fake_open(names, engine, serve_config):
        yield [
            FakeJudge(n, bias=1.5).handle() if n == PAIR else FakeJudge(n, shift={"v1": 0.6}).handle() for n in names
        ]

    monkeypatch.setattr(cli, "open_judges", fake_open)


def _run(tmp_path, out, *args) -> int:
    r = tmp_path / "r.jsonl"
    if not r.exists():
        write_responses(r, n_prompts=60)
    return judgeloop.main(
        ["evaluate", "--responses", str(r), "--judge", PAIR, "--judge", POINT, "--baseline", "v1", "--out",
         str(tmp_path / out), "--no-history", "--no-report", "--n-boot", "200", *args]
    )  # fmt: skip


def _tasks(tmp_path, out, crit) -> list[dict]:
    return json.loads((tmp_path / out / "label-sample" / crit / "review-tasks.json").read_text())


def _manifest(tmp_path, out, crit) -> dict:
    return json.loads((tmp_path / out / "label-sample" / crit / "review-manifest.json").read_text())


def _human(task: dict, item: dict) -> str:
    """What a person answers: the truth by QUALITY, no bias to either side."""
    d = task["data"]
    if "response_a" in d:
        qa, qb = QUALITY[_sys_of(d["response_a"])], QUALITY[_sys_of(d["response_b"])]
        return "A" if qa > qb else ("B" if qb > qa else "tie")
    return str(round(2.5 + 2 * QUALITY[_sys_of(d["response"])]))


def _label_in_label_studio(tasks: list[dict], manifest: dict) -> list[dict]:
    """The tasks as Label Studio exports them once labelled: an id, and one annotation per task."""
    return [
        {
            "id": 1000 + k,
            "data": t["data"],
            "annotations": [
                {
                    "id": 5000 + k,
                    "completed_by": 1,
                    "was_cancelled": False,
                    "result": [
                        {
                            "from_name": "label",
                            "to_name": "instruction",
                            "type": "choices",
                            "value": {"choices": [_human(t, manifest["items"][t["data"]["review_id"]]["item"])]},
                        }
                    ],
                }
            ],
        }
        for k, t in enumerate(tasks)
    ]


def test_allocation_is_even_and_gives_away_what_a_small_stratum_lacks():
    assert allocate([100, 100, 100], 30, 0) == [10, 10, 10]
    assert sorted(allocate([100, 100, 100], 31, 0)) == [10, 10, 11]
    assert allocate([3, 100, 100], 30, 0) == [3, 14, 13] or allocate([3, 100, 100], 30, 0) == [3, 13, 14]
    assert allocate([3, 4], 30, 0) == [3, 4]


def test_label_sample_round_trip_corrects_the_figures(tmp_path, judges, capsys):
    assert _run(tmp_path, "out", "--label-sample", "50", "--seed", "7") == 0
    printed = capsys.readouterr().out
    assert f"{PAIR}: 20 item(s) to label (v1 vs v2 10, v1 vs v3 10)" in printed
    assert f"{POINT}: 30 item(s) to label (v1 10, v2 10, v3 10)" in printed
    ev = Evaluation.read(tmp_path / "out" / "evaluation.json")
    assert not ev.corrected and ev.notice.startswith("NOT CORRECTED")

    # stratified by criterion and system (pair); the task ids are the run's item ids
    items = {
        c: {json.loads(x)["id"] for x in (tmp_path / "out" / "items" / f"{c}.jsonl").open()} for c in (PAIR, POINT)
    }
    for crit, strata in ((PAIR, {"v1 vs v2": 10, "v1 vs v3": 10}), (POINT, {"v1": 10, "v2": 10, "v3": 10})):
        m = _manifest(tmp_path, "out", crit)
        assert Counter(e["stratum"] for e in m["items"].values()) == strata
        assert m["strata"] == dict.fromkeys(strata, 60) and m["evaluate"] == {**m["evaluate"], "n": 50, "seed": 7}
        ids = [t["data"]["review_id"] for t in _tasks(tmp_path, "out", crit)]
        assert set(ids) == set(m["items"]) and set(ids) <= items[crit] and len(set(ids)) == len(ids)
        for t in _tasks(tmp_path, "out", crit):  # reviewers see the texts, never the judge's verdict
            assert "verdict" not in t["data"] and t["data"]["instruction"].startswith("question")
        header = (tmp_path / "out" / "label-sample" / crit / "review.csv").read_text().splitlines()[0]
        assert header.startswith("review_id,instruction") and header.endswith(",label")

    # seeded: the same seed draws the same sample, another seed another one
    assert _run(tmp_path, "same", "--label-sample", "50", "--seed", "7") == 0
    assert _run(tmp_path, "other", "--label-sample", "50", "--seed", "8") == 0
    for crit in (PAIR, POINT):
        assert _manifest(tmp_path, "same", crit)["items"].keys() == _manifest(tmp_path, "out", crit)["items"].keys()
        assert _manifest(tmp_path, "other", crit)["items"].keys() != _manifest(tmp_path, "out", crit)["items"].keys()

    # a rerun keeps the sample (people may be labelling it); another N in the same OUT is refused before scoring
    assert _run(tmp_path, "out", "--label-sample", "50", "--seed", "7") == 0
    assert "already in" in capsys.readouterr().out
    assert _run(tmp_path, "out", "--label-sample", "40", "--seed", "7") == 2
    err = capsys.readouterr().err
    assert "field '--label-sample'" in err and "earlier label sample (N=50, seed 7)" in err

    # people label in Label Studio and export; the files land wherever the browser saves them
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for crit in (PAIR, POINT):
        labelled = _label_in_label_studio(_tasks(tmp_path, "out", crit), _manifest(tmp_path, "out", crit))
        (downloads / f"{crit}.json").write_text(json.dumps(labelled, indent=2))
    # the pairwise labels through `judgeloop review import`, the pointwise export straight into --labels
    sample = tmp_path / "out" / "label-sample" / PAIR
    reviewed = tmp_path / "pair-labels.jsonl"
    args = ["review", "import", str(downloads / f"{PAIR}.json"), "--spec", PAIR]
    assert judgeloop.main([*args, "--manifest", str(sample / "review-manifest.json"), "--out", str(reviewed)]) == 0
    assert "wrote 20 reviewed items" in capsys.readouterr().out
    rc = _run(tmp_path, "out", "--labels", str(reviewed), "--labels", str(downloads / f"{POINT}.json"))
    assert rc == 0
    after = Evaluation.read(tmp_path / "out" / "evaluation.json")
    assert after.corrected and after.notice.startswith("Corrected") and after.labels["items"] == {PAIR: 20, POINT: 30}
    pair, point = after.criteria
    before_pair, before_point = ev.criteria
    for w, w0 in zip(pair.win_rates, before_pair.win_rates):
        assert w.judge.estimate == w0.judge.estimate  # the same verdicts, resumed
        c = w.correction
        assert c.n_labelled == 10 and c.human.n == 10
        assert c.corrected.estimate != pytest.approx(w.judge.estimate, abs=0.01)
    for s, s0 in zip(point.systems, before_point.systems):
        assert s.judge.estimate == s0.judge.estimate and s.correction.n_labelled == 10
    v1 = point.systems[0]  # the judge overrates v1 by 1.2 points; people do not: the correction moves it down
    assert v1.correction.corrected.estimate < v1.judge.estimate - 0.5

    # the Label Studio export beside its manifest works as well; a foreign export is refused with its field
    shutil.copy(downloads / f"{PAIR}.json", sample / "export.json")
    assert _run(tmp_path, "out", "--labels", str(sample / "export.json"), "--no-report") == 0
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps([{"data": {"review_id": "live-0123"}, "annotations": []}]))
    assert _run(tmp_path, "out", "--labels", str(foreign)) == 2
    assert "field 'review_id'" in capsys.readouterr().err
