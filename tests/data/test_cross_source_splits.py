"""Cross-source split groups (data.grouping): one normalised instruction is in one split wherever it appears, the
instructions of vicuna80-human are reserved everywhere, and the datasets registered first keep their splits."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.dataset_registry import (
    check_trainable,
    get_dataset,
    link_registry,
    list_datasets,
    load_items,
    split_groups,
)
from data.errors import ConfigError
from data.grouping import Source, item_keys, item_prompt, link, load_split_groups, normalise, prompt_key
from data.prepare import prepare
from data.schema import Item
from data.splits import RESERVED, SPLITS, assign, split_of
from tests.conftest import REPO
from train.config import load_train_config

# ---------------------------------------------------------------- normalisation


def test_normalise_folds_case_space_and_end_punctuation():
    assert normalise("  Rewrite the\n\nsentence.  ") == normalise("rewrite the sentence") == "rewrite the sentence"
    assert normalise("ＡＢＣ？") == "abc"  # NFKC: full-width letters and punctuation
    assert normalise("What is 2+2?") != normalise("What is 2-2?")  # inner punctuation still counts
    assert prompt_key("?!  ") is None and prompt_key("Hi") == prompt_key("hi!")


# ---------------------------------------------------------------- property: generated items

BASES = ["Rewrite the sentence", "What is a prime number", "Write a haiku", "Explain DNS", "List three fruits"]


@st.composite
def prompt_variant(draw):
    text = draw(st.sampled_from(BASES))
    if draw(st.booleans()):
        text = text.upper() if draw(st.booleans()) else text.lower()
    text = text.replace(" ", draw(st.sampled_from([" ", "  ", "\n", " \t "])))
    return draw(st.sampled_from(["", " ", "\n"])) + text + draw(st.sampled_from(["", ".", "?", " !", "...\n"]))


@st.composite
def sources(draw):
    out = []
    for s in range(draw(st.integers(1, 4))):
        prompts = draw(st.lists(prompt_variant(), min_size=1, max_size=8))
        coarse = draw(st.booleans())  # some sources group several prompts together (a conversation, an article)
        items = []
        for n, text in enumerate(prompts):
            group = f"s{s}:{draw(st.integers(0, 2))}" if coarse else f"s{s}:{text}"  # raw text: variants differ
            items.append(
                Item(
                    id=f"s{s}-{n}",
                    group=group,
                    kind="pairwise",
                    instruction=text,
                    response_a="a",
                    response_b="b",
                    label="A",
                )
            )
        out.append(Source(f"s{s}", items, reserved=draw(st.booleans()) and s > 0))
    return out


def _splits_by(pairs, key):
    seen = defaultdict(set)
    for split, item in pairs:
        for k in key(item):
            seen[k].add(split)
    return seen


@given(
    sources(),
    st.integers(0, 5),
    st.sampled_from([(0.8, 0.1, 0.1), (0.5, 0.25, 0.25), (1 / 3, 1 / 3, 1 / 3), (0.0, 0.5, 0.5)]),
)
@settings(max_examples=80, deadline=None)
def test_generated_items_never_put_one_instruction_in_two_splits(srcs, seed, fractions):
    table = link(srcs)
    pairs = [(split, item) for src in srcs for split, item in assign(src.items, fractions, seed, table)]
    for k, splits in _splits_by(pairs, item_keys).items():
        assert len(splits) == 1, (k, splits)
    for g, splits in _splits_by(pairs, lambda it: [it.group]).items():
        assert len(splits) == 1, (g, splits)
    reserved_keys = {k for src in srcs if src.reserved for it in src.items for k in item_keys(it)}
    for split, item in pairs:
        if item_keys(item) & reserved_keys:
            assert split == RESERVED
    # the first source keeps the split of its own groups, unless linked to another of its own groups or to a
    # reserved one: later sources follow it, never the other way round
    first = srcs[0]
    own = {it.group for it in first.items}
    for split, item in assign(first.items, fractions, seed, table):
        same_component = {g for g in own if table.canonical(g) == table.canonical(item.group)}
        if same_component == {item.group} and not table.is_reserved(item.group):
            assert split == split_of(item.group, fractions, seed)


# ---------------------------------------------------------------- property: the real registry


@pytest.fixture(scope="module")
def registry(mirror):
    return {ds.name: list(load_items(ds.name)) for ds in list_datasets()}


@pytest.fixture(scope="module")
def keyed(registry):
    """Each registered item with its dataset, the keys the registry links it by, and its plain prompt key."""
    out = []
    for name, items in registry.items():
        ds = get_dataset(name)
        out += [(item, ds, item_keys(item, ds.prompts), prompt_key(item_prompt(item))) for item in items]
    return out


@pytest.fixture(scope="module")
def table(mirror):
    return split_groups()


def test_the_committed_table_is_what_the_files_give(registry, table):
    fresh = link_registry()
    assert (fresh.aliases, fresh.reserved) == (table.aliases, table.reserved), "python scripts/split_groups.py"
    assert load_split_groups().aliases == table.aliases


@given(seed=st.integers(0, 2**16), fractions=st.sampled_from([(0.8, 0.1, 0.1), (0.7, 0.15, 0.15), (0.5, 0.3, 0.2)]))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_registry_never_puts_one_instruction_in_two_splits(keyed, table, seed, fractions):
    by_key, by_plain = defaultdict(set), defaultdict(set)
    reserved = {k for _, ds, keys, _ in keyed if ds.reserved for k in keys}
    assert len(reserved) == 74
    for (split, item), (_, ds, keys, plain) in zip(assign((x[0] for x in keyed), fractions, seed, table), keyed):
        split = RESERVED if ds.reserved else split  # as data.prepare does
        for k in keys:  # the texts the registry links by (hh-rlhf's first turn, LLMEval2's MT-Bench turn, ...)
            by_key[k].add(split)
        if plain:  # and plainly: instruction + input + context
            by_plain[plain].add(split)
        if keys & reserved:
            assert split == RESERVED, (ds.name, item.id)
    assert not {k: s for k, s in by_key.items() if len(s) > 1}
    assert not {k: s for k, s in by_plain.items() if len(s) > 1}


def test_overlaps_the_table_links(registry):
    """The overlaps MANIFEST.md describes, counted on normalised prompts."""
    keys = {
        name: set().union(*(item_keys(it, get_dataset(name).prompts) for it in its)) for name, its in registry.items()
    }
    assert len(keys["tulu1-human"] & keys["pandalm"]) == 165
    assert len(keys["tulu1-human"] & keys["vicuna80-human"]) == 74
    assert len(keys["mtbench-human"] & keys["vicuna80-human"]) == 1
    assert len(keys["mtbench-human"] & keys["llmeval2"]) == 29  # LLMEval2's MT-Bench rows
    assert len(keys["hh-rlhf-harmless"] & keys["llmeval2"]) == 37  # LLMEval2's PKU-SafeRLHF rows
    assert len(keys["llmeval2"] & keys["vicuna80-human"]) == 1


def test_pandalm_keeps_its_splits(registry, table):
    """The demo's figures were measured on PandaLM's splits by its own groups: the table moves none of them."""
    pandalm = registry["pandalm"]
    assert not any(table.canonical(it.group) != it.group or table.is_reserved(it.group) for it in pandalm)
    for seed in (0, 1):
        assert [s for s, _ in assign(pandalm, (0.7, 0.15, 0.15), seed, table)] == [
            split_of(it.group, (0.7, 0.15, 0.15), seed) for it in pandalm
        ]


def test_items_the_table_moves(registry, table):
    """Items of the datasets registered before this table whose split changes (seed 0, 0.8/0.1/0.1): the
    within-source merges of normalised duplicates and LLMEval2's links to hh-rlhf and a Vicuna-80 question."""
    moved = {}
    for name, items in registry.items():
        if name in ("vicuna80-human", "tulu1-human", "lfqa-experts", "hhh-alignment", "mtbench-human"):
            continue
        n = sum(split != split_of(it.group) for split, it in assign(items, groups=table))
        if n:
            moved[name] = n
    assert moved == {"hh-rlhf-harmless": 2, "llmeval2": 14, "dices-990": 2, "dices-350-crowd": 1, "dices-350-expert": 1}


