"""The validation report: gate verdict first, every plot a real image, and it renders in Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

import judgeloop
from data.paths import REPO_ROOT
from data.spec import load_spec
from eval.gate import check, load_gates, write_result
from eval.harness import evaluate
from eval.report import render_html, render_markdown, write_report
from eval.result import Interval, ValidationResult
from judge.registry import Registry
from tests.eval.helpers import noisy_judge, pairwise_items
from workflows import promotion

DEFAULT_GATES = REPO_ROOT / "configs" / "gates" / "default.yaml"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def result() -> ValidationResult:
    items = pairwise_items(240, seed=11)
    refs = {"reference-judge": noisy_judge(items, skill=1.0, seed=5, name="ref")}
    incumbent = noisy_judge(items, skill=1.2, seed=6, fingerprint="0" * 64, name="helpful")
    out = evaluate(
        items,
        noisy_judge(items, skill=2.2, seed=4, name="helpful"),
        load_spec("helpfulness-pairwise"),
        judge_info={"version": "2"},
        dataset_info={"name": "constructed", "split": "test", "sha256": "d" * 64},
        reference_verdicts=refs,
        incumbent_verdicts=incumbent,
        n_boot=200,
    )
    out.provenance.commands = ["judgeloop eval --verdicts v.jsonl --items test.jsonl --spec helpfulness-pairwise"]
    return out


def _images(html: str) -> list[np.ndarray]:
    return [
        mpimg.imread(io.BytesIO(base64.b64decode(b64)), format="png")
        for b64 in re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', html)
    ]


def _not_blank(img: np.ndarray) -> bool:
    return float(img[..., :3].std()) > 0.02


def test_gate_verdict_leads_and_every_plot_is_an_image(result):
    html = render_html(result)
    assert "Gate: NOT GATED" in html
    gated = result.model_copy(update={"gate": check(result, load_gates(DEFAULT_GATES))})
    html = render_html(gated)
    status = "PASS" if gated.gate.passed else "FAIL"
    assert html.index(f"Gate: {status}") < html.index("The answer") < html.index("Agreement metrics")
    images = _images(html)
    assert len(images) == 5  # agreement, confusion, reliability, bias, slices (no trend without history)
    assert all(_not_blank(img) for img in images)
    for text in (
        "human ceiling",
        "pick longer",
        "reference-judge",
        "Against the incumbent",
        "Reproduce",
        result.judge.fingerprint,
        "d" * 64,
    ):
        assert text in html
    assert "http://" not in html and "https://" not in html  # self-contained
    md = render_markdown(gated)
    assert md.startswith(f"## Judge validation: **{status}**") and "| accuracy |" in md


def test_report_cli_adds_the_version_trend(result, tmp_path):
    reg = Registry(tmp_path / "reg")
    for version, value in (("1", 0.7), ("2", 0.75), ("3", 0.8)):
        v = result.model_copy(update={"judge": result.judge.model_copy(update={"fingerprint": version * 64})})
        v.metrics = {**v.metrics, "accuracy": Interval(value=value, ci_low=value - 0.04, ci_high=value + 0.04)}
        path = tmp_path / f"v{version}.json"
        write_result(path, v)
        promotion.register(reg, "helpful", version, version * 64, "m", validation=path)
    path = tmp_path / "validation.json"
    write_result(path, result)
    assert (
        judgeloop.main(["report", str(path), "--out", str(tmp_path / "rep"), "--registry", str(tmp_path / "reg")]) == 0
    )
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Version trend" in html and len(_images(html)) == 6
    assert (tmp_path / "rep" / "report.md").exists()
    assert json.loads((tmp_path / "rep" / "validation.json").read_text())["n"] == result.n


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        subprocess.run(["bash", str(REPO_ROOT / "scripts" / "install_chromium.sh")], check=True, timeout=900)
    assert Path(CHROMIUM).exists(), "scripts/install_chromium.sh did not install chromium"
    return CHROMIUM


@pytest.mark.slow
def test_report_renders_in_headless_chromium(result, tmp_path):
    gated = result.model_copy(update={"gate": check(result, load_gates(DEFAULT_GATES))})
    paths = write_report(gated, tmp_path / "report")
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
    assert img.shape[:2] == (2000, 1280)
    assert _not_blank(img)
    # the gate banner is the first thing on the page, in its colour (green PASS, red FAIL)
    banner = img[30, 400, :3]
    if gated.gate.passed:
        assert banner[1] > banner[0] and banner[1] > banner[2]
    else:
        assert banner[0] > banner[1] and banner[0] > banner[2]
    # plots are drawn (many distinct colours below the fold of text), not broken-image icons
    lower = img[900:, :, :3].reshape(-1, 3)
    assert len(np.unique((lower * 255).astype(np.uint8), axis=0)) > 50


@pytest.mark.parametrize(
    "judge_acc, words", [(0.70, "5.0 points above it"), (0.60, "5.0 points below it"), (0.65, "level with it")]
)
def test_the_baseline_sentence_says_above_or_below(result, judge_acc, words):
    from eval.report import summary

    r = result.model_copy(deep=True)
    r.metrics["accuracy"].value = judge_acc
    r.baselines = {"pick_longer": 0.65, "always_first": 0.5}
    line = next(s for s in summary(r) if s.startswith("Best trivial baseline"))
    assert line.endswith(f"pick longer scores 65.0%; the judge is {words}.")
