"""data.mix: a training source's share of the training examples (repeated or sampled to it), the same every run,
reported in the data table, checked with every other config error, and carried through the demo's and loso's
rewritten source lists."""

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.config import load_config
from data.errors import ConfigError, DataError
from data.spec import load_spec
from tests.train.helpers import pairwise_items, tiny_config, write_items
from train.config import DataOptions, TrainConfig, load_train_config
from train.data import Example, SplitReport, mix_examples, report_table
from train.trainer import prepare_run

QUIET = lambda *a, **k: None  # noqa: E731


def _source(name: str, n: int) -> tuple[list[Example], SplitReport]:
    examples = [Example(f"{name}-{k}", "ab", "A", [1, 2], [-100, 2], 1) for k in range(n)]
    return examples, SplitReport("train", name, items=n, used=n, examples=n)


def test_a_small_source_is_repeated_to_its_share_and_the_others_are_kept_whole():
    made = [_source("mine", 10), _source("public", 90)]
    out = mix_examples(made, {"mine": 0.5}, seed=0)
    by_source = Counter(e.item_id.split("-")[0] for e in out)
    assert by_source == {"mine": 90, "public": 90}  # half of the result: 9 whole copies of its 10
    assert Counter(e.item_id for e in out if e.item_id.startswith("mine")) == {f"mine-{k}": 9 for k in range(10)}
    assert made[0][1].mixed == 90 and made[1][1].mixed is None


def test_the_fraction_beyond_whole_copies_is_a_seeded_sample_without_repeats():
    made = [_source("mine", 10), _source("public", 75)]
    out = mix_examples(made, {"mine": 0.25}, seed=3)  # 25 of 100: 2 copies + 5 sampled
    mine = Counter(e.item_id for e in out if e.item_id.startswith("mine"))
    assert sum(mine.values()) == 25 and sorted(Counter(mine.values()).items()) == [(2, 5), (3, 5)]
    again = mix_examples([_source("mine", 10), _source("public", 75)], {"mine": 0.25}, seed=3)
    assert [e.item_id for e in again] == [e.item_id for e in out]  # the same seed, the same examples
    other = mix_examples([_source("mine", 10), _source("public", 75)], {"mine": 0.25}, seed=4)
    assert Counter(e.item_id for e in other) != Counter(e.item_id for e in out)


def test_a_share_below_a_sources_natural_one_samples_it_down():
    made = [_source("big", 300), _source("small", 100)]
    out = mix_examples(made, {"big": 0.5}, seed=0)
    assert Counter(e.item_id.split("-")[0] for e in out) == {"big": 100, "small": 100}
    assert len({e.item_id for e in out if e.item_id.startswith("big")}) == 100  # no copies


def test_no_mix_keeps_every_example_once_in_order():
    made = [_source("a", 3), _source("b", 2)]
    assert [e.item_id for e in mix_examples(made, {}, seed=0)] == ["a-0", "a-1", "a-2", "b-0", "b-1"]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=2, max_size=4),
    shares=st.lists(st.floats(0.01, 0.3), min_size=1, max_size=3),
    seed=st.integers(0, 10),
)
def test_every_named_source_gets_its_share_to_within_one_example(sizes, shares, seed):
    named = dict(zip([f"s{k}" for k in range(len(sizes) - 1)], shares))  # the last source is never named
    made = [_source(f"s{k}", n) for k, n in enumerate(sizes)]
    out = mix_examples(made, named, seed)
    counts = Counter(e.item_id.split("-")[0] for e in out)
    rest = sum(n for k, n in enumerate(sizes) if f"s{k}" not in named)
    total = rest / (1 - sum(named.values()))
    for name, share in named.items():
        assert abs(counts[name] - max(1, share * total)) <= 1, (name, counts)
    for k, n in enumerate(sizes):
        if f"s{k}" not in named:
            assert counts[f"s{k}"] == n


