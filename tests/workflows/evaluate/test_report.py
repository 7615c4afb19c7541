"""The evaluation report: what the figures are is said first, data cannot inject markup, every plot is a
real image, and the page renders in headless Chromium."""

from __future__ import annotations

import base64
import io
import re
import subprocess

import matplotlib.image as mpimg
import numpy as np
import pytest

from tests.eval.test_report import _chromium, _not_blank
from tests.workflows.evaluate.helpers import FakeJudge, human_labels_for, write_responses
from workflows.evaluate.history import History
from workflows.evaluate.report import render_html, render_markdown, write_report
from workflows.evaluate.run import RunOptions, evaluate_run

EVIL = "<script>alert(1)</script>|x"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate-report")
    r = write_responses(tmp / "r.jsonl", systems=("v1", "v2", "v3", EVIL), n_prompts=60)
    labels = human_labels_for(tmp / "labels.jsonl", r, frac=0.4, criterion="helpfulness-pairwise")
    judges = [FakeJudge("helpfulness-pairwise", bias=0.8).handle(), FakeJudge("summary-coherence").handle()]
    db = History(str(tmp / "h.db"))
    evs = []
    for k in range(2):
        ev, datas = evaluate_run(
            r, judges, tmp / f"out{k}", RunOptions(baseline="v1", labels=str(labels) if k else None, n_boot=200)
        )
        db.record(ev, {d.criterion: d.per_prompt for d in datas})
        evs.append(ev)
    return tmp, evs, db.runs()


def _images(html: str) -> list[np.ndarray]:
    return [
        mpimg.imread(io.BytesIO(base64.b64decode(b64)), format="png")
        for b64 in re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', html)
    ]


def test_uncorrected_report_says_so_first(runs):
    _, (plain, _), rows = runs
    html = render_html(plain, rows[:1])
    body = html[html.index("<body>") :]
    first_text = re.sub(r"<[^>]+>", " ", body).split()
    assert " ".join(first_text[:2]) == "NOT CORRECTED:"
    md = render_markdown(plain, rows[:1])
    assert md.splitlines()[2].startswith("> **NOT CORRECTED")


def test_data_cannot_inject_markup(runs):
    _, (plain, corrected), rows = runs
    html = render_html(corrected, rows)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    md = render_markdown(corrected, rows)
    assert "<script>" not in md and "\\|x" in md


def test_corrected_report_has_leaderboard_matrix_trend_plots(runs):
    _, (_, corrected), rows = runs
    html = render_html(corrected, rows)
    assert "corrected (PPI++)" in html and "Win-rate matrix" in html and "Scorecard" in html
    assert "Trend across runs" in html and "Ranking (Bradley-Terry)" in html and "Ranking corrected with" in html
    images = _images(html)
    assert len(images) >= 5 and all(_not_blank(img) for img in images)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(runs, tmp_path):
    _, (plain, _), rows = runs
    paths = write_report(plain, tmp_path / "report", rows)
    shot = tmp_path / "shot.png"
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        paths["html"].resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    img = mpimg.imread(shot)
    assert img.shape[:2] == (2000, 1280) and _not_blank(img)
    # the NOT CORRECTED banner leads the page in its amber colour (#b8860b)
    banner = img[20, 640, :3]
    assert np.allclose(banner, np.array([0xB8, 0x86, 0x0B]) / 255, atol=0.08), banner


def test_the_committed_evaluation_schema_is_the_models():
    import subprocess
    import sys

    from data.paths import REPO_ROOT
    from workflows.evaluate.result import schema_text

    committed = (REPO_ROOT / "docs" / "schemas" / "evaluation.schema.json").read_text()
    assert committed == schema_text(), (
        "docs/schemas/evaluation.schema.json is out of date: "
        "python -m workflows.evaluate.result --schema > docs/schemas/evaluation.schema.json"
    )
    out = subprocess.run(
        [sys.executable, "-m", "workflows.evaluate.result", "--schema"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == committed
