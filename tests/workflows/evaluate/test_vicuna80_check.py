"""The vicuna80-human real check's pipeline on the mirror with a fake judge (the real figure needs a model:
python -m benchmarks.evaluate_vicuna80)."""

from __future__ import annotations

import json
from contextlib import contextmanager

import benchmarks.evaluate_vicuna80 as check
from tests.workflows.evaluate.helpers import FakeJudge


def test_check_runs_on_the_mirror_with_a_fake_judge(mirror, tmp_path, monkeypatch):
    @contextmanager
    def fake_open(names, engine, serve_config):
        yield [FakeJudge(names[0]).handle()]

    monkeypatch.setattr(check, "open_judges", fake_open)
    out = tmp_path / "v80"
    assert check.main(["--out", str(out), "--max-prompts", "20", "--n-boot", "100"]) == 0
    res = json.loads((out / "votes_check.json").read_text())
    assert len(res["systems"]) == 9 and 30 <= res["n_system_pairs"] <= 36  # pairs with votes among these questions
    assert -1 <= res["kendall_tau"]["estimate"] <= 1 and 0 <= res["coverage"] <= 1
    for p in res["pairs"]:
        assert p["n_labelled"] >= 2 and 0 <= p["all_votes_win_rate"] <= 1
        c = p["corrected"]
        assert c["lo"] <= c["estimate"] <= c["hi"]  # finite, even for a judge whose values never vary
    ranked = res["ranking_corrected"]
    assert sorted(r["system"] for r in ranked) == sorted(res["systems"])
    for r in ranked:
        assert r["rank_lo"] <= r["rank"] <= r["rank_hi"] and r["strength"]["lo"] <= r["strength"]["hi"]
    assert res["n_labelled"] == sum(p["n_labelled"] for p in res["pairs"])
    assert 0.15 <= res["n_labelled"] / res["n_voted_items"] <= 0.3
    assert -1 <= res["kendall_tau_corrected"] <= 1 and -1 <= res["kendall_tau_labelled_only"] <= 1
