"""scripts/cv_folds.py: grouped folds that never split an instruction, and a command line that refuses what it
cannot use before any fold trains."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cv_folds.py"


@pytest.fixture(scope="module")
def cv():
    spec = importlib.util.spec_from_file_location("cv_folds", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data(folder: Path, groups: int = 40) -> Path:
    folder.mkdir(parents=True)
    for split, share in (("train", range(0, 28)), ("dev", range(28, 32)), ("test", range(32, groups))):
        rows = [{"id": f"{g}-{n}", "group": f"g{g}"} for g in share for n in range(1 + g % 3)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _groups(path: Path) -> list[str]:
    return [json.loads(line)["group"] for line in path.read_text().splitlines()]


def test_every_item_is_tested_once_and_no_instruction_is_in_two_parts_of_a_fold(cv, tmp_path):
    data = _data(tmp_path / "data")
    cv.make_folds(data, tmp_path / "cv", 4)
    every = sorted(g for s in cv.SPLITS for g in _groups(data / f"{s}.jsonl"))
    tested = sorted(g for k in range(4) for g in _groups(tmp_path / "cv" / f"fold{k}" / "test.jsonl"))
    assert tested == every
    for k in range(4):
        parts = {s: set(_groups(tmp_path / "cv" / f"fold{k}" / f"{s}.jsonl")) for s in cv.SPLITS}
        assert parts["test"] and parts["train"] and parts["dev"], k
        assert not parts["test"] & parts["train"] and not parts["test"] & parts["dev"], k
        assert not parts["train"] & parts["dev"], k
    before = {k: (tmp_path / "cv" / f"fold{k}" / "test.jsonl").read_text() for k in range(4)}
    cv.make_folds(data, tmp_path / "cv", 4)  # seeded: a resumed run gets the same folds
    assert before == {k: (tmp_path / "cv" / f"fold{k}" / "test.jsonl").read_text() for k in range(4)}


@pytest.mark.parametrize(
    "argv, says",
    [
        (["run", "--data", "{missing}"], "has no train/dev/test.jsonl"),
        (["run", "--data", "{data}"], "run needs a recipe"),
        (["folds", "--data", "{data}", "configs/train/gemma3-cpu-sources.yaml"], "only run takes a recipe"),
        (["pool", "--max_steps=3"], "only run takes a recipe"),
        (["folds", "--data", "{data}", "--k", "1"], "--k must be at least 2"),
        (["run", "r.yaml", "--data", "{data}", "--train-fraction", "0"], "--train-fraction must be in (0, 1]"),
    ],
)
def test_what_the_command_cannot_use_is_a_usage_error_before_anything_runs(cv, tmp_path, capsys, argv, says):
    data = _data(tmp_path / "data")
    argv = [a.format(missing=tmp_path / "nowhere", data=data) for a in argv]
    with pytest.raises(SystemExit) as exc:
        cv.main([*argv, "--out", str(tmp_path / "cv")])
    assert exc.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "cv").exists()


def test_a_bad_recipe_or_override_is_one_error_each_before_any_fold_is_written(cv, tmp_path, capsys):
    data = _data(tmp_path / "data")
    recipe = "configs/train/gemma3-cpu-sources.yaml"
    out = ["--data", str(data), "--out", str(tmp_path / "cv")]
    assert cv.main(["run", "configs/train/nope.yaml", *out]) == 2
    assert "nope.yaml: file not found" in capsys.readouterr().err
    assert cv.main(["run", recipe, "--lora.rank=x", "--bogus=1", *out]) == 2
    err = capsys.readouterr().err
    assert "lora.rank" in err and "must be an integer" in err and "'bogus': unknown key" in err
    assert not (tmp_path / "cv").exists()