# ---------------------------------------------------------------- prepare and the training rule


def test_prepare_reserves_vicuna_questions_and_writes_canonical_groups(tmp_path, mirror):
    manifest = prepare("tulu1-human", tmp_path / "tulu", progress=lambda *a: None)
    counts = {s: v["items"] for s, v in manifest["splits"].items()}
    assert counts[RESERVED] == 222 and sum(counts.values()) == 949
    files = {s: [json.loads(x) for x in (tmp_path / "tulu" / f"{s}.jsonl").read_text().splitlines()] for s in counts}
    groups = {s: {r["group"] for r in rows} for s, rows in files.items()}
    for a in groups:
        for b in groups:
            assert a == b or not groups[a] & groups[b]
    linked = [r for s in SPLITS for r in files[s] if r["group"].startswith("pandalm:")]
    assert len(linked) > 100 and all(r["meta"]["source_group"].startswith("tulu1-human:") for r in linked)
    vicuna = prepare("vicuna80-human", tmp_path / "vicuna", progress=lambda *a: None)
    assert {s: v["items"] for s, v in vicuna["splits"].items()} == {"train": 0, "dev": 0, "test": 0, RESERVED: 2360}
    pandalm = prepare("pandalm", tmp_path / "pandalm", progress=lambda *a: None)
    assert RESERVED not in pandalm["splits"] and not (tmp_path / "pandalm" / "reserved.jsonl").exists()


def test_no_recipe_may_train_on_vicuna80(tmp_path):
    with pytest.raises(ConfigError, match="reserved for model evaluation"):
        check_trainable("vicuna80-human")
    check_trainable("tulu1-human")
    path = tmp_path / "train.yaml"
    for key, data in (("train", "train: [vicuna80-human]"), ("dev", "train: [pandalm]\n  dev: [vicuna80-human]")):
        path.write_text(f"spec: helpfulness-pairwise\ndata:\n  {data}\n")
        with pytest.raises(ConfigError) as exc:
            load_train_config(path, [])
        assert any(
            p.field == f"data.{key}" and "reserved for model evaluation" in p.message for p in exc.value.problems
        )


def test_no_shipped_recipe_names_a_reserved_dataset():
    reserved = {ds.name for ds in list_datasets() if ds.reserved}
    assert reserved == {"vicuna80-human"}
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        assert not any(name in path.read_text() for name in reserved), path
