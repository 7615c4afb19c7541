"""Dataclass configs: YAML + overrides, every error at once, located by file:line and field."""

from dataclasses import dataclass
from typing import Literal, Optional

import pytest

from data.config import field_help, load_config, option
from data.errors import ConfigError, Problem


@dataclass
class Lora:
    rank: int = option(8, help="LoRA rank")
    alpha: float = option(16.0, help="LoRA alpha")


@dataclass
class Demo:
    name: str = option(help="run name")
    mode: Literal["fast", "slow"] = option("fast", help="speed")
    steps: Optional[int] = option(None, help="max steps")
    modules: list[str] = option(["q_proj"], help="target modules")
    bf16: bool = option(False, help="bf16")
    lora: Lora = option(Lora, help="lora")

    def validate(self):
        return [Problem("must be positive", field="lora.rank")] if self.lora.rank <= 0 else []


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_yaml_plus_overrides(tmp_path):
    p = write(tmp_path, "name: run1\nmode: slow\nlora:\n  rank: 4\n")
    cfg = load_config(Demo, p, ["--steps=10", "--lora.alpha=8", "--modules=q_proj,v_proj", "--bf16=true"])
    assert (cfg.name, cfg.mode, cfg.steps, cfg.lora.rank, cfg.lora.alpha) == ("run1", "slow", 10, 4, 8.0)
    assert cfg.modules == ["q_proj", "v_proj"] and cfg.bf16 is True


def test_every_error_at_once_with_lines(tmp_path):
    p = write(tmp_path, "name: run1\nmode: medium\nsteps: many\nlora:\n  rnak: 4\n  alpha: [1]\n")
    with pytest.raises(ConfigError) as info:
        load_config(Demo, p, ["--bf16=perhaps", "--nmae=x"])
    text = str(info.value)
    assert f"{p}:2: field 'mode': must be one of fast, slow, got 'medium'" in text
    assert f"{p}:3: field 'steps'" in text
    assert f"{p}:5: field 'lora.rnak': unknown key (did you mean 'lora.rank'?)" in text
    assert f"{p}:6: field 'lora.alpha': must be a number" in text
    assert "--bf16: field 'bf16': must be true or false" in text
    assert "field 'nmae': unknown key (did you mean 'name'?)" in text
    assert len(info.value.problems) == 6


def test_required_and_cross_field_rules(tmp_path):
    with pytest.raises(ConfigError, match="field 'name': is required"):
        load_config(Demo, None, [])
    p = write(tmp_path, "name: x\nlora:\n  rank: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(Demo, p)
    assert str(info.value) == f"{p}:3: field 'lora.rank': must be positive"


def test_invalid_yaml_names_line(tmp_path):
    p = write(tmp_path, "name: x\nmode: [fast\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: invalid YAML"):
        load_config(Demo, p)


def test_help_for_every_field():
    helps = field_help(Demo)
    assert helps["lora.rank"] == "LoRA rank" and helps["name"] == "run name"


@dataclass
class WithMapping:
    extra: dict = option({}, help="fields of another config")


def test_dotted_overrides_set_entries_of_a_mapping_field(tmp_path):
    from data.config import overrides_from

    p = write(tmp_path, "extra:\n  lora: {alpha: 16}\n  seed: 1\n")
    cfg = load_config(WithMapping, p, ["--extra.lora.rank=8", "--extra.data.dev=[a,b]"])
    assert cfg.extra == {"lora": {"alpha": 16, "rank": "8"}, "seed": 1, "data": {"dev": "[a,b]"}}
    assert load_config(WithMapping, None, ["--extra.max_steps=5"]).extra == {"max_steps": "5"}
    # the inverse, for the config the mapping is meant for: one --key=value per entry, YAML flow values
    assert overrides_from({"lora": {"rank": 8}, "bf16": True, "dev": ["a", "b"], "max_steps": None}) == [
        "--lora.rank=8",
        "--bf16=true",
        '--dev=["a", "b"]',
        "--max_steps=null",
    ]
    cfg = load_config(
        Demo, None, overrides_from({"name": "x", "lora": {"rank": 4}, "modules": ["a", "b"], "steps": None})
    )
    assert (cfg.name, cfg.lora.rank, cfg.modules, cfg.steps) == ("x", 4, ["a", "b"], None)
