"""The criteria registry: the shipped one is complete and consistent; mistakes are reported all at once."""

import pytest
import yaml

from data.criteria import judge_refs, load_criteria
from data.dataset_registry import get_dataset
from data.errors import ConfigError
from data.spec import load_spec
from train.config import load_train_config

ISSUE_DATASETS = {
    "pandalm",
    "llmeval2",
    "hh-rlhf-harmless",
    "dices-990",
    "nq301",
    "qags_xsum",
    "summeval-consistency",
    "summeval-fluency",
    "summeval-coherence",
    "summeval-relevance",
    "newsroom-fluency",
    "newsroom-coherence",
    "newsroom-relevance",
    "topical_chat-overall",
    "roscoe-gsm8k",
}


def test_shipped_registry_covers_every_criterion_with_consistent_configs(tmp_path):
    reg = load_criteria()
    assert {
        "helpfulness",
        "harmlessness",
        "safety",
        "answer-correctness",
        "factual-consistency",
        "fluency",
        "coherence",
        "relevance",
        "reasoning-quality",
    } <= set(reg.criteria)
    assert ISSUE_DATASETS <= {d for c in reg.criteria.values() for d in c.datasets}
    for c in reg.criteria.values():
        spec = load_spec(c.spec)
        cfg = load_train_config(c.train)
        assert cfg.spec == c.spec and sorted(cfg.data.train) == sorted(c.datasets), c.name
        assert cfg.run_dir(spec.name) == reg.run_dir(c), "the config trains where eval all and serve look"
        assert all(get_dataset(d).kind == spec.kind for d in c.datasets)
        # the GPU recipe is the shared config plus this criterion's spec and data
        gpu = load_train_config(reg.gpu_train_args(c)[0], reg.gpu_train_args(c)[1:])
        assert gpu.spec == c.spec and gpu.base_model == "Qwen/Qwen2.5-7B-Instruct"
    assert load_criteria().get("safety").gpu_overrides == ["--data.target=distribution"]


def test_untrained_criteria_name_their_train_command_or_serve_the_base(tmp_path):
    reg = load_criteria()
    reg.runs_dir = str(tmp_path)  # nothing trained there
    with pytest.raises(ConfigError) as err:
        judge_refs(reg)
    assert len(err.value.problems) == len(reg.criteria)
    assert f"judgeloop train configs/train/safety-cpu.yaml --output_dir={tmp_path / 'safety'}" in str(err.value)
    assert judge_refs(reg, untrained="base") == [c.spec for c in reg.criteria.values()]


def test_bad_registry_reports_every_problem_with_its_line(tmp_path):
    path = tmp_path / "criteria.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "criteria": {
                    "a": {"spec": "no-such-spec", "train": "missing.yaml", "datasets": ["pandalm"]},
                    "b": {
                        "spec": "answer-correctness",
                        "train": "configs/train/safety-cpu.yaml",
                        "datasets": ["pandalm", "nope"],
                        "colour": "red",
                    },
                }
            },
            sort_keys=False,
        )
    )
    with pytest.raises(ConfigError) as err:
        load_criteria(path)
    text = str(err.value)
    assert "criteria.a.spec" in text and "unknown judge spec 'no-such-spec'" in text
    assert "criteria.a.train" in text and "'missing.yaml' not found" in text
    assert "criteria.b.colour" in text and "unknown key" in text
    assert "'pandalm' holds pairwise items, judge 'answer-correctness' grades binary items" in text
    assert "unknown dataset 'nope'" in text
    assert f"{path}:" in text
