"""The judge as a promptfoo grader: a two-test `promptfoo eval` (promptfoo from npm, its echo provider writing
the outputs: no network) whose python assertion is integrations/promptfoo_assert.py against the judge API on
loopback; pass/fail and scores are the API's verdicts, and an item the judge cannot render is a failed
assertion whose reason is the judge's error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from serve.client import JudgeClient
from tests.conftest import REPO
from tests.integrations.conftest import api_items

pytestmark = pytest.mark.integration
PROMPTFOO = REPO / "integrations" / "promptfoo" / "node_modules" / ".bin" / "promptfoo"
TESTS = [
    {"instruction": "What is 2+2?", "answer": "4", "reference": "4"},
    {"instruction": "Capital of France?", "answer": "Lyon, a city famous for food.", "reference": "Paris"},
]


def promptfoo(judge_api, tmp_path, judge: str, threshold: float = 0.5) -> list[dict]:
    assert PROMPTFOO.exists(), f"{PROMPTFOO} is missing: `make setup` (scripts/setup_env.sh) runs npm ci there"
    config = {
        "description": "judgeloop as a promptfoo grader",
        "prompts": ["{{answer}}"],
        "providers": ["echo"],  # the output is the rendered prompt: the test's answer
        "defaultTest": {
            "assert": [
                {
                    "type": "python",
                    "value": f"file://{REPO / 'integrations' / 'promptfoo_assert.py'}",
                    "config": {"url": judge_api.url, "judge": judge, "api_key": judge_api.key, "threshold": threshold},
                }
            ]
        },
        "tests": [{"vars": t} for t in TESTS],
    }
    (tmp_path / "promptfooconfig.yaml").write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PROMPTFOO_PYTHON": sys.executable,  # a Python with judgeloop
        "PROMPTFOO_DISABLE_TELEMETRY": "1",
        "PROMPTFOO_DISABLE_UPDATE": "1",
        "PROMPTFOO_DISABLE_SHARING": "1",
        "PROMPTFOO_CONFIG_DIR": str(tmp_path / "promptfoo-home"),
        "PROMPTFOO_DISABLE_REDTEAM_REMOTE_GENERATION": "1",
    }
    done = subprocess.run(
        [
            str(PROMPTFOO),
            "eval",
            "-c",
            "promptfooconfig.yaml",
            "-o",
            "out.json",
            "--no-cache",
            "--no-table",
            "--no-progress-bar",
            "--max-concurrency",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = tmp_path / "out.json"
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())["results"]["results"]
    return sorted(results, key=lambda r: r["testIdx"])


@pytest.mark.parametrize("judge", ["tiny-correctness", "tiny-helpfulness"])
def test_pass_fail_and_scores_are_the_judge_apis_verdicts(judge_api, tmp_path, judge):
    results = promptfoo(judge_api, tmp_path, judge)
    with JudgeClient(judge_api.url, api_key=judge_api.key) as client:
        items = api_items(judge, TESTS, "instruction", "answer", "reference")
        verdicts = client.judge_batch(items, judge)
    assert len(results) == 2
    for r, v in zip(results, verdicts):
        expected = v.probs["yes"] if judge == "tiny-correctness" else {"A": 1.0, "tie": 0.5, "B": 0.0}[v.verdict]
        (component,) = r["gradingResult"]["componentResults"]
        assert component["score"] == pytest.approx(expected, abs=1e-6)
        assert component["pass"] == (expected >= 0.5) and r["success"] == component["pass"]
        assert v.judge.fingerprint[:12] in component["reason"] and component["reason"].endswith(f": {v.verdict}")


def test_an_item_the_judge_cannot_render_fails_with_the_judges_error(judge_api, tmp_path):
    results = promptfoo(judge_api, tmp_path, "tiny-verbose")
    for r in results:
        (component,) = r["gradingResult"]["componentResults"]
        assert component["pass"] is False and "render:" in component["reason"], component
