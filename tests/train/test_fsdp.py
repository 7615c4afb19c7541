"""FSDP2 on CPU (torchrun, gloo, two processes): the dev-evaluation scoring path and the adapter save under
sharding. accelerate only runs FSDP on accelerators, so the trainer's own FSDP run is checked on a GPU
(benchmarks/gpu_training.py); these are the two pieces that broke there."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_a_sharded_judge_scores_like_the_unsharded_one_and_saves_its_whole_adapter(tmp_path, tiny_model_dir):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO / "tests/train/fsdp_worker.py"),
        str(tiny_model_dir),
        str(tmp_path),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for report in reports:
        assert report["world_size"] == 2 and report["dtensor_params"] > 0  # really sharded
        for ref, got in zip(report["reference"], report["sharded"]):
            for order in ("ab", "ba"):
                assert got[order] == pytest.approx(ref[order], abs=1e-5)
    assert reports[0]["saved"] == "complete"
