"""`judgeloop bench --quick` runs end to end (real vLLM, real training) and writes results in the promised schema."""

import json
import os
import subprocess
import sys

import pytest

from judge.precision import bf16_is_fast
from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SYSTEM_FIELDS = {"judgments_per_s", "p50_ms", "p99_ms", "parse_failures", "agreement"}


def test_bench_quick_writes_the_promised_schema(tmp_path, mirror, smollm2_dir):
    results = tmp_path / "results"
    env = dict(os.environ, JUDGELOOP_DATA_MIRROR=str(mirror))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "judgeloop",
            "bench",
            "--quick",
            "--results",
            str(results),
            "--work",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    scoring = json.loads((results / "scoring.json").read_text())
    assert {"machine", "model", "dtype", "n_judgments", "peak_matmul_flops", "systems", "sets", "targets"} <= set(
        scoring
    )
    assert scoring["dtype"] == "float32"  # configs/serve/cpu.yaml's vllm.dtype
    assert set(scoring["sets"]) == {"pandalm", "long"}
    assert set(scoring["peak_matmul_flops"]) == {"bf16", "fp32"}
    assert all(v > 0 for v in scoring["peak_matmul_flops"].values())
    # the peak is the best of torch.matmul and vLLM's oneDNN kernel (the one vLLM serves with on this CPU); on a
    # CPU without bf16 math oneDNN has no bf16 matmul (it cannot create the primitive), so torch's emulation is all
    both = {"torch.matmul", "vllm.onednn_mm"}
    expected = {"fp32": both, "bf16": both if bf16_is_fast() else {"torch.matmul"}}
    for key, kernels in scoring["peak_matmul_kernels"].items():
        assert {k.split()[0] for k in kernels} == expected[key], key
        assert scoring["peak_matmul_flops"][key] == max(kernels.values()), key
    assert set(scoring["layer_ceiling_flops"]) == {"torch.matmul", "vllm.onednn_mm"}
    for x in scoring["sets"].values():
        assert all(v > 0 for v in x["efficiency_vs_layer_ceiling"].values())
    assert set(scoring["systems"]) == {"naive_generate", "hf_batched", "vllm_merged", "vllm_lora", "judge_api"}
    for name, system in scoring["systems"].items():
        assert SYSTEM_FIELDS <= set(system), name
        assert system["judgments_per_s"] > 0, name
    # speed must not change verdicts: the in-process engine and the API give vLLM's verdicts
    assert scoring["systems"]["judge_api"]["same_verdicts_as_vllm_merged"] == 1.0
    assert scoring["systems"]["hf_batched"]["same_verdicts_as_vllm_merged"] == 1.0
    assert scoring["systems"]["vllm_merged"]["parse_failures"] == 0
    assert scoring["production_merges_automatically"] is True
    for name, x in scoring["sets"].items():
        assert 0 < x["efficiency_vs_served_dtype_peak"] == x["efficiency_vs_fp32_peak"], name
        # bf16's peak is the higher one where the CPU has bf16 math; without it torch emulates bf16 ~100x slower
        assert (x["efficiency_vs_bf16_peak"] < x["efficiency_vs_fp32_peak"]) == bf16_is_fast(), name
        assert set(x["ratios"]) == {"vllm_merged_over_naive", "vllm_merged_over_hf_batched", "judge_api_overhead"}
        assert x["systems"]["judge_api"]["same_verdicts_as_vllm_merged"] == 1.0, name
    assert {(t["set"], t["met"] is not None) for t in scoring["targets"]} == {("pandalm", True), ("long", True)}
    assert [x["judgments"] for x in scoring["linearity_vllm_merged"]] == [4, 16]

    training = json.loads((results / "training.json").read_text())
    assert set(training["systems"]) == {"judgeloop", "trl_default"}
    assert training["subset"]["order"] == ["trl_default", "judgeloop"]  # --quick: one run each, not ABBA
    for name, system in training["systems"].items():
        assert {"epoch_seconds", "tokens_per_s", "peak_rss_mb", "dev_agreement"} <= set(system), name
        assert system["epoch_seconds"] > 0 and system["tokens_per_s"] > 0 and system["peak_rss_mb"] > 100, name

    table = (results / "README.md").read_text()
    assert "vllm_merged" in table and "trl_default" in table and "| long | vllm_merged |" in table
    assert "of the bf16 peak" in table and all(x["efficiency_vs_bf16_peak"] > 0 for x in training["systems"].values())
