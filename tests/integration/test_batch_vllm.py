"""`judgeloop score` on real vLLM: SIGKILLed midway and rerun, every id is in the output exactly once."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.conftest import API_KEY
from tests.serve.helpers import pairwise_items, write_jsonl

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_killed_batch_resumes_with_every_id_exactly_once(stack, tiny_specs, tmp_path):
    n = 800
    src = write_jsonl(tmp_path / "items.jsonl", pairwise_items(n))
    out = tmp_path / "verdicts.jsonl"
    endpoint = stack.services["tiny-helpfulness"].backend.endpoints[0]
    cmd = [
        sys.executable,
        "judgeloop.py",
        "score",
        "--judge",
        str(tiny_specs["pairwise"]),
        "--in",
        str(src),
        "--out",
        str(out),
        "--batch-size",
        "16",
        "-q",
        f"--vllm.endpoints=[{endpoint}]",
    ]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while lines(out) < 100 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_at_kill = lines(out)
    assert 0 < done_at_kill < n, f"kill landed at {done_at_kill} of {n} lines"
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    ids = Counter(json.loads(line)["id"] for line in out.read_text().splitlines())
    assert set(ids) == {f"p{i}" for i in range(n)} and max(ids.values()) == 1
    assert f"{n} verdict(s), 0 error(s)" in second.stdout
    assert "already in the output were skipped" in second.stdout


def test_score_through_the_judge_api(api, tmp_path):
    src = write_jsonl(tmp_path / "items.jsonl", pairwise_items(40))
    out = tmp_path / "verdicts.jsonl"
    cmd = [
        sys.executable,
        "judgeloop.py",
        "score",
        "--endpoint",
        api.url,
        "--judge",
        "tiny-judge",
        "--in",
        str(src),
        "--out",
        str(out),
        "--batch-size",
        "16",
    ]
    done = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "JUDGELOOP_API_KEY": API_KEY}
    )
    assert done.returncode == 0, done.stderr
    assert "40 verdict(s), 0 error(s)" in done.stdout and "labels:" in done.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [f"p{i}" for i in range(40)]
    assert all(r["judge"]["name"] == "tiny-judge" for r in records)
    wrong = subprocess.run(
        [*cmd[:5], "--judge", "nope", *cmd[7:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "JUDGELOOP_API_KEY": API_KEY},
    )
    assert wrong.returncode == 2 and "not 'nope'" in wrong.stderr and "Traceback" not in wrong.stderr
