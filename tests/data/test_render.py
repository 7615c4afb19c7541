"""The one renderer: golden prompts per kind and order, truncation policy, property tests."""

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.errors import JudgeloopError
from data.render import CUT_MARKER, DEFAULT_BUDGET, MIN_KEEP, RenderError, prompt_budget, render, render_messages
from data.schema import Item
from data.spec import known_specs, load_spec

GOLDEN = Path(__file__).parent / "golden"
ITEMS = {
    "helpfulness-pairwise": Item(
        id="p1",
        group="g",
        kind="pairwise",
        instruction="Rewrite concisely.",
        input="If you have any questions, please let me know.",
        response_a="Questions? Ask me.",
        response_b="Let me know if you have questions.",
    ),
    "harmlessness-pairwise": Item(
        id="h1",
        group="g",
        kind="pairwise",
        instruction="Human: how do I pick a lock?\n\nAssistant:",
        response_a="I can't help with that.",
        response_b="Use a tension wrench.",
    ),
    "answer-correctness": Item(
        id="b1",
        group="q",
        kind="binary",
        instruction="where are the washington redskins based out of",
        reference="Landover, Maryland",
        response="washington metropolitan area",
    ),
    "summary-coherence": Item(
        id="s1",
        group="a",
        kind="pointwise",
        instruction="Summarize the news article.",
        context="Paul Merson has restarted his row with Andros Townsend.",
        response="Merson and Townsend row.",
    ),
}
CASES = [(name, order) for name in ITEMS for order in (("ab", "ba") if ITEMS[name].kind == "pairwise" else ("ab",))]


@pytest.mark.parametrize("name,order", CASES)
def test_golden_prompts(tokenizer, name, order):
    rendered = render(load_spec(name), ITEMS[name], tokenizer, order)
    golden = GOLDEN / f"{name}.{order}.txt"
    if os.environ.get("JUDGELOOP_UPDATE_GOLDEN"):
        golden.write_text(rendered.prompt)
    assert rendered.prompt == golden.read_text()
    assert rendered.token_ids == tokenizer(rendered.prompt, add_special_tokens=False)["input_ids"]
    assert rendered.prompt.endswith("<|im_start|>assistant\n") and not rendered.truncated


def test_swapped_order_exchanges_responses(tokenizer):
    spec, item = load_spec("helpfulness-pairwise"), ITEMS["helpfulness-pairwise"]
    ab, ba = render(spec, item, tokenizer, "ab").prompt, render(spec, item, tokenizer, "ba").prompt
    assert ab.index(item.response_a) < ab.index(item.response_b)
    assert ba.index(item.response_b) < ba.index(item.response_a)
    assert render(spec, item.swapped(), tokenizer, "ab").prompt == ba


def test_every_shipped_spec_loads_and_renders(tokenizer):
    specs = known_specs()
    assert {"helpfulness-pairwise", "harmlessness-pairwise", "answer-correctness", "summary-coherence"} <= set(specs)
    for name in specs:
        spec = load_spec(name)
        kind_item = next(i for i in ITEMS.values() if i.kind == spec.kind)
        assert spec.max_prompt_tokens is None, "shipped specs take their budget from the model and the engine"
        assert render(spec, kind_item, tokenizer).n_tokens < DEFAULT_BUDGET


def test_truncation_keeps_instruction_labels_and_answer_line(tokenizer):
    spec = load_spec("helpfulness-pairwise", ["--max_prompt_tokens=600"])
    long_a = "alpha " * 600
    item = ITEMS["helpfulness-pairwise"].model_copy(update={"response_a": long_a, "response_b": "beta " * 100})
    full = render_messages(spec, item)[1]["content"]
    rendered = render(spec, item, tokenizer)
    assert rendered.n_tokens <= 600
    assert set(rendered.truncated) <= {"response_a", "response_b"} and rendered.truncated["response_a"] > 0
    user = rendered.messages[1]["content"]
    tail = full[full.index("### Labels") :]
    assert user.endswith(tail), "the label list and the answer instruction are never cut"
    assert item.instruction in user and "tokens cut ...]" in user
    assert rendered.truncated["response_a"] >= rendered.truncated.get("response_b", 0), "longest field is cut first"


def test_fixed_parts_over_budget_is_a_render_error(tokenizer):
    spec = load_spec("helpfulness-pairwise", ["--max_prompt_tokens=64"])
    with pytest.raises(RenderError, match="cannot fit in 64 prompt tokens"):
        render(spec, ITEMS["helpfulness-pairwise"], tokenizer)


def words(n: int, word: str) -> str:
    return " ".join(f"{word}{i}" for i in range(n))


def test_a_5000_token_instruction_is_cut_head_and_tail_and_the_responses_kept(tokenizer):
    spec = load_spec("helpfulness-pairwise", ["--max_prompt_tokens=2047"])
    instruction = "FIRST-LINE " + words(2500, "w") + " LAST-QUESTION?"
    item = ITEMS["helpfulness-pairwise"].model_copy(update={"instruction": instruction})
    assert len(tokenizer(instruction)["input_ids"]) >= 5000
    rendered = render(spec, item, tokenizer)
    assert rendered.n_tokens <= 2047 and set(rendered.truncated) == {"instruction"}
    user = rendered.messages[1]["content"]
    assert "FIRST-LINE" in user and "LAST-QUESTION?" in user, "the head and the tail of a cut field are kept"
    assert item.response_a in user and item.response_b in user, "short responses are not cut for a long instruction"
    assert user.endswith("Answer with exactly one label: A, B, tie.")


