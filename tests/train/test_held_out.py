"""data.exclude_instructions_of: a held-out source's instructions are never trained on (leave-one-source-out)."""

from pathlib import Path

from data.config import load_config
from data.errors import ConfigError
from data.jsonl import write_jsonl
from data.schema import Item
from data.spec import load_spec
from tests.train.helpers import pairwise_items
from train.config import DataOptions, TrainConfig
from train.data import build_examples, load_sources


def _item(i: int, instruction: str, group: str) -> Item:
    return Item(
        id=f"h{i}",
        group=group,
        kind="pairwise",
        instruction=instruction,
        response_a="a",
        response_b="bb",
        label="A",
    )


def test_items_sharing_a_group_or_a_normalised_prompt_with_a_held_out_source_are_dropped(tmp_path, tokenizer):
    train = pairwise_items(6, "t")  # every one asks "Which response is about a fox?", groups tg0..tg5
    other = [
        Item(**{**it.model_dump(), "instruction": f"Question number {k}?", "id": f"o{k}", "group": f"og{k}"})
        for k, it in enumerate(pairwise_items(4, "o"))
    ]
    write_jsonl(tmp_path / "train.jsonl", train + other)
    # held out: one item with the same instruction spelled differently, one sharing only a group
    write_jsonl(
        tmp_path / "held.jsonl",
        [_item(0, "  which RESPONSE is about a fox ", "elsewhere"), _item(1, "Unrelated?", "og2")],
    )
    opts = DataOptions(exclude_instructions_of=[str(tmp_path / "held.jsonl")])
    (src,) = load_sources([str(tmp_path / "train.jsonl")], "train", opts)
    assert sorted(it.id for it in src.items) == ["o0", "o1", "o3"]
    assert src.held_out == 7
    assert set(src.lines) == {"o0", "o1", "o3"}
    _, report = build_examples(src, load_spec("helpfulness-pairwise"), tokenizer, opts, 10_000)
    assert report.items == 10 and report.skipped["instruction held out"] == 7


def test_without_held_out_sources_nothing_is_dropped(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", pairwise_items(3))
    (src,) = load_sources([str(tmp_path / "train.jsonl")], "train", DataOptions())
    assert len(src.items) == 3 and src.held_out == 0


def test_a_held_out_source_that_is_also_trained_on_or_missing_is_a_config_error(tmp_path, tiny_model_dir):
    train = str(tmp_path / "t.jsonl")
    write_jsonl(Path(train), pairwise_items(2))
    base = ["--spec=helpfulness-pairwise", f"--base_model={tiny_model_dir}", f"--data.train=[{train}]"]
    for held, needle in (
        (train, "both held out and trained on"),
        (str(tmp_path / "nope.jsonl"), "not found"),
        ("no-such-dataset", "no-such-dataset"),
    ):
        try:
            load_config(TrainConfig, None, [*base, f"--data.exclude_instructions_of=[{held}]"])
        except ConfigError as exc:
            assert any(p.field == "data.exclude_instructions_of" and needle in p.message for p in exc.problems), (
                exc.problems
            )
        else:
            raise AssertionError(f"{held} was accepted")
