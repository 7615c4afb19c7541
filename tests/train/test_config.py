"""The config error table: every mistake names its field (and YAML line), all at once, exit code 2."""

from pathlib import Path

import pytest

import judgeloop
from data.config import load_config
from data.errors import ConfigError
from tests.conftest import REPO
from train.config import TrainConfig, load_train_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def problems(path, *overrides) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        load_train_config(path, list(overrides))
    found: dict[str, str] = {}
    for p in err.value.problems:
        found[p.field] = "\n".join(filter(None, [found.get(p.field), str(p)]))
    return found


@pytest.fixture
def items_file(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text(
        '{"id": "x", "group": "g", "kind": "pairwise", "instruction": "i", "response_a": "a", '
        '"response_b": "b", "label": "A"}\n'
    )
    return path


# (field, YAML line, expected fragment): every rule violation of one file, reported together
BAD = """spec: helpfulness-pairwise
base_model: /no/such/model
data:
  train: [pandlm]
  exclude_labels: [maybe]
lora:
  rank: 0
  dropout: 1.5
  target_modules: [lm_head, "q proj"]
  qlora: true
eval:
  early_stopping_patience: 0
learning_rate: -0.1
batch_size: 0
max_length: 10
"""
EXPECTED = [
    ("base_model", 2, "model directory '/no/such/model' not found"),
    ("data.train", 4, "unknown dataset 'pandlm' (did you mean 'pandalm'?)"),
    ("data.exclude_labels", 5, "'maybe' is not a label of judge 'helpfulness-pairwise'"),
    ("lora.rank", 7, "must be > 0, got 0"),
    ("lora.dropout", 8, "must be in [0, 1), got 1.5"),
    ("lora.target_modules", 9, "lm_head"),
    ("lora.qlora", 10, "QLoRA needs a CUDA GPU"),
    ("eval.early_stopping_patience", 12, "must be >= 1, got 0"),
    ("learning_rate", 13, "must be > 0, got -0.1"),
    ("batch_size", 14, "must be > 0, got 0"),
    ("max_length", 15, "must be at least 64 tokens, got 10"),
]


@pytest.mark.parametrize("field,line,fragment", EXPECTED, ids=[e[0] for e in EXPECTED])
def test_each_rule_names_its_field_and_line(tmp_path, field, line, fragment):
    path = write(tmp_path, BAD)
    found = problems(path)
    assert field in found, sorted(found)
    assert found[field].startswith(f"{path}:{line}: field '{field}'") and fragment in found[field]


def test_all_rule_violations_are_reported_at_once(tmp_path):
    found = problems(write(tmp_path, BAD))
    assert {f for f, _, _ in EXPECTED} <= set(found)
    target = [p for p in found.values() if "q proj" in p]
    assert target, "the malformed module name is reported too"


def test_type_errors_and_typos_are_reported_together(tmp_path, items_file):
    path = write(
        tmp_path,
        f"spec: helpfulness-pairwise\ndata:\n  train: [{items_file}]\nbatch_size: eight\n"
        "lora:\n  rnak: 4\nbf16: maybe\n",
    )
    found = problems(path, "--learning_rat=1e-3")
    assert "must be an integer, got 'eight'" in found["batch_size"] and ":4:" in found["batch_size"]
    assert "unknown key" in found["lora.rnak"] and "did you mean 'lora.rank'?" in found["lora.rnak"]
    assert "must be true or false" in found["bf16"]
    assert "did you mean 'learning_rate'?" in found["learning_rat"]


def test_missing_training_data_and_unknown_spec(tmp_path):
    found = problems(write(tmp_path, "spec: helpfulnes-pairwise\nbase_model: /tmp\n"))
    assert "is required" in found["data.train"]
    assert "unknown judge spec 'helpfulnes-pairwise'" in found["spec"] and "did you mean" in found["spec"]


def test_item_file_that_does_not_exist(tmp_path):
    found = problems(write(tmp_path, "spec: helpfulness-pairwise\ndata:\n  train: [missing/items.jsonl]\n"))
    assert "item file 'missing/items.jsonl' not found" in found["data.train"]


def test_overrides_are_typed_and_win_over_the_file(tmp_path, items_file, tiny_model_dir):
    path = write(
        tmp_path, f"spec: helpfulness-pairwise\nbase_model: {tiny_model_dir}\ndata:\n  train: [{items_file}]\n"
    )
    cfg = load_train_config(path, ["--lora.rank=4", "--data.exclude_labels=tie", "--max_steps=null", "--bf16=true"])
    assert cfg.lora.rank == 4 and cfg.data.exclude_labels == ["tie"] and cfg.max_steps is None and cfg.bf16 is True


def test_cli_exits_2_with_file_line_field_and_no_traceback(tmp_path, capsys):
    path = write(tmp_path, BAD)
    code = judgeloop.main(["train", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"judgeloop: error: {path}:7: field 'lora.rank': must be > 0" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) >= len(EXPECTED)


def test_cli_help_lists_every_field(capsys):
    assert judgeloop.main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for key in ("--lora.rank", "--data.target", "--eval.early_stopping_patience", "--max_length", "--bf16"):
        assert key in out


@pytest.mark.parametrize("name", ["smollm2-cpu.yaml", "helpfulness-gpu.yaml"])
def test_shipped_configs_are_valid(name, smollm2_dir):
    path = REPO / "configs" / "train" / name
    text = path.read_text()
    assert text.startswith("#"), "a config starts with a header saying what it is for and how long it runs"
    cfg = load_config(TrainConfig, path, ["--lora.qlora=false"])
    assert cfg.data.train and cfg.lora.rank > 0


def test_bf16_takes_auto_true_or_false_and_names_a_bad_value(tmp_path, items_file):
    path = tmp_path / "c.yaml"
    path.write_text(f"spec: helpfulness-pairwise\ndata:\n  train: [{items_file}]\nbf16: auto\neval:\n  dtype: auto\n")
    cfg = load_train_config(path, [])
    assert cfg.bf16 == "auto" and cfg.eval.dtype == "auto"
    assert load_train_config(path, ["--bf16=false"]).bf16 is False
    with pytest.raises(ConfigError) as err:
        load_train_config(path, ["--bf16=sometimes"])
    assert "bf16" in str(err.value) and "auto" in str(err.value)