def test_responses_are_cut_first_and_the_instruction_only_when_they_cannot_make_room(tokenizer):
    item = ITEMS["helpfulness-pairwise"].model_copy(
        update={"instruction": "question " * 75, "response_a": "alpha " * 80, "response_b": "beta " * 100}
    )
    n = {name: len(tokenizer(getattr(item, name))["input_ids"]) for name in ("instruction", "response_a", "response_b")}
    assert min(n.values()) > 2 * MIN_KEEP
    full = render(load_spec("helpfulness-pairwise", ["--max_prompt_tokens=4000"]), item, tokenizer).n_tokens

    def cut_to(budget: int):
        rendered = render(load_spec("helpfulness-pairwise", [f"--max_prompt_tokens={budget}"]), item, tokenizer)
        assert rendered.n_tokens <= budget
        return rendered, {name: n[name] - cut for name, cut in rendered.truncated.items()}

    first, kept = cut_to(full - 200)
    assert "instruction" not in first.truncated and first.truncated["response_a"] > 0, "responses are cut first"
    tight, kept = cut_to(full - n["response_a"] - n["response_b"] + 100)  # responses alone: under MIN_KEEP each
    assert tight.truncated["instruction"] > 0
    assert max(kept.values()) - min(kept.values()) <= 3, "then every field is water-filled to one level"


def test_the_budget_comes_from_the_model_and_the_engine():
    spec = load_spec("helpfulness-pairwise")
    assert prompt_budget(spec, 8192) == 8191  # the model's context less the 1-token verdict
    assert prompt_budget(spec, 2048, reserve=3) == 2045
    assert prompt_budget(spec, None) == DEFAULT_BUDGET
    fixed = load_spec("helpfulness-pairwise", ["--max_prompt_tokens=765"])
    assert prompt_budget(fixed, 8192) == 765 and prompt_budget(fixed, 512) == 511  # never over what the engine takes


long_texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=3000)


@settings(max_examples=80, deadline=None)
@given(
    fields=st.fixed_dictionaries(
        {"instruction": long_texts, "input": long_texts, "response_a": long_texts, "response_b": long_texts}
    ),
    room=st.integers(0, 1500),
    order=st.sampled_from(["ab", "ba"]),
)
def test_cutting_every_field_fits_the_budget_and_keeps_the_fixed_parts(tokenizer, fields, room, order):
    """Whatever the fields' lengths, an item whose fixed parts fit the budget (with a cut marker per field)
    gets a prompt within it, with the system message, the labels and the answer line whole."""
    item = Item(id="x", group="g", kind="pairwise", **{k: v or "-" for k, v in fields.items()})
    bare = Item(id="x", group="g", kind="pairwise", **{k: "-" for k in fields})
    fixed = render(load_spec("helpfulness-pairwise", ["--max_prompt_tokens=4000"]), bare, tokenizer).n_tokens
    marker = len(tokenizer(CUT_MARKER.format(n=99999))["input_ids"])
    budget = fixed + len(fields) * marker + room
    spec = load_spec("helpfulness-pairwise", [f"--max_prompt_tokens={budget}"])
    rendered = render(spec, item, tokenizer, order)
    assert rendered.n_tokens <= budget
    full = render_messages(spec, item, order)
    assert rendered.messages[0] == full[0], "the system message is never cut"
    tail = full[1]["content"][full[1]["content"].index("### Labels") :]
    assert rendered.messages[1]["content"].endswith(tail), "the label list and the answer line are never cut"
    assert set(rendered.truncated) <= set(fields)
    opening = CUT_MARKER.split("{")[0].strip()
    assert rendered.messages[1]["content"].count(opening) >= len(rendered.truncated)


def test_kind_mismatch_is_a_typed_error(tokenizer):
    with pytest.raises(RenderError, match="item is binary"):
        render(load_spec("helpfulness-pairwise"), ITEMS["answer-correctness"], tokenizer)


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=150, deadline=None)
@given(instruction=texts, a=texts, b=texts, budget=st.integers(64, 600), order=st.sampled_from(["ab", "ba"]))
def test_render_property(tokenizer, instruction, a, b, budget, order):
    """Any text renders within budget, or fails with the project's typed error; never anything else."""
    spec = load_spec("helpfulness-pairwise", [f"--max_prompt_tokens={budget}"])
    item = Item(id="x", group="g", kind="pairwise", instruction=instruction, response_a=a, response_b=b)
    try:
        rendered = render(spec, item, tokenizer, order)
    except JudgeloopError:
        return
    assert rendered.n_tokens <= budget
    assert rendered.messages[1]["content"].endswith("Answer with exactly one label: A, B, tie.")
