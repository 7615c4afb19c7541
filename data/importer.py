"""A team's own labels (CSV, JSONL or Parquet) -> canonical items, and validation of item files.

``--map column=field`` names which column holds which item field; several columns may map to
``labels`` (one per annotator). Every problem is located by file, line and field.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import ValidationError

from data.errors import DataError, Problem
from data.jsonl import iter_json_lines, pydantic_problems
from data.labels import aggregate
from data.schema import TEXT_FIELDS, Item
from data.spec import JudgeSpec

MAPPABLE_FIELDS = ("id", "group", *TEXT_FIELDS)  # the item fields a column can fill, besides labels and meta
MAX_PROBLEMS = 50


def parse_mapping(pairs: list[str]) -> list[tuple[str, str]]:
    """``["prompt=instruction", "r1=labels"]`` -> ordered (column, field) pairs."""
    out, problems = [], []
    for pair in pairs:
        column, sep, fld = pair.partition("=")
        if not sep or not column or not fld:
            problems.append(Problem(f"'{pair}' is not column=field", field="--map"))
        elif fld not in MAPPABLE_FIELDS + ("labels", "label") and not fld.startswith("meta."):
            problems.append(
                Problem(
                    f"'{fld}' is not an item field (one of {', '.join(MAPPABLE_FIELDS)}, labels, label, meta.NAME)",
                    field="--map",
                )
            )
        else:
            out.append((column, fld))
    if problems:
        raise DataError(problems=problems)
    return out


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a CSV (BOM tolerated), JSONL or Parquet file with the line (or row) they start on."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise DataError("file not found", path=str(path))
    if path.stat().st_size == 0:
        raise DataError("file is empty", path=str(path))
    if suffix in (".jsonl", ".json", ".ndjson"):
        yield from iter_json_lines(path)
    elif suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            start = 2
            try:
                for row in reader:
                    if None in row:
                        raise DataError(
                            f"row has {len(row) - 1 + len(row[None])} cells but the header has {len(row) - 1}",
                            path=str(path),
                            line=start,
                        )
                    yield start, row
                    start = reader.line_num + 1
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"not UTF-8 (byte {exc.object[exc.start]:#04x})",
                    path=str(path),
                    line=reader.line_num + 1,
                    hint="re-save the file as UTF-8",
                ) from None
            if reader.fieldnames is None:
                raise DataError("file has no header row", path=str(path))
    elif suffix == ".parquet":
        try:
            table = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise DataError(f"not a readable Parquet file: {exc}", path=str(path)) from None
        row_no = 0
        for batch in table.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                row_no += 1
                yield row_no, row
    else:
        raise DataError(f"unsupported file type '{suffix}'", path=str(path), hint="use .csv, .tsv, .jsonl or .parquet")


def _blank(value) -> bool:
    return (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, float) and math.isnan(value))
    )


def row_to_item(
    row: dict,
    mapping: list[tuple[str, str]],
    spec: JudgeSpec,
    label_map: dict[str, str],
    path: str,
    line: int,
    default_id: str,
) -> Item:
    space = spec.label_space
    fields: dict[str, Any] = {"kind": spec.kind, "labels": [], "meta": {}}
    problems = []
    for column, fld in mapping:
        if column not in row:
            problems.append(
                Problem(f"column '{column}' is missing (columns: {', '.join(map(str, row))})", path, line, column)
            )
            continue
        value = row[column]
        if fld in ("labels", "label"):
            if _blank(value) and fld == "labels":
                fields["labels"].append(None)
                continue
            raw = label_map.get(str(value).strip(), value) if not isinstance(value, float) else value
            try:
                canon = space.check(raw)
            except ValueError as exc:
                problems.append(Problem(str(exc), path, line, column))
                continue
            if fld == "labels":
                fields["labels"].append(canon)
            else:
                fields["label"] = canon
        elif fld.startswith("meta."):
            fields["meta"][fld[5:]] = value
        else:
            fields[fld] = None if _blank(value) else str(value)
    if problems:
        raise DataError(problems=problems)
    fields.setdefault("id", default_id)
    if fields.get("id") is None:
        fields["id"] = default_id
    if fields.get("group") is None:
        key = "\x00".join(str(fields.get(k) or "") for k in ("instruction", "input", "context"))
        fields["group"] = hashlib.sha256(key.encode()).hexdigest()[:16]
    if "label" not in fields:
        fields["label"] = aggregate(spec.kind, fields["labels"])
    try:
        return Item.model_validate(fields)
    except ValidationError as exc:
        col_of = {fld: col for col, fld in mapping}
        probs = pydantic_problems(exc, path, line)
        for p in probs:
            if p.field in col_of and _blank(row.get(col_of[p.field])):  # the column is there, this row's cell is blank
                p.message = "is empty: this row needs a value in that column"
            elif p.message == "is missing" and p.field not in col_of:
                p.message = f"is missing: no column is named {p.field} or mapped to it (--map COLUMN={p.field})"
            p.field = col_of.get(p.field, p.field) if p.field else p.field
        raise DataError(problems=probs) from None


def with_named_columns(mapping: list[tuple[str, str]], row: dict) -> list[tuple[str, str]]:
    """``mapping`` plus each column named like an item field (``instruction``, ``label``...) that no
    ``--map`` already maps and whose field no ``--map`` already fills: a file in the item's own words
    imports without any ``--map``."""
    mapped_columns = {c for c, _ in mapping}
    filled = {f for _, f in mapping}
    if filled & {"label", "labels"}:
        filled |= {"label", "labels"}
    extra = [
        (c, c)
        for c in row
        if isinstance(c, str) and c in MAPPABLE_FIELDS + ("label",) and c not in mapped_columns and c not in filled
    ]
    return mapping + extra


def import_rows(
    path: Path, spec: JudgeSpec, mapping: list[tuple[str, str]], label_map: dict[str, str]
) -> Iterator[Item]:
    seen: dict[str, int] = {}
    for line, row in read_rows(path):
        if not seen:
            mapping = with_named_columns(mapping, row)
        item = row_to_item(row, mapping, spec, label_map, str(path), line, f"{path.stem}-{line}")
        if item.id in seen:
            raise DataError(
                f"duplicate id '{item.id}' (first on line {seen[item.id]})", path=str(path), line=line, field="id"
            )
        seen[item.id] = line
        yield item


def check_item(item: Item, spec: JudgeSpec, path: str, line: int) -> list[Problem]:
    """Problems of a valid item against a judge spec: wrong kind, labels outside the label space."""
    if item.kind != spec.kind:
        return [Problem(f"item is {item.kind} but spec '{spec.name}' is {spec.kind}", path, line, "kind")]
    out = []
    space = spec.label_space
    for i, lab in enumerate(item.labels):
        if lab is None:
            continue
        try:
            space.check(lab)
        except ValueError as exc:
            out.append(Problem(str(exc), path, line, f"labels.{i}"))
    if item.label is not None:
        try:
            space.check(item.label)
        except ValueError as exc:
            out.append(Problem(str(exc), path, line, "label"))
    return out


def validate_file(path: Path, spec: JudgeSpec) -> dict[str, Any]:
    """Check every line of a canonical item file; raise one DataError listing all problems."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    counts: dict[str, int] = {}
    n = 0
    for line, obj in iter_json_lines(path):
        n += 1
        try:
            item = Item.model_validate(obj)
        except ValidationError as exc:
            problems += pydantic_problems(exc, str(path), line)
            continue
        if item.id in seen:
            problems.append(Problem(f"duplicate id '{item.id}' (first on line {seen[item.id]})", str(path), line, "id"))
        seen.setdefault(item.id, line)
        problems += check_item(item, spec, str(path), line)
        key = json.dumps(item.label)
        counts[key] = counts.get(key, 0) + 1
        if len(problems) >= MAX_PROBLEMS:
            problems.append(Problem(f"stopped after {MAX_PROBLEMS} problems", str(path)))
            break
    if problems:
        raise DataError(problems=problems)
    return {"items": n, "labels": counts}
