"""Synthetic pairs that teach instruction-following (data.off_instruction_negatives, data.padded_negatives):
the training split's only, weighted, counted apart from the human pairs, rendered like them."""

import json
from pathlib import Path

import pytest

from data.config import load_config
from data.errors import ConfigError
from data.render import render_response
from data.schema import Item
from data.spec import load_spec
from tests.train.helpers import tiny_config, write_items
from train.config import DataOptions, TrainConfig
from train.data import Source, build_examples, length_weights, report_table, select_items
from train.negatives import PAD_SEPARATOR, negative_items

SPEC = "helpfulness-separate"
QUIET = lambda *a, **k: None  # noqa: E731
# three pairs of similar instructions: each one's nearest neighbour is its partner
INSTRUCTIONS = [
    "Write a short poem about the sea.",
    "Write a short poem about the ocean waves.",
    "Explain how a car engine works.",
    "Explain how a diesel engine works.",
    "Give me a recipe for tomato soup.",
    "Give me a recipe for onion soup.",
]


def item(k: int, instruction: str, label: str = "A", group: str | None = None) -> Item:
    win, lose = f"good answer {k} to: {instruction.lower()}", f"bad {k}"
    a, b = (win, lose) if label != "B" else (lose, win)
    return Item(
        id=f"i{k}",
        group=group or f"g{k}",
        kind="pairwise",
        instruction=instruction,
        response_a=a,
        response_b=b,
        labels=[label],
        label=label,
    )


def items() -> list[Item]:
    out = [item(k, text, "AB"[k % 2]) for k, text in enumerate(INSTRUCTIONS)]
    out.append(item(6, INSTRUCTIONS[0], group="g0"))  # a second pair of the sea poem's group
    out.append(item(7, "write a short poem about the SEA", group="g7"))  # the same instruction, normalised
    out.append(item(8, "Write a limerick about a cat.", label="tie"))  # undecided: gives and gets nothing
    return out


def build(its, tokenizer, split="train", negatives=True, max_length=10_000, spec=None, **opts):
    source = Source("t", split, Path(f"{split}.jsonl"), "0" * 64, its)
    options = DataOptions(**{"exclude_labels": [], **opts})
    return build_examples(source, spec or load_spec(SPEC), tokenizer, options, max_length, negatives=negatives)


def pair_texts(example, tokenizer):
    """Each pair's two single-response prompts as text, and its weight."""
    starts = [sum(example.segments[:k]) for k in range(len(example.segments) + 1)]
    prompt = lambda s: tokenizer.decode(example.input_ids[starts[s] : starts[s + 1]])  # noqa: E731
    return [(prompt(a), prompt(b), w) for (a, b), w in zip(example.pairs, example.pair_weights)]


def selected(its):
    return select_items(its, load_spec(SPEC), DataOptions(), "t.jsonl")[0]


def test_neighbours_are_the_most_similar_other_instructions():
    negs = negative_items(selected(items()), k=1, padded=False)
    borrowed = {n.of: n.borrowed_from for n in negs}
    assert borrowed["i0"] == borrowed["i6"] == INSTRUCTIONS[1] and borrowed["i1"] == INSTRUCTIONS[0]
    assert borrowed["i2"] == INSTRUCTIONS[3] and borrowed["i4"] == INSTRUCTIONS[5]
    # never the item's own group nor the same normalised instruction; a tie neither gives nor gets a negative
    assert "i8" not in borrowed and all("limerick" not in b for b in borrowed.values())
    assert borrowed["i7"] == INSTRUCTIONS[1]
    for n in negs:  # the item's instruction, its own preferred response (as A, to win) against the neighbour's
        assert n.item.instruction == next(it.instruction for it in items() if it.id == n.of)
        assert n.item.label == "A" and n.item.response_a.startswith("good answer") and n.item.group.startswith("g")
        assert n.item.response_b.startswith("good answer") and n.item.response_b != n.item.response_a
    assert len(negative_items(selected(items()), k=3, padded=False)) == 3 * 8
    assert negative_items(selected(items()), k=2, padded=True) == negative_items(selected(items()), 2, True)
    only_stop_words = [item(0, "What is it?"), item(1, "Who is he?")]
    assert [n.kind for n in negative_items(selected(only_stop_words), k=1, padded=True)] == ["padded", "padded"]


