"""Streaming JSONL: read and write one object per line in constant memory.

Readers validate each line into a model and raise ``DataError`` naming file, line and field.
Writers are append-only; ``done_ids`` lets a batch job resume where it stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TypeVar

from pydantic import BaseModel, ValidationError

from data.errors import DataError, Problem

M = TypeVar("M", bound=BaseModel)


def pydantic_problems(exc: ValidationError, path: str, line: int | None) -> list[Problem]:
    """Turn a pydantic error into located problems (one per failing field)."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or None
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "is missing"
        elif err["type"] == "extra_forbidden":
            msg = "is not a known field"
        out.append(Problem(msg, path, line, loc))
    return out


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _is_text(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lone_surrogate(obj, prefix: str = "") -> str | None:
    """The dotted path of the first string (value or key) in parsed JSON that holds a lone
    surrogate (``"\\ud800"`` is valid JSON but not Unicode text: no tokenizer, file or response
    can encode it), else None."""
    if isinstance(obj, str):
        return None if _is_text(obj) else (prefix or "(value)")
    if isinstance(obj, dict):
        for key, value in obj.items():
            where = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(key, str) and not _is_text(key):
                return (prefix + "." if prefix else "") + key.encode("utf-8", "backslashreplace").decode()
            found = lone_surrogate(value, where)
            if found is not None:
                return found
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            found = lone_surrogate(value, f"{prefix}.{i}" if prefix else str(i))
            if found is not None:
                return found
    return None


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line; errors name the line."""
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", path=str(p))
    if p.stat().st_size == 0:
        raise DataError("file is empty", path=str(p), hint="expected one JSON object per line")
    seen_any = False
    with open(p, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"not UTF-8 (byte {exc.start} of the line is {raw[exc.start]:#04x})",
                    path=str(p),
                    line=lineno,
                    hint="re-save the file as UTF-8",
                ) from None
            if lineno == 1:
                text = text.removeprefix("\ufeff")
            if not text.strip():
                continue
            try:
                obj = json.loads(text, parse_constant=_reject_constant)
            except (json.JSONDecodeError, ValueError) as exc:
                raise DataError(f"invalid JSON: {getattr(exc, 'msg', exc)}", path=str(p), line=lineno) from None
            except RecursionError:
                raise DataError("invalid JSON: nested too deeply", path=str(p), line=lineno) from None
            if not isinstance(obj, dict):
                raise DataError(f"expected a JSON object, got {type(obj).__name__}", path=str(p), line=lineno)
            if "\\u" in text:  # only a \uXXXX escape can make a lone surrogate out of valid UTF-8
                where = lone_surrogate(obj)
                if where is not None:
                    raise DataError(
                        "text with a lone surrogate (a \\ud800-\\udfff escape without its pair) is not valid Unicode",
                        path=str(p),
                        line=lineno,
                        field=where,
                        hint="fix the escape or the tool that wrote the file",
                    )
            seen_any = True
            yield lineno, obj
    if not seen_any:
        raise DataError("file has no records (only blank lines)", path=str(p))


def read_jsonl(path: str | Path, model: type[M], *, unique_ids: bool = True) -> Iterator[M]:
    """Stream ``model`` objects from a JSONL file, validating each line."""
    for _, rec in read_jsonl_lines(path, model, unique_ids=unique_ids):
        yield rec


def read_jsonl_lines(path: str | Path, model: type[M], *, unique_ids: bool = True) -> Iterator[tuple[int, M]]:
    """``(line number, object)`` for each record, as ``read_jsonl``: for errors found later that name the line."""
    seen: dict[str, int] = {}
    for lineno, obj in iter_json_lines(path):
        try:
            rec = model.model_validate(obj)
        except ValidationError as exc:
            raise DataError(problems=pydantic_problems(exc, str(path), lineno)) from None
        if unique_ids and hasattr(rec, "id"):
            if rec.id in seen:
                raise DataError(
                    f"duplicate id '{rec.id}' (first on line {seen[rec.id]})", path=str(path), line=lineno, field="id"
                )
            seen[rec.id] = lineno
        yield lineno, rec


def dumps(record: BaseModel | dict) -> str:
    if isinstance(record, BaseModel):
        record = record.model_dump(mode="json", exclude_none=True)
    return json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict]) -> int:
    """Write records atomically (temp file then rename); returns how many."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in records:  # records may be a generator that stops on bad input: no .tmp is left behind
                fh.write(dumps(rec) + "\n")
                n += 1
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n


class JsonlAppender:
    """Append-only JSONL output keyed by id: a rerun skips ids already written.

    A line cut short by a kill is dropped on open, so nothing is duplicated or half-read.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done_ids: set[str] = set()
        if self.path.exists():
            self._recover()
        self._fh: IO[str] = open(self.path, "a", encoding="utf-8")

    def _recover(self) -> None:
        """Read the ids already written. Only a last line without its newline can be torn by a kill:
        that one is dropped; any other unreadable line is an error and the file is left as it is."""
        good_end = 0
        with open(self.path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.endswith(b"\n"):
                    break  # the torn last line
                if not raw.strip():
                    good_end = fh.tell()
                    continue
                try:
                    obj = json.loads(raw)
                except (ValueError, RecursionError):
                    obj = None
                if not isinstance(obj, dict) or "id" not in obj:
                    raise DataError(
                        "not a record with an 'id': the output file is not one this command wrote",
                        path=str(self.path),
                        line=lineno,
                        hint="write to a new --out file, or remove that line",
                    )
                self.done_ids.add(str(obj["id"]))
                good_end = fh.tell()
        if good_end != self.path.stat().st_size:
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)

    def write(self, record: BaseModel | dict) -> None:
        line = dumps(record)
        rid = record.id if isinstance(record, BaseModel) else record["id"]
        self._fh.write(line + "\n")
        self._fh.flush()
        self.done_ids.add(str(rid))

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
