"""The bad-input table: each user mistake gets one located message and exit code 2."""

import json
import subprocess
import sys

import pytest

import judgeloop
from tests.conftest import REPO

GOOD = {
    "id": "x1",
    "group": "g1",
    "kind": "pairwise",
    "instruction": "Say hi",
    "response_a": "hi",
    "response_b": "hello",
    "labels": ["A", "A", "B"],
    "label": "A",
}


def lines(*objs):
    return "".join(json.dumps(o) + "\n" for o in objs)


def pointwise(score):
    return {
        "id": "s1",
        "group": "a1",
        "kind": "pointwise",
        "instruction": "Summarize.",
        "context": "article",
        "response": "summary",
        "labels": [],
        "label": score,
    }


def good_rows(n):
    return [dict(GOOD, id=f"x{i}") for i in range(1, n + 1)]


# (case name, file name, file bytes, argv after the file, expected text fragments of the one error line)
VALIDATE = "helpfulness-pairwise"
CASES = [
    ("empty file", "items.jsonl", b"", ["--spec", VALIDATE], ["items.jsonl", "file is empty"]),
    (
        "invalid JSON on line 7",
        "items.jsonl",
        (lines(*good_rows(6)) + '{"id": "x7", "group": \n').encode(),
        ["--spec", VALIDATE],
        ["items.jsonl:7", "invalid JSON"],
    ),
    (
        "missing field",
        "items.jsonl",
        lines({k: v for k, v in GOOD.items() if k != "instruction"}).encode(),
        ["--spec", VALIDATE],
        ["items.jsonl:1", "field 'instruction'", "is missing"],
    ),
    (
        "label outside the label space",
        "items.jsonl",
        lines(dict(GOOD, labels=["A", "C", "B"])).encode(),
        ["--spec", VALIDATE],
        ["items.jsonl:1", "field 'labels.1'", "'C' is not one of A, B, tie"],
    ),
    (
        "duplicate id",
        "items.jsonl",
        lines(*good_rows(2), dict(GOOD, id="x2")).encode(),
        ["--spec", VALIDATE],
        ["items.jsonl:3", "field 'id'", "duplicate id 'x2' (first on line 2)"],
    ),
    (
        "non-UTF-8 bytes",
        "items.jsonl",
        lines(*good_rows(2)).encode() + b'{"id": "caf\xe9"}\n',
        ["--spec", VALIDATE],
        ["items.jsonl:3", "not UTF-8"],
    ),
    (
        "NaN score",
        "items.jsonl",
        b'{"id": "s1", "group": "a", "kind": "pointwise", "instruction": "S", "response": "r", "label": NaN}\n',
        ["--spec", "summary-coherence"],
        ["items.jsonl:1", "NaN is not valid JSON"],
    ),
    (
        "score out of range",
        "items.jsonl",
        lines(pointwise(7)).encode(),
        ["--spec", "summary-coherence"],
        ["items.jsonl:1", "field 'label'", "outside the label range 1..5"],
    ),
    (
        "wrong kind for the spec",
        "items.jsonl",
        lines(pointwise(3)).encode(),
        ["--spec", VALIDATE],
        ["items.jsonl:1", "field 'kind'", "pointwise but spec 'helpfulness-pairwise' is pairwise"],
    ),
    (
        "unknown field",
        "items.jsonl",
        lines(dict(GOOD, lable="A")).encode(),
        ["--spec", VALIDATE],
        ["items.jsonl:1", "field 'lable'", "not a known field"],
    ),
]