def test_train_gets_k_weighted_negatives_per_item_dev_gets_none(tokenizer):
    dev, dev_report = build(items(), tokenizer, "dev", negatives=False, off_instruction_negatives=2)
    human, _ = build(items(), tokenizer, negatives=False)
    assert dev_report.synthetic == {} and [e.pairs for e in dev] == [e.pairs for e in human]
    assert all(w == 1.0 for e in dev for w in e.pair_weights)

    train, report = build(items(), tokenizer, off_instruction_negatives=2, negative_weight=0.25)
    assert (
        report.synthetic == {"off_instruction": 16} and report.used == 9 and report.labels == {"A": 5, "B": 3, "tie": 1}
    )
    pairs = [p for e in train for p in pair_texts(e, tokenizer)]
    assert len(pairs) == 9 + 16 and sorted(w for *_, w in pairs) == [0.25] * 16 + [1.0] * 9
    spec = load_spec(SPEC)
    for e in train:  # a negative joins its item's group: the preferred response's prompt is shared, not repeated
        assert len(
            {tuple(e.input_ids[sum(e.segments[:k]) : sum(e.segments[: k + 1])]) for k in range(len(e.segments))}
        ) == len(e.segments)
    sea = next(e for e in train if e.item_id == "g0")
    synthetic = [(a, b) for a, b, w in pair_texts(sea, tokenizer) if w == 0.25]
    assert len(synthetic) == 4  # two items, two neighbours each
    own = tokenizer.decode(render_response(spec, items()[0], tokenizer, "a").token_ids)
    assert (own, synthetic[0][1]) == synthetic[0] and "ocean waves" in synthetic[0][1]
    assert "poem about the sea" in synthetic[0][1]  # read with this item's instruction


def test_padded_negatives_append_another_instructions_response(tokenizer):
    train, report = build(items(), tokenizer, padded_negatives=True)
    assert report.synthetic == {"padded": 8}
    negs = [n for n in negative_items(selected(items()), 0, True)]
    for n in negs:
        good, _, other = n.item.response_b.partition(PAD_SEPARATOR)
        assert good == n.item.response_a and other.startswith("good answer") and n.borrowed_from != n.item.instruction
    sea = next(e for e in train if e.item_id == "g0")
    (a, b, w), *_ = [p for p in pair_texts(sea, tokenizer) if p[2] == 0.5]
    own = "good answer 0 to: write a short poem about the sea."
    assert own in a and f"{own}{PAD_SEPARATOR}good answer" in b and w == 0.5


def test_a_negative_that_does_not_fit_max_length_is_skipped_and_counted(tokenizer):
    spec = load_spec(SPEC)
    its = items()
    longest = max(render_response(spec, it, tokenizer, s).n_tokens for it in its for s in "ab")
    _, report = build(its, tokenizer, max_length=longest + 1, padded_negatives=True, off_instruction_negatives=1)
    assert report.used == 9 and "longer than max_length" not in report.skipped  # every human pair fits
    assert report.synthetic["padded"] == 0 and report.synthetic_skipped == {"padded: longer than max_length": 8}
    assert report.synthetic["off_instruction"] > 0


def test_negatives_respect_max_group_responses(tokenizer):
    train, report = build(items(), tokenizer, off_instruction_negatives=2, max_group_responses=2)
    assert all(len(e.segments) <= 2 for e in train) and sum(len(e.pairs) for e in train) == 9 + 16


