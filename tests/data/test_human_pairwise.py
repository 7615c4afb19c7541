"""The four human pairwise vote sets (tulu1-human, lfqa-experts, hhh-alignment, mtbench-human), converted from the
real files in the mirror: every vote lands in exactly one item's labels, in that item's A/B terms."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from data import converters
from data.dataset_registry import get_dataset, load_items
from data.errors import DataError
from data.labels import aggregate

VOTE_SETS = {  # name: (mirror file, items, votes)
    "tulu1-human": ("tulu1-human/tulu1-human.jsonl", 949, 1116),
    "lfqa-experts": ("lfqa-experts/lfqa-experts.jsonl", 140, 260),
    "hhh-alignment": ("hhh-alignment/hhh-alignment.jsonl", 221, 221),
    "mtbench-human": ("mtbench-human/mtbench-human.jsonl", 229, 319),
}
SWAP = {"A": "B", "B": "A", "tie": "tie"}


def _raw(mirror, name):
    with open(mirror / VOTE_SETS[name][0], encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.mark.parametrize("name", sorted(VOTE_SETS))
def test_every_vote_is_in_one_item_in_its_terms(name, mirror):
    _, n_items, n_votes = VOTE_SETS[name]
    raw = _raw(mirror, name)
    got = list(load_items(name))
    assert len(raw) == n_votes and len(got) == n_items == get_dataset(name).rows
    assert len({it.id for it in got}) == len(got)
    by_vote = {v: it for it in got for v in it.meta["votes"]}
    assert len(by_vote) == sum(len(it.meta["votes"]) for it in got) == n_votes  # each vote once
    for it in got:
        assert len(it.labels) == len(it.meta["votes"]) and it.label == aggregate("pairwise", it.labels)
        assert it.meta["source"].split("/")[0] == name
    for row in raw:
        it = by_vote[row["id"]]
        label = it.labels[it.meta["votes"].index(row["id"])]
        assert it.instruction == row["instruction"]
        if (it.response_a, it.response_b) == (row["response_a"], row["response_b"]):
            assert label == row["label"]
        else:  # the vote saw the pair the other way round (or hhh's swap): its label follows the responses
            assert (it.response_a, it.response_b) == (row["response_b"], row["response_a"])
            assert label == SWAP[row["label"]]
        if "annotators" in it.meta:
            assert it.meta["annotators"][it.meta["votes"].index(row["id"])] == row["annotator"]


def test_tulu_swapped_votes_are_swapped_back(items):
    got = items("tulu1-human")
    assert Counter(it.label for it in got) == {"tie": 333, "A": 329, "B": 287}
    assert max(len(it.labels) for it in got) == 5 and len(got[0].meta["annotators"]) == len(got[0].labels)
    assert len({a for it in got for a in it.meta["annotators"]}) == 16


def test_lfqa_split_experts_make_a_tie(items):
    got = items("lfqa-experts")
    assert Counter(len(it.labels) for it in got) == {1: 60, 2: 40, 3: 40}
    assert Counter(it.label for it in got) == {"A": 66, "B": 63, "tie": 11}  # a 1-1 split of two experts
    assert all(lab in ("A", "B") for it in got for lab in it.labels)  # the votes themselves have no ties


def test_hhh_swaps_half_of_each_source_deterministically(mirror, items):
    raw = {r["id"]: r for r in _raw(mirror, "hhh-alignment")}
    got = items("hhh-alignment")
    assert all(r["label"] == "A" for r in raw.values())  # the source always puts the better response first
    by_source = Counter((it.meta["source"], it.label) for it in got)
    for source in {it.meta["source"] for it in got}:
        assert abs(by_source[(source, "A")] - by_source[(source, "B")]) <= 1, source
    assert abs(sum(it.label == "A" for it in got) - sum(it.label == "B" for it in got)) <= 1
    for it in got:
        row = raw[it.meta["votes"][0]]
        better = it.response_b if it.meta["swapped"] else it.response_a
        assert better == row["response_a"] and it.label == ("B" if it.meta["swapped"] else "A")
    again = list(load_items("hhh-alignment"))
    assert [(it.id, it.label, it.response_a) for it in again] == [(it.id, it.label, it.response_a) for it in got]
    assert {it.meta["source"] for it in got} == {
        f"hhh-alignment/{s}" for s in ("helpful", "honest", "harmless", "other")
    }


def test_mtbench_keeps_its_b_skew(items):
    got = items("mtbench-human")
    assert Counter(it.label for it in got) == {"B": 128, "tie": 62, "A": 39}
    assert len({it.group for it in got}) == 31


@pytest.fixture(scope="module")
def items(mirror):
    cache: dict[str, list] = {}

    def get(name):
        if name not in cache:
            cache[name] = list(load_items(name))
        return cache[name]

    return get


# ---------------------------------------------------------------- bad input: one located problem


def _bad_file(tmp_path, mirror, line3: str):
    lines = (mirror / VOTE_SETS["tulu1-human"][0]).read_text(encoding="utf-8").splitlines()[:5]
    lines[2] = line3
    path = tmp_path / "votes.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, json.loads((mirror / VOTE_SETS["tulu1-human"][0]).open(encoding="utf-8").readline())


@pytest.mark.parametrize(
    "change,field,message",
    [
        (lambda r: r.pop("response_b"), "response_b", "is missing"),
        (lambda r: r.update(label="C"), "label", "unexpected value 'C'"),
        (lambda r: r.update(instruction="  "), "instruction", "expected a non-empty string"),
        (lambda r: r.update(response_a=3), "response_a", "got int 3"),
        (lambda r: r.update(annotator=["x"]), "annotator", "expected a string or null"),
    ],
    ids=["missing", "label", "blank-instruction", "not-text", "annotator"],
)
def test_a_malformed_vote_row_is_one_located_problem(tmp_path, mirror, change, field, message):
    path, row = _bad_file(tmp_path, mirror, "{}")
    change(row)
    path, _ = _bad_file(tmp_path, mirror, json.dumps(row))
    with pytest.raises(DataError) as exc:
        list(converters.pairwise_votes({"votes": path}, name="tulu1-human"))
    assert len(exc.value.problems) == 1
    assert str(exc.value).startswith(f"{path}:3: field '{field}': ") and message in str(exc.value)


def test_a_row_that_is_not_json_names_its_line(tmp_path, mirror):
    path, _ = _bad_file(tmp_path, mirror, '{"id": "tulu1-2", "instruction": ')
    with pytest.raises(DataError, match=rf"^{path}:3: invalid JSON"):
        list(converters.pairwise_votes({"votes": path}, name="tulu1-human"))
