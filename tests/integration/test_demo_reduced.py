"""The reduced demo: every stage of `judgeloop demo` on a few items and steps, with real vLLM.

Same code path as `make demo` (fetch, grouped splits, LoRA training, merge, base and candidate
validated through vLLM, gate, registry, `judgeloop serve` as a child process, scoring through the
API, served == validated, report, summary.json); only the split sizes, the step count and vLLM's eager mode
differ. Eager mode skips torch.compile, which took about 75 s on every vLLM start on 2 cores while vLLM's AOT
cache never loaded (2026-12-06: 524 s compiled, 252 s eager for the first pass; the test starts vLLM five times);
with the compile cache that now loads (serve/launcher.py), the first start still compiles and later ones load
for ~20-35 s. vLLM's compiled start, what `make demo` and production serve with, is exercised by
tests/benchmarks/test_bench_smoke.py.
"""

import json
import logging
from pathlib import Path

import psutil
import pytest
import yaml

from data.paths import CONFIGS_DIR
from workflows.demo import run_demo

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SUMMARY_KEYS = {
    "base",
    "tuned",
    "longer_rule_accuracy",
    "reference_judges",
    "human_ceiling",
    "gate",
    "promoted",
    "served_matches_validated",
    "served_judgments_per_s",
    "seconds",
    "git_commit",
    "vicuna80",
}
FIGURE_KEYS = {"accuracy", "accuracy_ci", "swap_consistency", "acc_shorter_preferred"}
STAGES = {
    "model",
    "data",
    "train",
    "merge",
    "validate_base",
    "validate_candidate",
    "gate",
    "serve",
    "report",
    "evaluate",
}


def _our_children(out, model_dir) -> list[str]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if str(out) in cmd or str(model_dir) in cmd:
            found.append(cmd)
    return found


def eager_serve_config(tmp_path) -> Path:
    """configs/serve/cpu.yaml with vLLM in eager mode (the module docstring says why)."""
    config = yaml.safe_load((CONFIGS_DIR / "serve" / "cpu.yaml").read_text())
    assert config["vllm"].get("enforce_eager", False) is False  # the shipped config compiles; only this test differs
    config["vllm"]["enforce_eager"] = True
    path = tmp_path / "serve-eager.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_reduced_demo_runs_every_stage_and_serves_what_it_validated(tmp_path, mirror, smollm2_dir, capsys, caplog):
    caplog.set_level(logging.INFO, logger="judgeloop")  # the stages are progress: the judgeloop logger
    out = tmp_path / "demo"
    serve_config = eager_serve_config(tmp_path)
    summary = run_demo(
        out,
        CONFIGS_DIR / "train" / "smollm2-cpu.yaml",
        serve_config,
        CONFIGS_DIR / "gates" / "default.yaml",
        limit=24,
        train_overrides=[
            "--max_steps=2",
            "--eval.steps=2",
            "--data.max_dev_items=4",
            "--batch_size=4",
            "--data.balance_length=false",
        ],
    )
    printed = capsys.readouterr().out + caplog.text
    caplog.clear()
    assert SUMMARY_KEYS <= summary.keys() and json.loads((out / "summary.json").read_text()) == summary
    for who in ("base", "tuned"):
        assert FIGURE_KEYS <= summary[who].keys()
        lo, hi = summary[who]["accuracy_ci"]
        assert lo <= summary[who]["accuracy"] <= hi
    assert set(summary["seconds"]) == STAGES | {"total"}
    assert summary["served_matches_validated"] is True and summary["served_judgments_per_s"] > 0
    # 24 test items is far below the gate's min_n: the candidate fails and is not promoted
    assert summary["gate"] == "fail" and summary["promoted"] is False
    assert set(summary["reference_judges"]) == {"gpt-3.5-turbo", "pandalm-7b"}
    for path in (
        "base/validation.json",
        "candidate/validation.json",
        "report/report.html",
        "train/card.json",
        "served_verdicts.jsonl",
    ):
        assert (out / path).exists(), path
    assert "[10/10] report" in printed and "report:" in printed
    assert yaml.safe_load((out / "serve.yaml").read_text())["vllm"]["enforce_eager"] is True  # what `serve` ran
    # stage 7 ranks vicuna80-human's systems (its first 3 questions here) corrected with 20% of the votes
    v = summary["vicuna80"]
    assert len(v["ranking_human"]) == len(v["ranking_judge"]) == len(v["ranking_corrected"]) == 9
    assert -1 <= v["kendall_tau"]["estimate"] <= 1 and v["n_labelled"] > 0
    check = json.loads((out / "evaluate" / "votes_check.json").read_text())
    assert check["judge"]["fingerprint"] == summary["fingerprints"]["tuned"] and check["max_prompts"] == 3
    evaluation = json.loads((out / "evaluate" / "evaluation.json").read_text())
    assert evaluation["corrected"] and evaluation["criteria"][0]["ranking_correction"]
    assert (out / "evaluate" / "report" / "evaluation.html").exists() and "[7/10] rank vicuna80" in printed
    # validating the candidate and ranking vicuna80-human share one vLLM: the demo starts two itself (the base's,
    # the candidate's) and `judgeloop serve` one for production
    assert printed.count("starting vLLM on") == 2, printed.count("starting vLLM on")
    # every process the demo started (validation vLLM servers, `judgeloop serve` and its vLLM) is gone
    assert _our_children(out, smollm2_dir) == []

    # a rerun reuses the data, the finished training run and the scored verdicts
    run_demo(
        out,
        CONFIGS_DIR / "train" / "smollm2-cpu.yaml",
        serve_config,
        CONFIGS_DIR / "gates" / "default.yaml",
        limit=24,
        train_overrides=[
            "--max_steps=2",
            "--eval.steps=2",
            "--data.max_dev_items=4",
            "--batch_size=4",
            "--data.balance_length=false",
        ],
    )
    again = capsys.readouterr().out + caplog.text
    assert "reusing the finished run" in again and again.count("reusing") >= 6
    # nothing changed, so nothing is served again: the rerun starts no vLLM and no `judgeloop serve`
    assert f"reusing {out / 'served_verdicts.jsonl'}" in again and "starting vLLM on" not in again
    assert json.loads((out / "summary.json").read_text())["served_judgments_per_s"] == summary["served_judgments_per_s"]
