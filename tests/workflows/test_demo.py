"""The demo's own logic: the served-equals-validated check and the summary figures."""

import json
from pathlib import Path

from data.schema import JudgeRef, Verdict
from eval.result import Interval, ValidationResult
from workflows.demo import _figures, _same_verdicts

GOLDEN = Path(__file__).parent.parent / "eval" / "golden" / "validation-pairwise-v1.json"

J = JudgeRef(name="j", fingerprint="f" * 64)


def v(id_, verdict="A", pa=0.7, judge=J):
    return Verdict(id=id_, verdict=verdict, probs={"A": pa, "B": 1 - pa}, judge=judge)


def test_same_verdicts_catches_every_kind_of_difference():
    validated = [v("1"), v("2", "B", 0.2)]
    assert _same_verdicts([v("1"), v("2", "B", 0.2)], validated) == (True, "")
    ok, why = _same_verdicts([v("1"), v("2", "A", 0.6)], validated)
    assert not ok and "2: served A vs validated B" in why
    ok, why = _same_verdicts([v("1", pa=0.7002), v("2", "B", 0.2)], validated)
    assert not ok and "probabilities differ" in why
    other = JudgeRef(name="j", fingerprint="e" * 64)
    ok, why = _same_verdicts([v("1", judge=other), v("2", "B", 0.2)], validated)
    assert not ok and "fingerprint" in why
    ok, why = _same_verdicts([v("1")], validated)
    assert not ok and "1 served vs 2 validated" in why


def test_figures_read_the_validation_schema():
    result = ValidationResult.load(GOLDEN)
    result.metrics["accuracy"] = Interval(value=0.7, ci_low=0.6, ci_high=0.8)
    result.bias.swap_consistency = 0.9
    result.length_control.acc_shorter_preferred = 0.55
    result.length_control.acc_longer_preferred = 0.8
    assert _figures(result) == {
        "accuracy": 0.7,
        "accuracy_ci": [0.6, 0.8],
        "swap_consistency": 0.9,
        "acc_shorter_preferred": 0.55,
        "acc_longer_preferred": 0.8,
    }


def test_an_interrupted_validation_is_scored_again_not_refused(tmp_path):
    """A run killed as scoring began leaves an empty or torn verdicts file: the rerun scores again."""
    from data.schema import Item, JudgeRef, Verdict
    from workflows.steps import finished_verdicts as _finished_verdicts

    items = [Item(id=f"i{k}", group="g", kind="binary", instruction="q", response="r", labels=["yes"]) for k in (0, 1)]
    ref = JudgeRef(name="j", fingerprint="f" * 16)
    path = tmp_path / "verdicts.jsonl"
    assert _finished_verdicts(path, items, lambda: ref.fingerprint) is None  # none yet
    path.write_text("")
    assert _finished_verdicts(path, items, lambda: ref.fingerprint) is None  # empty
    lines = [Verdict(id=i.id, verdict="yes", judge=ref).model_dump_json() for i in items]
    path.write_text(lines[0] + "\n" + lines[1][:20])
    assert _finished_verdicts(path, items, lambda: ref.fingerprint) is None  # torn
    path.write_text(lines[0] + "\n" + lines[1] + "\n")
    assert [v.id for v in _finished_verdicts(path, items, lambda: ref.fingerprint)] == ["i0", "i1"]
    assert _finished_verdicts(path, items, lambda: "another judge") is None


def test_a_rerun_reuses_the_served_verdicts_only_when_production_and_the_items_are_the_same(tmp_path):
    """The serve stage starts no server on a rerun when the verdicts through the API are complete and by the
    judge production serves now; another judge, a missing item or a missing speed record serves again."""
    from data.schema import Item
    from workflows.demo import SERVED_FILE, SERVED_RECORD, _served_before

    items = [Item(id=f"i{k}", group="g", kind="binary", instruction="q", response="r", labels=["yes"]) for k in (0, 1)]
    assert _served_before(tmp_path, J.fingerprint, items) == (None, None)  # nothing served yet
    (tmp_path / SERVED_FILE).write_text("".join(v(i.id).model_dump_json() + "\n" for i in items))
    assert _served_before(tmp_path, J.fingerprint, items) == (None, None)  # verdicts, but no record of the run
    (tmp_path / SERVED_RECORD).write_text(json.dumps({"fingerprint": J.fingerprint, "judgments_per_s": 8.5}))
    served, per_s = _served_before(tmp_path, J.fingerprint, items)
    assert [x.id for x in served] == ["i0", "i1"] and per_s == 8.5
    assert _served_before(tmp_path, "e" * 64, items) == (None, None)  # production changed (the gate passed)
    more = [*items, Item(id="i2", group="g", kind="binary", instruction="q", response="r", labels=["yes"])]
    assert _served_before(tmp_path, J.fingerprint, more) == (None, None)  # another test split


def test_the_demo_trains_no_instruction_of_its_test_split_from_any_source(tmp_path, mirror):
    """The demo's recipe mixes other sources into PandaLM's demo split: every item that shares an instruction
    with the demo's test split is dropped (tulu1-human shares 169 instructions with PandaLM). With the same split
    seed the cross-source key already keeps them apart (the demo's 20% test lies in the registry's dev and
    test); another seed for the other sources would not, and the exclusion is what keeps the test split clean."""
    from data.grouping import item_keys
    from data.jsonl import read_jsonl
    from data.paths import CONFIGS_DIR
    from data.schema import Item
    from train.config import load_train_config
    from train.data import load_sources
    from workflows.demo import _prepare_data, train_args

    recipe = CONFIGS_DIR / "train" / "smollm2-cpu-sources.yaml"  # the default's sources on the tests' model
    data_dir = _prepare_data(tmp_path / "demo")
    test_keys = set().union(*(item_keys(i) for i in read_jsonl(data_dir / "test.jsonl", Item)))
    for seed, held in ((0, 0), (1, 1)):
        prepared = f"--data.prepared_dir={tmp_path / f'prepared-{seed}'}"
        args = train_args(tmp_path / "demo", data_dir, recipe, [prepared, f"--data.split_seed={seed}"])
        cfg = load_train_config(recipe, args)
        assert cfg.data.train[0] == str(data_dir / "train.jsonl") and "pandalm" not in cfg.data.train
        assert "tulu1-human" in cfg.data.train
        assert cfg.data.exclude_instructions_of == [str(data_dir / "test.jsonl")]
        sources = {s.name: s for s in load_sources(cfg.data.train, "train", cfg.data, progress=lambda *_: None)}
        assert (sources["tulu1-human"].held_out > 0) == bool(held), seed
        for source in sources.values():
            assert not any(item_keys(i) & test_keys for i in source.items), (seed, source.name)
    # a recipe on PandaLM alone holds nothing out
    alone = train_args(tmp_path / "demo", data_dir, CONFIGS_DIR / "train" / "smollm2-cpu.yaml")
    assert not any(a.startswith("--data.exclude_instructions_of") for a in alone)
