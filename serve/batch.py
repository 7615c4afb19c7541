"""Batch scoring: an item JSONL file in, a verdict JSONL file out, resumable, in constant memory.

Items stream from the input in batches; each verdict is appended (and flushed) to the output
as soon as its batch is scored, keyed by item id. A rerun after a kill skips every id already
in the output (a line cut short by the kill is dropped first), so the output ends with every
input id exactly once. Items that could not be scored get a verdict with ``error`` and are
not retried by a rerun; when no engine is reachable at all the run stops instead (exit 2), keeping
what it wrote, so a rerun scores the rest. Two batches are in flight at once, so rendering one overlaps scoring
the other; verdicts are still written in input order.

An output file holds one judge's verdicts: resuming into a file another judge wrote (another
fingerprint) is refused, and the output is claimed with an ``fcntl`` lock on a sidecar
``OUT.lock`` file for the whole run, so two runs never append to one file. ``claim_output`` does
both, and `judgeloop score` calls it before any model loads.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from data.errors import DataError, JudgeloopError, ServerUnavailable
from data.jsonl import JsonlAppender, read_jsonl
from data.schema import Item, JudgeRef, Verdict

BatchScorer = Callable[[list[Item]], list[Verdict]]
IN_FLIGHT = 2


@dataclass
class ScoreSummary:
    out_path: Path
    scored: int = 0  # this run
    skipped: int = 0  # already in the output
    seconds: float = 0.0
    total: int = 0  # verdicts in the output file
    errors: int = 0
    labels: Counter = field(default_factory=Counter)
    error_reasons: Counter = field(default_factory=Counter)

    @property
    def per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        ok = self.total - self.errors
        lines = [
            f"scored {self.scored} item(s) in {self.seconds:.1f}s ({self.per_second:.2f} items/s)"
            + (f"; {self.skipped} already in the output were skipped" if self.skipped else ""),
            f"{self.out_path}: {self.total} verdict(s), {self.errors} error(s)",
        ]
        if ok:
            dist = ", ".join(f"{lab} {n} ({100 * n / ok:.1f}%)" for lab, n in sorted(self.labels.items()))
            lines.append(f"labels: {dist}")
        for reason, n in self.error_reasons.most_common(3):
            lines.append(f"error x{n}: {reason}")
        return "\n".join(lines)


LOCK_SUFFIX = ".lock"
_held: set[str] = set()  # outputs this process has claimed (a claim inside a claim is the same claim)
_held_lock = threading.Lock()


def lock_path(out_path: str | Path) -> Path:
    out = Path(out_path)
    return out.with_name(out.name + LOCK_SUFFIX)


def check_output_judge(out_path: str | Path, judge: JudgeRef) -> None:
    """Refuse an output that holds another judge's verdicts (streamed: constant memory). Lines that are
    not complete records are left to ``JsonlAppender`` (a torn last line is dropped, a foreign one named)."""
    out = Path(out_path)
    if not out.is_file():
        return
    with open(out, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n") or not raw.strip():
                continue
            try:
                found = json.loads(raw).get("judge") or {}
                fingerprint = found.get("fingerprint")
            except (ValueError, RecursionError, AttributeError):
                continue
            if fingerprint is not None and fingerprint != judge.fingerprint:
                raise DataError(
                    f"holds verdicts of judge '{found.get('name')}' (fingerprint {str(fingerprint)[:16]}), "
                    f"not of this judge '{judge.name}' ({judge.fingerprint[:16]})",
                    path=str(out),
                    line=lineno,
                    field="judge.fingerprint",
                    hint="pass another --out: a verdict file holds one judge's verdicts",
                )


@contextlib.contextmanager
def claim_output(out_path: str | Path, judge: JudgeRef | None = None):
    """Hold ``out_path`` for this run: it must be a file path (not a directory), no other process may be
    writing it (an exclusive ``fcntl`` lock on ``OUT.lock``, released when the run ends or dies), and with
    ``judge`` given it must hold no other judge's verdicts. Re-entrant within a process."""
    out = Path(out_path)
    if out.is_dir():
        raise DataError("is a directory, not a verdict file", path=str(out), hint="pass --out DIR/verdicts.jsonl")
    key = str(out.resolve())
    with _held_lock:
        nested = key in _held
    if nested:
        if judge is not None:
            check_output_judge(out, judge)
        yield out
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(out), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(
                "another run is writing this output",
                path=str(out),
                hint=f"wait for it to finish, or pass another --out (the lock is {lock_path(out).name})",
            ) from None
        with _held_lock:
            _held.add(key)
        try:
            if judge is not None:
                check_output_judge(out, judge)
            yield out
        finally:
            with _held_lock:
                _held.discard(key)
    finally:
        os.close(fd)  # releases the lock


def count_records(path: str | Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def _batches(items: Iterator[Item], done: set[str], size: int, on_skip) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for item in items:
        if item.id in done:
            on_skip()
            continue
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def score_file(
    in_path: str | Path,
    out_path: str | Path,
    score_batch: BatchScorer,
    judge: JudgeRef,
    *,
    batch_size: int = 64,
    progress: bool = True,
) -> ScoreSummary:
    """Score every item of ``in_path`` not yet in ``out_path``; returns the summary of the output.
    The output is claimed first (``claim_output``): locked, and refused if another judge wrote it."""

    summary = ScoreSummary(Path(out_path))
    total_in = count_records(in_path) if Path(in_path).exists() else None
    start = time.perf_counter()
    with (
        claim_output(out_path, judge),
        JsonlAppender(out_path) as out,
        tqdm(
            total=total_in, unit="item", desc="scoring", disable=not progress, file=sys.stderr, dynamic_ncols=True
        ) as bar,
        ThreadPoolExecutor(IN_FLIGHT) as pool,
    ):

        def skip():
            summary.skipped += 1
            bar.update(1)

        def safe_score(batch: list[Item]) -> list[Verdict]:
            try:
                verdicts = score_batch(batch)
            except ServerUnavailable:
                raise  # stop: what is written stays, a rerun scores the rest (no item is lost to an outage)
            except JudgeloopError as exc:  # the whole batch failed: every item says why, the run goes on
                return [Verdict(id=i.id, judge=judge, error=f"backend: {exc.first.message}") for i in batch]
            if [v.id for v in verdicts] != [i.id for i in batch]:
                raise RuntimeError("the scorer returned verdicts that do not match its batch")
            return verdicts

        pending: list[Future] = []
        batches = _batches(read_jsonl(in_path, Item), out.done_ids, batch_size, skip)

        def write(future: Future) -> None:
            for verdict in future.result():
                out.write(verdict)
                summary.scored += 1
                bar.update(1)

        while True:
            while len(pending) < IN_FLIGHT:
                try:
                    batch = next(batches, None)
                except JudgeloopError:  # a bad input line: keep what is scored before it, then report it
                    for future in pending:
                        write(future)
                    raise
                if batch is None:
                    break
                pending.append(pool.submit(safe_score, batch))
            if not pending:
                break
            write(pending.pop(0))
    summary.seconds = time.perf_counter() - start
    _tally(summary)
    return summary


def _tally(summary: ScoreSummary) -> None:
    """Counts over the whole output file (this run and earlier ones), streamed."""
    with open(summary.out_path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            rec = json.loads(raw)
            summary.total += 1
            if rec.get("error"):
                summary.errors += 1
                summary.error_reasons[str(rec["error"])[:200]] += 1
            else:
                summary.labels[str(rec.get("verdict"))] += 1
