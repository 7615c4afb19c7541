"""`judgeloop train all`: a criterion that stops on bad input does not stop the others; the command exits 2
naming it, and a rerun trains only what is left."""

import json

import pytest

from judgeloop import main as cli_main
from tests.workflows.criteria_helpers import tiny_criteria

pytestmark = pytest.mark.slow  # two tiny training runs: ~30 s on 2 cores


def test_a_broken_criterion_is_reported_and_the_others_train(tiny_model_dir, tmp_path, capsys):
    registry = tiny_criteria(tmp_path / "c", tiny_model_dir, names=("correctness", "coherence"))
    broken = tmp_path / "c" / "correctness-train.jsonl"
    lines = broken.read_text().splitlines()
    lines[2] = lines[2].replace('"label":', '"lable":')  # line 3: a typo in a field name
    broken.write_text("\n".join(lines) + "\n")

    assert cli_main(["train", "all", "--criteria", str(registry)]) == 2
    err = capsys.readouterr().err
    assert "criterion 'correctness' not trained" in err and f"{broken}:3" in err
    assert "1 criteria trained by this call" in err
    runs = tmp_path / "c" / "runs"
    assert (runs / "coherence" / "judge.json").exists() and not (runs / "correctness" / "judge.json").exists()
    assert set(json.loads((runs / "train_times.json").read_text())) == {"coherence"}

    broken.write_text("\n".join(l.replace('"lable":', '"label":') for l in lines) + "\n")
    assert cli_main(["train", "all", "--criteria", str(registry)]) == 0
    progress = capsys.readouterr().err  # progress goes to the judgeloop logger (stderr)
    assert "coherence: already trained" in progress and (runs / "correctness" / "judge.json").exists()
