"""The multi-process path: two CPU processes (torchrun, gloo) run the same training code."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from judge.loading import load_judge
from tests.conftest import REPO
from tests.train.helpers import SPEC, pairwise_items, write_items


@pytest.mark.slow
def test_two_processes_see_world_size_2_and_end_with_the_same_adapter(tmp_path, tiny_model_dir):
    train_file = write_items(tmp_path / "train.jsonl", pairwise_items(16))
    dev_file = write_items(tmp_path / "dev.jsonl", pairwise_items(4, "d", seed=1))
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO / "tests/train/ddp_worker.py"),
        str(tmp_path),
        f"--spec={SPEC}",
        f"--base_model={tiny_model_dir}",
        f"--output_dir={tmp_path / 'run'}",
        f"--data.train={train_file}",
        f"--data.dev={dev_file}",
        "--max_steps=4",
        "--eval.steps=2",
        "--batch_size=2",
        "--learning_rate=1e-2",
        "--lora.rank=4",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in reports] == [0, 1]
    assert all(r["world_size"] == 2 and r["distributed_type"].endswith("MULTI_CPU") for r in reports), reports
    assert reports[0]["lora_sha256"] == reports[1]["lora_sha256"]
    assert reports[0]["steps"] == 4
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["training"]["processes"] == 2
    assert load_judge(tmp_path / "run").fingerprint == card["judge"]["fingerprint"]