@pytest.mark.parametrize("name,fname,content,extra,expected", CASES, ids=[c[0] for c in CASES])
def test_validate_bad_input(tmp_path, capsys, name, fname, content, extra, expected):
    path = tmp_path / fname
    path.write_bytes(content)
    code = judgeloop.main(["data", "validate", str(path), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    first = err.strip().splitlines()[0]
    assert first.startswith("judgeloop: error: ")
    for fragment in expected:
        assert fragment in first, (fragment, first)
    assert "Traceback" not in err


def test_every_problem_is_reported_at_once(tmp_path, capsys):
    path = tmp_path / "items.jsonl"
    path.write_text(lines(dict(GOOD, labels=["Z"]), dict(GOOD, id="x2", label="Q"), {"id": "x3"}))
    assert judgeloop.main(["data", "validate", str(path), "--spec", VALIDATE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(":1:" in e and "labels.0" in e for e in err)
    assert any(":2:" in e and "'label'" in e for e in err)
    assert any(":3:" in e and "'group'" in e for e in err)


def test_unknown_dataset_suggests_nearest(capsys):
    assert judgeloop.main(["data", "prepare", "pandalmm"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'pandalmm'" in err and "did you mean 'pandalm'?" in err


def test_unknown_spec_suggests_nearest(tmp_path, capsys):
    path = tmp_path / "items.jsonl"
    path.write_text(lines(GOOD))
    assert judgeloop.main(["data", "validate", str(path), "--spec", "helpfulness-pairwis"]) == 2
    assert "did you mean 'helpfulness-pairwise'?" in capsys.readouterr().err


def test_csv_with_bom_imports(tmp_path, capsys):
    src = tmp_path / "labels.csv"
    src.write_bytes(
        "\ufeffqid,prompt,first,second,r1,r2,r3\n".encode("utf-8") + b"q1,Say hi,hi,hello,1,1,2\nq2,Add 2+2,4,5,1,0,1\n"
    )
    out = tmp_path / "items.jsonl"
    code = judgeloop.main(
        [
            "data",
            "import",
            str(src),
            "--spec",
            VALIDATE,
            "--map",
            "qid=id",
            "--map",
            "prompt=instruction",
            "--map",
            "first=response_a",
            "--map",
            "second=response_b",
            "--map",
            "r1=labels",
            "--map",
            "r2=labels",
            "--map",
            "r3=labels",
            "--label-map",
            "1=A",
            "--label-map",
            "2=B",
            "--label-map",
            "0=tie",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["q1", "q2"]
    assert rows[0]["labels"] == ["A", "A", "B"] and rows[0]["label"] == "A"
    assert rows[1]["labels"] == ["A", "tie", "A"] and rows[1]["label"] == "A"
    assert judgeloop.main(["data", "validate", str(out), "--spec", VALIDATE]) == 0


def test_csv_import_errors_name_line_and_column(tmp_path, capsys):
    src = tmp_path / "labels.csv"
    src.write_text('id,prompt,a,b,r1\nq1,"multi\nline prompt",x,y,A\nq2,p,x,y,maybe\n')
    code = judgeloop.main(
        [
            "data",
            "import",
            str(src),
            "--spec",
            VALIDATE,
            "--map",
            "prompt=instruction",
            "--map",
            "a=response_a",
            "--map",
            "b=response_b",
            "--map",
            "r1=labels",
            "--out",
            str(tmp_path / "o.jsonl"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "labels.csv:4: field 'r1': label 'maybe' is not one of A, B, tie" in err
    assert not (tmp_path / "o.jsonl").exists(), "a failed import must not leave a partial output"


def test_columns_named_like_item_fields_import_without_a_map(tmp_path, capsys):
    src = tmp_path / "labels.csv"
    src.write_text("instruction,response_a,response_b,label,notes\nSay hi,hi,hello,A,x\n")
    out = tmp_path / "items.jsonl"
    assert judgeloop.main(["data", "import", str(src), "--spec", VALIDATE, "--out", str(out)]) == 0
    row = json.loads(out.read_text())
    assert (row["instruction"], row["response_b"], row["label"]) == ("Say hi", "hello", "A")


@pytest.mark.parametrize(
    "header, cells, message",
    [
        ("instruction,response_a,response_b,label", '"",x,y,A', "field 'instruction': is empty"),
        ("prompt,response_a,response_b,label", "p,x,y,A", "no column is named instruction or mapped to it"),
    ],
)
def test_a_blank_or_unmapped_instruction_says_which(header, cells, message, tmp_path, capsys):
    src = tmp_path / "labels.csv"
    src.write_text(f"{header}\nSay hi,a,b,A\n{cells}\n")
    out = tmp_path / "items.jsonl"
    assert judgeloop.main(["data", "import", str(src), "--spec", VALIDATE, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "labels.csv:" in err and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]  # no output, no .tmp left behind


def test_failed_import_keeps_earlier_output(tmp_path):
    out = tmp_path / "items.jsonl"
    out.write_text(lines(GOOD))
    src = tmp_path / "bad.csv"
    src.write_text("prompt,a,b\n")
    assert (
        judgeloop.main(
            ["data", "import", str(src), "--spec", VALIDATE, "--map", "nope=instructions", "--out", str(out)]
        )
        == 2
    )
    assert json.loads(out.read_text())["id"] == "x1"


def test_cli_exit_code_and_no_traceback_in_a_real_process(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "judgeloop", "data", "validate", str(path), "--spec", VALIDATE],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"judgeloop: error: {path}: file is empty (expected one JSON object per line)"