def test_mix_errors_are_data_errors_naming_the_field():
    with pytest.raises(DataError) as exc:
        mix_examples([_source("mine", 0), _source("public", 5)], {"mine": 0.5}, seed=0)
    assert exc.value.first.field == "data.mix.mine"
    with pytest.raises(DataError) as exc:
        mix_examples([_source("mine", 5), _source("public", 0)], {"mine": 0.5}, seed=0)
    assert exc.value.first.field == "data.mix"


def test_the_data_table_shows_the_mixed_count_and_share():
    made = [_source("mine", 10), _source("public", 90)]
    mix_examples(made, {"mine": 0.5}, seed=0)
    table = report_table([r for _, r in made], load_spec("helpfulness-pairwise"), DataOptions(mix={"mine": 0.5}))
    assert "10 -> 90 (mix 50%)" in table and "data.mix:" in table


def test_every_mix_error_is_reported_at_once():
    base = ["--spec=helpfulness-separate", "--data.train=[pandalm,llmeval2,tulu1-human]"]
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, None, [*base, "--data.mix={pandalm: 1.5, lfqa-experts: 0.1, llmeval2: x}"])
    assert {p.field for p in exc.value.problems} == {"data.mix.pandalm", "data.mix.lfqa-experts", "data.mix.llmeval2"}
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, None, [*base, "--data.mix={pandalm: 0.6, llmeval2: 0.5}"])
    assert [p.field for p in exc.value.problems] == ["data.mix"] and "1.1" in exc.value.problems[0].message
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, None, [*base, "--data.mix={pandalm: 0.3, llmeval2: 0.3, tulu1-human: 0.3}"])
    assert [p.field for p in exc.value.problems] == ["data.mix"] and "leave at least one" in str(exc.value)


def test_a_run_trains_the_mixed_examples(tmp_path, tiny_model_dir):
    mine = write_items(tmp_path / "mine.jsonl", pairwise_items(4, "m", seed=2))
    cfg = tiny_config(tmp_path, tiny_model_dir)
    public = cfg.data.train[0]  # 16 items, both orders: 32 examples
    cfg = tiny_config(tmp_path, tiny_model_dir, f"--data.train=[{mine},{public}]", f'--data.mix={{"{mine}": 0.5}}')
    run = prepare_run(cfg, progress=QUIET)
    counts = Counter(e.item_id[0] for e in run.examples)
    assert counts == {"m": 32, "t": 32}  # 4 items x 2 orders, repeated 4 times
    assert "8 -> 32 (mix 50%)" in run.table
    assert [r.mixed for r in run.reports if r.split == "train"] == [32, None]


def test_the_demo_gives_the_recipes_pandalm_share_to_its_split_and_loso_drops_a_left_out_sources(tmp_path):
    from workflows.demo import train_args
    from workflows.loso import fold_overrides

    recipe = Path("configs/train/smollm2-cpu-sources.yaml")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for split in ("train", "dev", "test"):
        write_items(data_dir / f"{split}.jsonl", pairwise_items(2, split))
    args = train_args(tmp_path / "demo", data_dir, recipe, ["--data.mix={pandalm: 0.4, tulu1-human: 0.1}"])
    cfg = load_train_config(recipe, args)
    assert cfg.data.mix == {str(data_dir / "train.jsonl"): 0.4, "tulu1-human": 0.1}
    fold = load_train_config(recipe, fold_overrides("tulu1-human", recipe, tmp_path, ["--data.mix={pandalm: 0.4}"]))
    assert fold.data.mix == {"pandalm": 0.4}
    fold = load_train_config(recipe, fold_overrides("pandalm", recipe, tmp_path, ["--data.mix={pandalm: 0.4}"]))
    assert fold.data.mix == {} and "pandalm" not in fold.data.train
    two = ["--data.train=[pandalm,llmeval2]", "--data.mix={pandalm: 0.4}"]
    fold = load_train_config(recipe, fold_overrides("llmeval2", recipe, tmp_path, two))
    assert fold.data.mix == {}  # pandalm alone is left: nothing would fill the rest


