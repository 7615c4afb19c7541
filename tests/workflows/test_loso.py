"""`judgeloop loso`: the fold commands, the row a validation becomes, the table, and bad input before any training."""

from pathlib import Path

import pytest

from data.errors import JudgeloopError
from data.schema import JudgeRef, Verdict
from data.spec import load_spec
from eval.bias import longer_rule_verdicts
from eval.harness import evaluate
from tests.eval.helpers import pairwise_items
from train.config import load_train_config
from workflows.loso import LosoResult, fold_overrides, fold_row, markdown, run_loso

RECIPE = Path("configs/train/smollm2-cpu-sources.yaml")


def test_a_fold_trains_the_recipe_without_the_left_out_source_its_cap_or_its_instructions(tmp_path):
    args = fold_overrides(
        "llmeval2", RECIPE, tmp_path, ["--max_steps=3", "--data.train=[pandalm,llmeval2,tulu1-human]"]
    )
    cfg = load_train_config(RECIPE, args)
    assert cfg.data.train == ["pandalm", "tulu1-human"]  # the user's sources, less the one left out
    assert cfg.data.max_items == {}  # the recipe capped llmeval2: no cap on a source not trained on
    assert cfg.data.exclude_instructions_of == ["llmeval2"]
    assert cfg.max_steps == 3 and cfg.output_dir == str(tmp_path / "llmeval2" / "train")
    kept = load_train_config(RECIPE, fold_overrides("hhh-alignment", RECIPE, tmp_path, []))
    assert kept.data.max_items == {"llmeval2": 600} and "hhh-alignment" not in kept.data.train


def _result(judge_follows_length: bool):
    items = pairwise_items(240, group_size=2)
    ref = JudgeRef(name="j", fingerprint="f" * 64)
    verdicts = []
    for it in items:
        longer = "A" if len(it.response_a) > len(it.response_b) else "B"
        pick = longer if judge_follows_length else (it.label if it.label in ("A", "B") else "A")
        p = 0.8
        verdicts.append(
            Verdict(id=it.id, verdict=pick, probs={pick: p, ("B" if pick == "A" else "A"): 1 - p}, judge=ref)
        )
    spec = load_spec("helpfulness-separate")
    # a source's own reference judge: always "A", on half the items
    always_a = [Verdict(id=it.id, verdict="A", judge=JudgeRef(name="a", fingerprint="a" * 64)) for it in items[::2]]
    refs = {"pick-the-longer": longer_rule_verdicts(items), "always-a": always_a}
    return evaluate(items, verdicts, spec, reference_verdicts=refs, n_boot=200)


def test_a_judge_that_knows_the_labels_meets_the_bar_and_a_length_rule_does_not():
    good = fold_row("s", _result(False), "judgeloop train x", Path("v.json"), commit="aaa")
    assert good.judge.value == 1.0 and good.judge_minus_longer.ci_low > 0
    assert good.shorter_preferred.value == 1.0 and good.beyond_length.ci_low > 0 and good.meets is True
    lazy = fold_row("s", _result(True), "judgeloop train y", Path("v.json"), commit="bbb")
    assert lazy.judge_minus_longer.value == pytest.approx(0.0)
    assert lazy.shorter_preferred.value == 0.0 and lazy.meets is False
    table = markdown(
        LosoResult(
            created="now",
            recipe="r.yaml",
            recipe_sha256="0" * 64,
            overrides=[],
            sources=["s"],
            max_items=None,
            rows=[good, lazy],
            git_commit="aaa",
            versions={},
            seconds=1.0,
        )
    )
    assert table.count("| s | 240 (") == 2 and "| yes |" in table and "| no |" in table
    # a fold that trained on other code than the run started with says so; one on the run's code does not
    assert "`judgeloop train y` (git bbb)" in table and "`judgeloop train x`\n" in table
    assert "git aaa" in table
    # a source made of parts (here meta.source 'alpha' and 'beta') is also shown part by part
    assert [p.part for p in good.parts] == ["alpha", "beta"] and all(p.judge.value == 1.0 for p in good.parts)
    assert sum(p.n for p in good.parts) == good.n and all(0 < p.longer < 1 for p in lazy.parts)
    # the source's own reference judges (not pick-the-longer, which has its columns), paired on their items
    assert set(good.references) == {"always-a"} and good.references["always-a"].n < good.n
    assert good.references["always-a"].judge_minus.ci_low > 0 and "| s | always-a |" in table
    assert "| s | alpha |" in table and table.count("| s | beta |") == 2


def test_a_source_brings_its_registered_reference_judges(mirror):
    from workflows.loso import source_references

    refs = source_references("pandalm")
    assert set(refs) == {"pandalm-7b", "gpt-3.5-turbo"} and all(len(v) == 999 for v in refs.values())
    assert source_references("hhh-alignment") == {}


@pytest.mark.parametrize(
    "overrides, sources, only, needle",
    [
        (["--data.train=[pandalm,summeval-coherence]", "--data.max_items={}"], [], [], "pointwise"),
        ([], ["vicuna80-human"], [], "not a registered dataset in the recipe"),
        (["--data.train=[pandalm]", "--data.max_items={}"], [], [], "a fold needs the others"),
        ([], [], ["hh-rlhf-harmless"], "not among"),
        ([], ["no-such-set"], [], "no-such-set"),
    ],
)
def test_bad_sources_stop_before_any_fold_trains(tmp_path, overrides, sources, only, needle):
    with pytest.raises(JudgeloopError, match=needle):
        run_loso(RECIPE, sources, tmp_path, overrides, only=only)
    assert not any(tmp_path.iterdir())


def test_a_bad_train_override_is_named_before_any_fold_trains(tmp_path):
    with pytest.raises(JudgeloopError) as exc:
        run_loso(RECIPE, [], tmp_path, ["--max_stepz=3"])
    fields = {p.field for p in exc.value.problems}
    assert "max_stepz" in fields
    assert not any(tmp_path.iterdir())


def test_the_committed_schema_is_current():
    from data.paths import REPO_ROOT
    from workflows.loso import schema_text

    committed = (REPO_ROOT / "docs" / "schemas" / "loso.schema.json").read_text()
    assert committed == schema_text(), "python -m workflows.loso --schema > docs/schemas/loso.schema.json"
