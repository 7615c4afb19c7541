"""The shipped training configs that start from a base resolve to exactly the recipes they replaced.

``golden/train_configs_b678963.json`` holds the YAML mappings of the flat files at commit b678963, before
the criterion configs moved their shared part into ``criteria-cpu-base.yaml`` (and helpfulness-gpu.yaml
started from criteria-gpu.yaml). When a recipe changes on purpose, update its entry there too.
"""

import json
from pathlib import Path

import pytest
import yaml

from data.config import load_config, to_dict
from tests.conftest import REPO
from train.config import TrainConfig

GOLDEN = json.loads((Path(__file__).parent / "golden" / "train_configs_b678963.json").read_text())
CRITERIA = [p for p in GOLDEN if p.endswith("-cpu.yaml") and "smollm2" not in p]
# criteria-gpu.yaml names no spec or data: `judgeloop train all --gpu` adds them per criterion
OVERRIDES = {"configs/train/criteria-gpu.yaml": ["--spec=conversation-safety", "--data.train=[dices-990]"]}


@pytest.mark.parametrize("path", sorted(GOLDEN))
def test_config_resolves_to_the_same_train_config_as_before(path, tmp_path, smollm2_dir):
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(GOLDEN[path]))
    overrides = OVERRIDES.get(path, [])
    before = to_dict(load_config(TrainConfig, old, overrides))
    after = to_dict(load_config(TrainConfig, REPO / path, overrides))
    assert after == before


def test_criterion_configs_keep_only_their_differences():
    assert len(CRITERIA) == 11
    base = yaml.safe_load((REPO / "configs/train/criteria-cpu-base.yaml").read_text())
    for path in CRITERIA:
        own = yaml.safe_load((REPO / path).read_text())
        assert own.pop("base") == "criteria-cpu-base.yaml", path
        # nothing the base already says is repeated with the same value
        repeated = [k for k, v in own.items() if not isinstance(v, dict) and base.get(k) == v]
        repeated += [
            f"{k}.{kk}"
            for k, v in own.items()
            if isinstance(v, dict)
            for kk, vv in v.items()
            if (base.get(k) or {}).get(kk) == vv
        ]
        assert not repeated, (path, repeated)


def test_long_cpu_recipe_is_the_sources_recipe_trained_longer_without_negatives():
    """configs/train/gemma3-cpu-long.yaml differs from the sources recipe (the demo's, less its PandaLM mix) only in
    steps, dev cadence and output."""
    sources = to_dict(load_config(TrainConfig, REPO / "configs/train/gemma3-cpu-sources.yaml", []))
    long = to_dict(load_config(TrainConfig, REPO / "configs/train/gemma3-cpu-long.yaml", []))
    assert (sources["max_steps"], long["max_steps"]) == (115, 575)
    assert long["eval"]["steps"] == 115
    assert long["output_dir"] == "runs/gemma3-cpu-long"
    for config in (sources, long):
        del config["max_steps"], config["output_dir"], config["eval"]["steps"]
    assert long == sources
    # measured to lower agreement on left-out sources (docs/results.md): off in the long recipe
    assert not long["data"]["off_instruction_negatives"] and not long["data"]["padded_negatives"]