def test_copies_side_by_side_are_spread_over_batches():
    from train.trainer import spread_copies

    keys = [f"k{i // 9}" for i in range(90)]  # 10 examples x 9 copies, each example's copies adjacent
    out = spread_copies(list(range(90)), keys, batch_size=2)
    assert sorted(out) == list(range(90))
    batches = [out[b : b + 2] for b in range(0, 90, 2)]
    assert all(keys[x] != keys[y] for x, y in batches)
    assert max(abs(out.index(i) - i) for i in range(90)) <= 18  # local: within two examples' copies


@settings(max_examples=80, deadline=None)
@given(keys=st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=40), batch=st.integers(1, 4))
def test_spreading_is_a_permutation_that_never_adds_a_repeat_to_a_batch(keys, batch):
    from train.trainer import spread_copies

    def repeats(order):
        return sum(
            len(b) - len({keys[i] for i in b}) for b in (order[s : s + batch] for s in range(0, len(order), batch))
        )

    out = spread_copies(list(range(len(keys))), keys, batch)
    assert sorted(out) == list(range(len(keys))) and repeats(out) <= repeats(list(range(len(keys))))


def test_the_trainer_keeps_a_mixed_examples_copies_out_of_one_step(tmp_path, tiny_model_dir):
    mine = write_items(tmp_path / "mine.jsonl", pairwise_items(3, "m", seed=2))
    public = write_items(tmp_path / "public.jsonl", pairwise_items(12, "t"))
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        f"--data.train=[{mine},{public}]",
        f'--data.mix={{"{mine}": 0.6}}',
        "--data.both_orders=false",
    )
    run = prepare_run(cfg, progress=QUIET)
    sampler = run.trainer._get_train_sampler()
    order = list(sampler)
    keys = [f"{e.item_id}\0{e.order}" for e in run.examples]
    size = sampler.batch_size
    assert sorted(order) == list(range(len(run.examples))) and sum(keys.count(k) > 1 for k in set(keys)) == 3
    assert all(
        len({keys[i] for i in b}) == len(b) for b in (order[s : s + size] for s in range(0, len(order) - size, size))
    )


def test_the_judge_card_records_the_shares(tmp_path, tiny_model_dir):
    import json

    from train.trainer import train

    mine = write_items(tmp_path / "mine.jsonl", pairwise_items(4, "m", seed=2))
    cfg = tiny_config(tmp_path, tiny_model_dir)
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        f"--data.train=[{mine},{cfg.data.train[0]}]",
        f'--data.mix={{"{mine}": 0.5}}',
        "--max_steps=2",
    )
    result = train(cfg, progress=QUIET)
    card = json.loads((result.run_dir / "card.json").read_text())
    assert card["data"]["training_examples"] == 64 and card["config"]["data"]["mix"] == {mine: 0.5}
    assert [r["mixed"] for r in card["data"]["report"] if r["split"] == "train"] == [32, None]
    assert f"{mine} 8 -> 32 (50%)" in (result.run_dir / "card.md").read_text()


def test_the_demos_recipe_is_the_sources_recipe_with_pandalm_at_half():
    from data.config import to_dict
    from workflows.demo import DEFAULT_RECIPE

    assert DEFAULT_RECIPE == "gemma3-cpu-mix.yaml"

    mix = to_dict(load_train_config(Path("configs/train/gemma3-cpu-mix.yaml"), []))
    sources = to_dict(load_train_config(Path("configs/train/gemma3-cpu-sources.yaml"), []))
    assert mix["data"].pop("mix") == {"pandalm": 0.5} and sources["data"].pop("mix") == {}
    assert mix.pop("output_dir") != sources.pop("output_dir") and mix == sources
