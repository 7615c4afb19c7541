"""The embedded default model trains for a few steps through the real path and leaves a complete judge."""

import json

import pytest
import yaml

from data.config import load_config
from judge.loading import load_judge
from tests.train.helpers import SPEC, pairwise_items, write_items
from train.config import TrainConfig
from train.trainer import train


@pytest.mark.slow
def test_smollm2_trains_a_few_steps_into_a_complete_run_directory(tmp_path, smollm2_dir):
    cfg = load_config(
        TrainConfig,
        None,
        [
            f"--spec={SPEC}",
            "--base_model=smollm2-135m-instruct",
            f"--output_dir={tmp_path / 'run'}",
            f"--data.train={write_items(tmp_path / 'train.jsonl', pairwise_items(8))}",
            f"--data.dev={write_items(tmp_path / 'dev.jsonl', pairwise_items(3, 'd', seed=1))}",
            "--max_steps=2",
            "--eval.steps=2",
            "--batch_size=2",
            "--bf16=auto",  # bf16 only where the CPU has bf16 math: ~100x slower matmuls elsewhere
            "--max_length=512",
        ],
    )
    result = train(cfg, progress=lambda *a, **k: None)
    run = result.run_dir
    for name in (
        "adapter/adapter_model.safetensors",
        "adapter/tokenizer.json",
        "spec.yaml",
        "config.yaml",
        "train_log.jsonl",
        "card.json",
        "card.md",
        "judge.json",
        "data_report.md",
    ):
        assert (run / name).is_file(), name
    judge = load_judge(run)
    assert judge.model_path == str(smollm2_dir) and judge.fingerprint == result.fingerprint
    spec = yaml.safe_load((run / "spec.yaml").read_text())
    assert spec["base_model"] == "smollm2-135m-instruct" and spec["max_prompt_tokens"] <= 512 - 3
    card = json.loads((run / "card.json").read_text())
    assert card["dev_curve"] and card["dev_curve"][-1]["step"] == 2 and card["training"]["tokens_per_s"] > 0
    assert "smollm2-135m-instruct" in (run / "card.md").read_text()
    from judge.precision import bf16_is_fast

    precision = card["training"]["precision"]  # what `auto` chose on this machine, recorded for reproduction
    assert precision["bf16"] is bf16_is_fast() and precision["hardware"]
