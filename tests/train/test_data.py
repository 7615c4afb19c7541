"""Items -> training examples: the prompt is render()'s ids, the loss covers only the answer."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.errors import DataError
from data.render import render
from data.schema import Item
from data.spec import load_spec
from judge.hf_backend import label_token_ids
from tests.train.helpers import SPEC, pairwise_items
from train.config import DataOptions
from train.data import IGNORE, Source, build_examples, report_table, select_items


def source(items, split="train"):
    return Source("test", split, Path("items.jsonl"), "0" * 64, items)


def build(items, tokenizer, spec=None, max_length=10_000, **opts):
    spec = spec or load_spec(SPEC)
    return build_examples(source(items), spec, tokenizer, DataOptions(**opts), max_length)


def test_prompt_ids_are_render_token_ids_and_carry_no_loss(tokenizer):
    spec = load_spec(SPEC)
    items = pairwise_items(4)
    examples, _ = build(items, tokenizer, spec)
    by_id = {it.id: it for it in items}
    label_ids = dict(zip(spec.labels, label_token_ids(tokenizer, spec.labels)))
    for ex in examples:
        rendered = render(spec, by_id[ex.item_id], tokenizer, ex.order)
        assert ex.input_ids[: ex.prompt_len] == rendered.token_ids
        assert ex.labels[: ex.prompt_len] == [IGNORE] * ex.prompt_len
        target = ex.input_ids[ex.prompt_len :]
        assert ex.labels[ex.prompt_len :] == target
        # the verdict is the first answer token, the one scoring reads; then the template's end of turn
        assert target[0] == label_ids[ex.label]
        assert tokenizer.decode(target) == f"{ex.label}<|im_end|>\n"


def test_swap_doubles_pairwise_items_with_flipped_labels(tokenizer):
    items = pairwise_items(6)
    examples, report = build(items, tokenizer)
    assert len(examples) == 2 * len(items) and report.examples == 12 and report.used == 6
    pairs = {(e.item_id, e.order): e for e in examples}
    for item in items:
        ab, ba = pairs[(item.id, "ab")], pairs[(item.id, "ba")]
        assert ab.label == item.label
        assert ba.label == {"A": "B", "B": "A"}[item.label]
        assert ab.input_ids[: ab.prompt_len] != ba.input_ids[: ba.prompt_len]
    one_order, _ = build(items, tokenizer, both_orders=False)
    assert len(one_order) == len(items) and {e.order for e in one_order} == {"ab"}


def test_ties_stay_ties_in_both_orders(tokenizer):
    items = [it.model_copy(update={"label": "tie", "labels": ["tie", "A", "tie"]}) for it in pairwise_items(2)]
    examples, report = build(items, tokenizer)
    assert [e.label for e in examples] == ["tie"] * 4
    assert report.labels == {"tie": 2}


def test_excluded_labels_are_skipped_and_counted(tokenizer):
    items = pairwise_items(4) + [
        it.model_copy(update={"label": "tie", "id": f"tie{i}"}) for i, it in enumerate(pairwise_items(3))
    ]
    examples, report = build(items, tokenizer, exclude_labels=["tie"])
    assert len(examples) == 8 and report.skipped == {"label tie excluded": 3}


def test_labels_outside_the_label_space_stop_with_every_item_named(tokenizer):
    spec = load_spec(SPEC)
    bad = [it.model_copy(update={"label": "C", "id": f"bad{i}"}) for i, it in enumerate(pairwise_items(2))]
    with pytest.raises(DataError) as err:
        select_items(pairwise_items(3) + bad, spec, DataOptions(), "items.jsonl", {"bad0": 4, "bad1": 6})
    messages = [str(p) for p in err.value.problems]
    assert len(messages) == 2 and "bad0" in messages[0] and "bad1" in messages[1]
    assert messages[0].startswith("items.jsonl:4: field 'label'") and "'C' is not one of A, B, tie" in messages[0]
    assert messages[1].startswith("items.jsonl:6: field 'label'")


def test_a_tie_for_an_ab_judge_is_an_error_unless_excluded(tokenizer, tmp_path):
    spec = load_spec(SPEC)
    spec.labels = ["A", "B"]
    tie = pairwise_items(1)[0].model_copy(update={"label": "tie"})
    with pytest.raises(DataError, match="exclude_labels"):
        select_items([tie], spec, DataOptions(), "items.jsonl")
    kept, skipped = select_items([tie], spec, DataOptions(exclude_labels=["tie"]), "items.jsonl")
    assert kept == [] and skipped == {"label tie excluded": 1}


def test_majority_and_distribution_targets(tokenizer):
    item = pairwise_items(1)[0].model_copy(update={"labels": ["B", "A", "B"], "label": "A"})
    (ex_label, _), _ = build([item], tokenizer, target="label")
    (ex_major, _), _ = build([item], tokenizer, target="majority")
    (ab, ba), _ = build([item], tokenizer, target="distribution")
    assert ex_label.label == "A" and ex_major.label == "B"
    assert ab.target_probs == pytest.approx([1 / 3, 2 / 3, 0.0])  # over [A, B, tie]
    assert ba.target_probs == pytest.approx([2 / 3, 1 / 3, 0.0])  # responses swapped, so are the votes


def test_ordinal_targets_use_the_nearest_label_and_split_means_between_neighbours(tokenizer):
    spec = load_spec("summary-coherence")
    item = Item(
        id="s1",
        group="a1",
        kind="pointwise",
        instruction="Summarize the news article.",
        context="A fox jumped over a dog.",
        response="A fox jumped.",
        labels=[3, 4, 4],
        label=3.667,
    )
    (ex,), report = build([item], tokenizer, spec)
    assert ex.label == "4" and ex.order == "ab"
    (soft,), _ = build([item], tokenizer, spec, target="distribution")
    assert soft.target_probs == pytest.approx([0, 0, 1 / 3, 2 / 3, 0])
    mean_only = item.model_copy(update={"labels": [], "label": 3.25})
    (soft,), _ = build([mean_only], tokenizer, spec, target="distribution")
    assert soft.target_probs == pytest.approx([0, 0, 0.75, 0.25, 0])


def test_report_counts_class_balance_truncation_and_length_preference(tokenizer):
    spec = load_spec(SPEC)
    spec.max_prompt_tokens = 400
    items = pairwise_items(5)
    items[0] = items[0].model_copy(update={"response_a": "The quick brown fox jumps. " * 80})
    examples, report = build(items, tokenizer, spec)
    assert report.truncated == 2 and report.tokens_cut > 0  # both orders of the long item
    assert all(len(e.input_ids) - len(e.labels[e.prompt_len :]) <= 400 for e in examples)
    assert sum(report.labels.values()) == 5
    assert 0.0 <= report.longer_preferred <= 1.0
    table = report_table([report], spec, DataOptions())
    assert "truncated" in table and "longer wins" in table and "2 (" in table


def test_rationale_follows_the_label_so_the_verdict_stays_first(tokenizer):
    item = pairwise_items(1)[0]
    item = item.model_copy(update={"meta": {"rationale": "It mentions the fox."}})
    (ab, _), _ = build([item], tokenizer, rationale=True)
    assert tokenizer.decode(ab.input_ids[ab.prompt_len :]) == f"{item.label}\nIt mentions the fox.<|im_end|>\n"
    _, report = build(pairwise_items(2), tokenizer, rationale=True)
    assert report.skipped == {"no rationale": 2}


def test_examples_longer_than_max_length_are_dropped_and_counted(tokenizer):
    examples, report = build(pairwise_items(3), tokenizer, max_length=100)
    assert examples == [] and report.skipped == {"longer than max_length": 3}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.text(min_size=1, max_size=80), b=st.text(min_size=1, max_size=80), label=st.sampled_from(["A", "B", "tie"]))
def test_any_text_trains_on_exactly_the_rendered_prompt(tokenizer, a, b, label):
    spec = load_spec(SPEC)
    item = Item(id="x", group="g", kind="pairwise", instruction="Pick one.", response_a=a, response_b=b, label=label)
    examples, _ = build([item], tokenizer, spec)
    for ex in examples:
        assert ex.input_ids[: ex.prompt_len] == render(spec, item, tokenizer, ex.order).token_ids
        assert ex.labels.count(IGNORE) == ex.prompt_len


def test_length_balance_keeps_as_many_shorter_as_longer_wins(tokenizer):
    items = pairwise_items(40)  # the fox response is the longer one about half the time
    long_b = [
        it.model_copy(
            update={
                "id": f"l{i}",
                "response_b": it.response_b + " More words." * 20,
                "label": "B",
                "labels": ["B", "B", "A"],
            }
        )
        for i, it in enumerate(items[:20])
    ]
    items = items + long_b  # 20 more items where the longer response won
    plain, plain_report = build(items, tokenizer)
    balanced, report = build_examples(
        source(items), load_spec(SPEC), tokenizer, DataOptions(), 10_000, balance_length=True
    )
    assert plain_report.longer_preferred > 0.55 and report.longer_preferred == 0.5
    dropped = report.skipped["length balance"]
    assert dropped > 0 and report.used == plain_report.used - dropped and len(balanced) == 2 * report.used
    # the same items go every time (a hash of the ids), and the dev split is never balanced
    again, _ = build_examples(source(items), load_spec(SPEC), tokenizer, DataOptions(), 10_000, balance_length=True)
    assert [e.item_id for e in again] == [e.item_id for e in balanced]
