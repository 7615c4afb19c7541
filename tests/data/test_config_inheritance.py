"""Config inheritance: ``base: FILE`` deep-merges FILE under a config's own keys; errors stay located."""

from dataclasses import dataclass

import pytest

from data.config import load_config, option
from data.errors import ConfigError, Problem


@dataclass
class Lora:
    rank: int = option(8, help="LoRA rank")
    alpha: float = option(16.0, help="LoRA alpha")
    modules: list[str] = option(["q_proj"], help="target modules")


@dataclass
class Run:
    name: str = option(help="run name")
    steps: int = option(10, help="steps")
    datasets: list[str] = option([], help="datasets")
    options: dict = option({}, help="free-form mapping")
    lora: Lora = option(Lora, help="lora")

    def validate(self):
        return [Problem("must be positive", field="lora.alpha")] if self.lora.alpha <= 0 else []


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_child_wins_mappings_merge_lists_replace(tmp_path):
    write(
        tmp_path / "base.yaml",
        "name: from-base\nsteps: 5\ndatasets: [a, b]\noptions: {x: 1, y: 2}\nlora:\n  rank: 4\n  modules: [k, v]\n",
    )
    child = write(tmp_path / "child.yaml", "base: base.yaml\nname: mine\ndatasets: [c]\nlora:\n  alpha: 32\n")
    cfg = load_config(Run, child)
    assert cfg.name == "mine" and cfg.steps == 5  # the child's key wins, the base fills the rest
    assert cfg.datasets == ["c"]  # a list is replaced whole, not appended to
    assert (cfg.lora.rank, cfg.lora.alpha, cfg.lora.modules) == (4, 32.0, ["k", "v"])  # mappings merge key by key
    assert cfg.options == {"x": 1, "y": 2}
    # overrides still win over both files
    assert load_config(Run, child, ["--lora.rank=2", "--steps=7"]).lora.rank == 2


def test_a_child_null_replaces_a_whole_mapping(tmp_path):
    write(tmp_path / "base.yaml", "name: b\nlora:\n  rank: 4\n  alpha: 2\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\nlora: null\n")
    lora = load_config(Run, child).lora
    assert (lora.rank, lora.alpha) == (8, 16.0)  # the base's lora is gone: the class defaults


def test_chain_and_paths_relative_to_each_file(tmp_path):
    write(tmp_path / "shared" / "root.yaml", "name: root\nsteps: 1\nlora:\n  rank: 2\n")
    write(tmp_path / "shared" / "mid.yaml", "base: root.yaml\nsteps: 2\n")  # relative to shared/
    child = write(tmp_path / "runs" / "child.yaml", "base: ../shared/mid.yaml\nlora:\n  alpha: 3\n")
    cfg = load_config(Run, child)
    assert (cfg.name, cfg.steps, cfg.lora.rank, cfg.lora.alpha) == ("root", 2, 2, 3.0)


def test_a_cycle_is_a_located_error(tmp_path):
    write(tmp_path / "a.yaml", "name: a\nbase: b.yaml\n")
    write(tmp_path / "b.yaml", "base: c.yaml\n")
    write(tmp_path / "c.yaml", "# c\nbase: a.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(Run, tmp_path / "a.yaml")
    p = err.value.first
    assert (p.path, p.line, p.field) == (str(tmp_path / "c.yaml"), 2, "base")
    assert "cycle" in p.message and "a.yaml -> " in p.message
    self_ref = write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(Run, self_ref)


def test_a_missing_or_malformed_base_is_a_located_error(tmp_path):
    child = write(tmp_path / "child.yaml", "name: x\n\nbase: nowhere.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(Run, child)
    assert str(err.value).startswith(f"{child}:3: field 'base': base config 'nowhere.yaml' not found")
    child = write(tmp_path / "child.yaml", "base: [a.yaml]\nname: x\n")
    with pytest.raises(ConfigError, match=r"child.yaml:1: field 'base': must be the path of a YAML file"):
        load_config(Run, child)
    write(tmp_path / "list.yaml", "- 1\n- 2\n")
    child = write(tmp_path / "child.yaml", "base: list.yaml\nname: x\n")
    with pytest.raises(ConfigError, match=r"list.yaml:1: a base config must be a mapping"):
        load_config(Run, child)
    write(tmp_path / "broken.yaml", "name: x\nsteps: [1\n")
    child = write(tmp_path / "child.yaml", "base: broken.yaml\n")
    with pytest.raises(ConfigError, match=r"broken.yaml:\d+: invalid YAML"):
        load_config(Run, child)


def test_errors_name_the_file_and_line_where_the_key_was_written(tmp_path):
    base = write(
        tmp_path / "base.yaml",
        "# the shared part\nsteps: many\nlora:\n  rank: 4\n  rnak: 5\n  alpha: 0\noptions: {x: 1}\n",
    )
    child = write(tmp_path / "child.yaml", "base: base.yaml\nname: x\nlora:\n  rank: four\ndatasets: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(Run, child, ["--nmae=y"])
    text = str(err.value)
    assert f"{base}:2: field 'steps': must be an integer" in text  # inherited: the base's file and line
    assert f"{base}:5: field 'lora.rnak': unknown key (did you mean 'lora.rank'?)" in text
    assert f"{child}:4: field 'lora.rank': must be an integer" in text  # the child's value, the child's line
    assert f"{child}:5: field 'datasets': must be a list" in text
    assert "--nmae: field 'nmae': unknown key" in text
    assert len(err.value.problems) == 5
    # a cross-field rule on an inherited key points at the base too
    child = write(tmp_path / "child.yaml", "base: base.yaml\nname: x\nsteps: 3\nlora:\n  rank: 2\n")
    write(tmp_path / "base.yaml", "# the shared part\nsteps: 1\nlora:\n  rank: 4\n  alpha: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(Run, child)
    assert str(err.value) == f"{base}:5: field 'lora.alpha': must be positive"


def test_base_is_only_a_key_of_the_top_mapping(tmp_path):
    child = write(tmp_path / "child.yaml", "name: x\noptions:\n  base: not-a-file.yaml\n")
    assert load_config(Run, child).options == {"base": "not-a-file.yaml"}
