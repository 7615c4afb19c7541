import json
import random
import tracemalloc

import pytest

from data.errors import DataError
from data.jsonl import JsonlAppender, read_jsonl, write_jsonl
from data.schema import Item, JudgeRef, Verdict
from data.splits import assign, seeded_groups, seeded_sample, split_of


def make_items(n, per_group=3):
    return [
        Item(
            id=f"i{i}",
            group=f"g{i // per_group}",
            kind="binary",
            instruction=f"q{i // per_group}",
            response=f"a{i}",
            labels=["yes", "no", "yes"],
            label="yes",
        )
        for i in range(n)
    ]


def test_roundtrip_and_schema(tmp_path):
    items = make_items(10)
    write_jsonl(tmp_path / "x.jsonl", items)
    assert list(read_jsonl(tmp_path / "x.jsonl", Item)) == items
    v = Verdict(id="i0", verdict="A", probs={"A": 0.7, "B": 0.3}, judge=JudgeRef(name="j", fingerprint="f"))
    write_jsonl(tmp_path / "v.jsonl", [v])
    assert next(read_jsonl(tmp_path / "v.jsonl", Verdict)) == v


def test_item_kind_rules():
    with pytest.raises(ValueError, match="needs 'response_b'"):
        Item(id="x", group="g", kind="pairwise", instruction="i", response_a="a")
    with pytest.raises(ValueError, match="must not have 'response'"):
        Item(id="x", group="g", kind="pairwise", instruction="i", response_a="a", response_b="b", response="c")


def test_reading_streams_in_constant_memory(tmp_path):
    """A file ~40x bigger than the memory the reader uses: nothing is held but the current line."""
    path = tmp_path / "big.jsonl"
    row = make_items(1)[0].model_dump(mode="json")
    row["response"] = "x" * 2000
    with open(path, "w") as fh:
        for i in range(20000):  # ~40 MB
            fh.write(json.dumps(dict(row, id=f"i{i}")) + "\n")
    tracemalloc.start()
    n = sum(1 for _ in read_jsonl(path, Item, unique_ids=False))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 20000
    assert peak < 1_000_000, f"peak {peak} bytes while streaming a {path.stat().st_size} byte file"


def test_appender_resumes_and_drops_a_torn_line(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlAppender(path) as out:
        out.write({"id": "a", "v": 1})
        out.write({"id": "b", "v": 2})
    with open(path, "a") as fh:
        fh.write('{"id": "c", "v"')  # killed mid-write
    again = JsonlAppender(path)
    assert again.done_ids == {"a", "b"}
    again.write({"id": "c", "v": 3})
    again.close()
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "b", "c"]


def test_splits_are_deterministic_grouped_and_order_free():
    items = make_items(3000)
    first = {i.id: s for s, i in assign(items, seed=7)}
    again = {i.id: s for s, i in assign(list(reversed(items)), seed=7)}
    assert first == again
    by_group = {}
    for item in items:
        by_group.setdefault(item.group, set()).add(first[item.id])
    assert all(len(s) == 1 for s in by_group.values()), "a group landed in two splits"
    counts = {s: list(first.values()).count(s) for s in ("train", "dev", "test")}
    assert 0.75 < counts["train"] / 3000 < 0.85 and 0.07 < counts["test"] / 3000 < 0.13
    assert {i.id: s for s, i in assign(items, seed=8)} != first, "the seed changes the split"


def test_a_seeded_sample_draws_what_random_sample_draws_in_the_items_order():
    for n_items, n, seed in [(20, 5, 0), (100, 37, 7), (5, 4, 1), (1000, 1, 3)]:
        items = [f"x{i}" for i in range(n_items)]
        got = seeded_sample(items, n, seed)
        assert set(got) == set(random.Random(seed).sample(items, n))
        assert got == sorted(got, key=items.index)
    assert seeded_sample(list(range(20)), 5, 0) == [1, 8, 12, 13, 15]  # pinned: saved runs and figures rely on it
    assert seeded_sample([3, 1, 2], 3, 0) == seeded_sample([3, 1, 2], None, 0) == [3, 1, 2]


def test_seeded_groups_take_whole_groups_until_enough():
    items = make_items(30)  # ten groups of three
    got = seeded_groups(items, 7, 3)
    assert [i.id for i in got] == ["i3", "i4", "i5", "i15", "i16", "i17", "i18", "i19", "i20"]  # pinned
    assert seeded_groups(items, 7, 3) == got and seeded_groups(items, 7, 4) != got
    assert seeded_groups(items, 30, 3) == seeded_groups(items, None, 3) == items


def test_bad_fractions():
    with pytest.raises(ValueError):
        split_of("g", (0.5, 0.5, 0.5))


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        list(read_jsonl(tmp_path / "nope.jsonl", Item))


def test_a_write_that_stops_on_bad_input_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "x.items.jsonl"
    path.write_text("old\n")

    def records():
        yield {"id": "a"}
        raise ValueError("line 2 is bad")

    with pytest.raises(ValueError):
        write_jsonl(path, records())
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["x.items.jsonl"]
