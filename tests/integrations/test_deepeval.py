"""The judge as a DeepEval metric: a two-case evaluation through DeepEval's own `evaluate()`, run in DeepEval's
environment (.venv-deepeval: its pins clash with judgeloop's), against the judge API on loopback; the scores
are the API's verdicts, and an item the judge cannot render is the metric's error, not a crash."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from serve.client import JudgeClient
from tests.conftest import REPO
from tests.integrations.conftest import api_items

pytestmark = pytest.mark.integration
PYTHON = REPO / ".venv-deepeval" / "bin" / "python"
CASES = [
    {"input": "What is 2+2?", "actual_output": "4", "expected_output": "4"},
    {"input": "Capital of France?", "actual_output": "Lyon, a city famous for food.", "expected_output": "Paris"},
]


def deepeval(judge_api, tmp_path, judge: str, threshold: float = 0.5) -> list[dict]:
    assert PYTHON.exists(), f"{PYTHON} is missing: `make setup` (scripts/setup_env.sh) creates DeepEval's environment"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DEEPEVAL_TELEMETRY_OPT_OUT": "YES",
        "DEEPEVAL_UPDATE_WARNING_OPT_OUT": "YES",
        "DEEPEVAL_RESULTS_FOLDER": str(tmp_path / "deepeval"),
        "HOME": str(tmp_path),  # DeepEval keeps its settings under ~/.deepeval
    }
    done = subprocess.run(
        [
            str(PYTHON),
            str(REPO / "tests" / "integrations" / "deepeval_run.py"),
            judge_api.url,
            judge_api.key,
            judge,
            str(threshold),
            json.dumps(CASES),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULTS "))
    return {r["input"]: r for r in json.loads(line.removeprefix("RESULTS "))}


@pytest.mark.parametrize("judge", ["tiny-correctness", "tiny-coherence", "tiny-helpfulness"])
def test_scores_are_the_judge_apis_verdicts(judge_api, tmp_path, judge):
    got = deepeval(judge_api, tmp_path, judge)
    with JudgeClient(judge_api.url, api_key=judge_api.key) as client:
        items = api_items(judge, CASES, "input", "actual_output", "expected_output")
        verdicts = client.judge_batch(items, judge)
    for case, v in zip(CASES, verdicts):
        r = got[case["input"]]
        expected = {
            "tiny-correctness": lambda: v.probs["yes"],
            "tiny-coherence": lambda: (v.score - 1) / 4,
            "tiny-helpfulness": lambda: {"A": 1.0, "tie": 0.5, "B": 0.0}[v.verdict],
        }[judge]()
        assert r["error"] is None and r["score"] == pytest.approx(
            expected, abs=1e-6
        )  # batched vs one at a time: fp noise
        assert r["success"] == (r["score"] >= 0.5)
        assert v.judge.fingerprint[:12] in r["reason"] and f": {v.verdict}," in r["reason"]


def test_an_item_the_judge_cannot_render_is_the_metrics_error(judge_api, tmp_path):
    got = deepeval(judge_api, tmp_path, "tiny-verbose")
    assert all("render:" in r["error"] and "fixed parts alone" in r["error"] for r in got.values()), got
