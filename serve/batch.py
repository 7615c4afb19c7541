"""Batch scoring: an item JSONL file in, a verdict JSONL file out, resumable, in constant memory.

Items stream from the input in batches; each verdict is appended (and flushed) to the output
as soon as its batch is scored, keyed by item id. A rerun after a kill skips every id already
in the output (a line cut short by the kill is dropped first), so the output ends with every
input id exactly once. Items that could not be scored get a verdict with ``error`` and are
not retried by a rerun; when no engine is reachable at all the run stops instead (exit 2), keeping
what it wrote, so a rerun scores the rest. Two batches are in flight at once, so rendering one overlaps scoring
the other; verdicts are still written in input order.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from data.errors import JudgeloopError, ServerUnavailable
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
    """Score every item of ``in_path`` not yet in ``out_path``; returns the summary of the output."""

    summary = ScoreSummary(Path(out_path))
    total_in = count_records(in_path) if Path(in_path).exists() else None
    start = time.perf_counter()
    with (
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