def test_length_weights_stay_on_the_human_pairs(tokenizer):
    its = items()
    opts = dict(balance_method="weight", off_instruction_negatives=1, padded_negatives=True, negative_weight=0.5)
    source = Source("t", "train", Path("t.jsonl"), "0" * 64, its)
    spec = load_spec(SPEC)
    plain, plain_report = build_examples(
        source, spec, tokenizer, DataOptions(balance_method="weight"), 10_000, balance_length=True
    )
    train, report = build_examples(
        source, spec, tokenizer, DataOptions(**opts), 10_000, balance_length=True, negatives=True
    )
    weights = length_weights(selected(its))
    human = [w for e in plain for w in e.pair_weights]
    assert sorted(human) == pytest.approx(sorted(weights))
    assert sorted(w for e in train for w in e.pair_weights) == pytest.approx(sorted(human + [0.5] * 16))
    assert (report.longer_preferred, report.longer_weight, report.used, report.labels) == (
        plain_report.longer_preferred,
        plain_report.longer_weight,
        plain_report.used,
        plain_report.labels,
    )
    table = report_table([report], spec, DataOptions(**opts))
    assert "synthetic pairs" in table and "8 off-instruction, 8 padded" in table and "training split only" in table


def test_joint_mode_refuses_negatives(tokenizer):
    with pytest.raises(ConfigError) as exc:
        build(items(), tokenizer, spec=load_spec("helpfulness-pairwise"), padded_negatives=True)
    assert exc.value.first.field == "data.padded_negatives"
    _, report = build(items(), tokenizer, "dev", negatives=False, spec=load_spec("helpfulness-pairwise"))
    assert report.synthetic == {}


@pytest.mark.parametrize(
    "spec,overrides,field",
    [
        (SPEC, ["--data.off_instruction_negatives=-1"], "data.off_instruction_negatives"),
        (SPEC, ["--data.negative_weight=0"], "data.negative_weight"),
        ("helpfulness-pairwise", ["--data.padded_negatives=true"], "data.padded_negatives"),
        ("helpfulness-pairwise", ["--data.off_instruction_negatives=1"], "data.off_instruction_negatives"),
        ("answer-correctness", ["--data.off_instruction_negatives=1"], "data.off_instruction_negatives"),
    ],
)
def test_bad_negative_options_name_the_field(tmp_path, tiny_model_dir, spec, overrides, field):
    train = write_items(tmp_path / "train.jsonl", items())
    args = [f"--spec={spec}", f"--base_model={tiny_model_dir}", f"--data.train={train}", *overrides]
    with pytest.raises(ConfigError) as exc:
        load_config(TrainConfig, None, args)
    assert field in {p.field for p in exc.value.problems}, exc.value


def test_a_run_records_its_synthetic_pairs_train_only(tmp_path, tiny_model_dir):
    from train.trainer import train

    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        f"--spec={SPEC}",
        "--data.off_instruction_negatives=1",
        "--data.padded_negatives=true",
        f"--data.train={write_items(tmp_path / 'negatives.jsonl', items())}",
        "--max_steps=2",
    )
    run = train(cfg, progress=QUIET).run_dir
    report = json.loads((run / "data_report.json").read_text())
    assert [r["split"] for r in report] == ["train", "dev"] and report[1]["synthetic"] == {}
    assert report[0]["synthetic"] == {"off_instruction": 8, "padded": 8}
    card = json.loads((run / "card.json").read_text())
    assert card["data"]["synthetic"]["weight"] == 0.5 and card["data"]["synthetic"]["splits"] == ["train"]
    assert card["config"]["data"]["off_instruction_negatives"] == 1 and card["config"]["data"]["padded_negatives"]
    assert "added to the training split only" in (run / "card.md").read_text()
    saved = load_config(TrainConfig, run / "config.yaml")
    assert saved.data.off_instruction_negatives == 1 and saved.data.negative_weight == 0.5
