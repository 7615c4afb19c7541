"""Malformed review imports (a hand-edited Label Studio export, a damaged CSV): one located line, exit 2,
nothing written; the reviewed items file of an earlier import is never touched."""

import json

import pytest

import judgeloop
from tests.workflows.test_review_csv import export, log  # noqa: F401  (fixture)
from workflows.review import CSV_FILE, MANIFEST, TASKS

SPEC = "helpfulness-pairwise"


def _tasks(out):
    return json.loads((out / TASKS).read_text())


def _first_rid(out):
    return _tasks(out)[0]["data"]["review_id"]


LS_CASES = {
    "annotations not a list": (lambda t: [{**t[0], "annotations": "x"}], "annotations"),
    "annotation not an object": (lambda t: [{**t[0], "annotations": [7]}], "annotations[0]"),
    "result not a list": (lambda t: [{**t[0], "annotations": [{"result": {"a": 1}}]}], "result"),
    "choices not a list": (
        lambda t: [{**t[0], "annotations": [{"result": [{"type": "choices", "from_name": "label", "value": 3}]}]}],
        "value.choices",
    ),
    "a choice that is not text": (
        lambda t: [
            {
                **t[0],
                "annotations": [{"result": [{"type": "choices", "from_name": "label", "value": {"choices": [[1]]}}]}],
            }
        ],
        "result",
    ),
    "data not an object": (lambda t: [{"data": "x"}], "data.review_id"),
    "a task not an object": (lambda t: [1, 2], "data.review_id"),
}


@pytest.mark.parametrize("case", sorted(LS_CASES))
def test_a_malformed_label_studio_export_is_located(case, log, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "review"
    assert export(log, out) == 0
    edit, field = LS_CASES[case]
    bad = tmp_path / "export.json"
    bad.write_text(json.dumps(edit(_tasks(out)), indent=1))
    capsys.readouterr()
    code = judgeloop.main(
        ["review", "import", str(bad), f"--spec={SPEC}", f"--manifest={out / MANIFEST}"]
        + [f"--out={tmp_path / 'reviewed.jsonl'}"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert str(bad) in err and field in err, err
    assert not (tmp_path / "reviewed.jsonl").exists()


CSV_CASES = {
    "not UTF-8": (b"review_id,label\n\xff\xfe,A\n", "not UTF-8"),
    "a NUL byte": (b"review_id,label\nabc\x00,A\n", "review_id"),
    "a row with more cells than the header": (b"review_id,label\nRID,A,extra\n", ":2"),
    "no review_id column": (b"id,label\nRID,A\n", "review_id"),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_a_damaged_review_csv_is_located(case, log, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "review"
    assert export(log, out) == 0
    content, fragment = CSV_CASES[case]
    bad = tmp_path / CSV_FILE
    bad.write_bytes(content.replace(b"RID", _first_rid(out).encode()))
    reviewed = tmp_path / "reviewed.jsonl"
    reviewed.write_text("earlier\n")
    capsys.readouterr()
    code = judgeloop.main(
        ["review", "import", str(bad), f"--spec={SPEC}", f"--manifest={out / MANIFEST}", f"--out={reviewed}"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and str(bad) in err and fragment in err, err
    assert reviewed.read_text() == "earlier\n"
