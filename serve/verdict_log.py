"""The verdict log: every verdict served, in SQLite by default or any SQLAlchemy database at scale.

One row per verdict: time, judge (spec name), the key it was served under, its role
(``production``, ``candidate`` when a client asked a candidate directly, ``shadow`` when a
candidate scored production traffic off the request path), fingerprint, the engine/dtype that
computed it (``vllm/float32``: the verdict's ``judge.engine``), item id, item sha256
(the item itself too unless ``log_items`` is off), verdict, probabilities, confidence,
consistency, per-order probabilities, latency, error, and ``pair_id`` linking a shadow verdict
to the production verdict of the same item.

Logging never blocks or fails a request: ``log`` only puts the (item, verdict) on a bounded
queue; a background thread builds the rows and writes them in batches. A full queue drops the
verdict and counts it, as does a failed write; both counters are Prometheus metrics.

A log written before a column existed keeps working: the server adds the missing (nullable)
columns when it opens the log, and old rows keep null there (unknown). A reader never changes the
file: it reads a missing column as null.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from data.errors import DataError
from data.provenance import sha256_json
from data.schema import TEXT_FIELDS, Item, Verdict

log = logging.getLogger("judgeloop.verdict_log")
ROLES = ("production", "candidate", "shadow")
SQLITE_HEADER = b"SQLite format 3\x00"
CONTENT_FIELDS = ("kind", *TEXT_FIELDS)

metadata = sa.MetaData()
VERDICTS = sa.Table(
    "verdicts",
    metadata,
    sa.Column("row", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False, index=True, comment="unix time the verdict was served"),
    sa.Column("judge", sa.String(200), nullable=False, index=True, comment="spec name"),
    sa.Column(
        "judge_key",
        sa.String(300),
        nullable=False,
        comment="name the API serves it under (NAME@VERSION for candidates)",
    ),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column(
        "engine",
        sa.String(64),
        nullable=True,
        comment="engine/dtype that computed the verdict (vllm/float32); null: unknown (logged before it was recorded)",
    ),
    sa.Column("item_id", sa.String(300), nullable=False),
    sa.Column("item_hash", sa.String(64), nullable=False, index=True),
    sa.Column("item", sa.JSON, nullable=True, comment="the item; null when log_items is off"),
    sa.Column("verdict", sa.String(64), nullable=True),
    sa.Column("probs", sa.JSON, nullable=True),
    sa.Column("confidence", sa.Float, nullable=True),
    sa.Column("consistent", sa.Boolean, nullable=True),
    sa.Column("order_probs", sa.JSON, nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("pair_id", sa.String(32), nullable=True, index=True),
)
ADDED_COLUMNS = ("engine",)  # columns added after the first release: nullable, added to an older log on open


def migrate(engine: sa.Engine) -> list[str]:
    """Create the table, or add to an older one the columns it lacks (old rows get null); the names added."""
    metadata.create_all(engine)
    missing = [c for c in ADDED_COLUMNS if c not in _columns(engine)]
    for name in missing:
        column = sa.schema.CreateColumn(VERDICTS.c[name]).compile(dialect=engine.dialect)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {VERDICTS.name} ADD COLUMN {column}"))
        except sa.exc.DatabaseError:
            if name not in _columns(engine):  # else another server added it first
                raise
        log.info("verdict log: added column %s (null in the rows logged before)", name)
    return missing


def _columns(engine: sa.Engine) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(VERDICTS.name)}


def queued_batches(q: queue.Queue, batch_size: int):
    """``(batch, entries)`` from a worker queue until its ``None`` sentinel: blocks for the first
    entry, then takes what is already queued, up to ``batch_size``. ``entries`` is the batch without
    the sentinel; the caller calls ``q.task_done()`` once per element of ``batch``."""
    stop = False
    while not stop:
        batch = [q.get()]
        while len(batch) < batch_size:
            try:
                batch.append(q.get_nowait())
            except queue.Empty:
                break
        entries = [b for b in batch if b is not None]
        stop = len(entries) < len(batch)
        yield batch, entries


def item_hash(item: Item) -> str:
    """sha256 of what is judged (kind, prompt fields, responses): the same content hashes the same, whatever its id."""
    content = {k: getattr(item, k) for k in CONTENT_FIELDS if getattr(item, k) is not None}
    return sha256_json(content)


def as_url(location: str | Path) -> str:
    """A SQLAlchemy URL as given, or a file path as a SQLite URL."""
    text = str(location)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def _check_sqlite_file(path: Path) -> None:
    """Refuse, before SQLite opens it, a file that is not an SQLite database (an empty file too:
    SQLite would make one of it)."""
    if not path.exists():
        raise DataError(
            "no verdict log here (file not found)",
            path=str(path),
            hint="`judgeloop serve` writes it (live.log_url, default verdicts.sqlite in log_dir)",
        )
    try:
        with open(path, "rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise DataError(f"cannot read the verdict log: {exc.strerror}", path=str(path), field="log") from None
    if header != SQLITE_HEADER:
        raise DataError(
            "not a verdict log: the file is not an SQLite database" + (" (it is empty)" if not header else ""),
            path=str(path),
            field="log",
            hint="--log takes the verdicts.sqlite `judgeloop serve` writes, or a SQLAlchemy URL",
        )


def engine_for(url: str, *, create: bool) -> sa.Engine:
    """An engine for the log. The server's (``create``) makes the file, with WAL (the monitor reads
    while the server writes) and a busy timeout. A reader's (``create=False``) opens an SQLite file
    read-only (``mode=ro``) after checking it is one, so a read can never change the file."""
    parsed = sa.make_url(url)
    readonly_file = None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            _check_sqlite_file(path)
            readonly_file = path.resolve()
    try:
        if readonly_file is not None:
            uri = f"file:{quote(str(readonly_file))}?mode=ro"
            engine = sa.create_engine(
                "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)
            )
        else:
            engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise DataError(f"cannot open the verdict log '{url}': {exc}", field="log") from None
    if readonly_file is not None:

        @sa.event.listens_for(engine, "connect")
        def _busy_timeout(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

    elif engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

    return engine


class VerdictLog:
    """Writes verdicts to ``url`` from a background thread; ``log`` never blocks and never raises."""

    def __init__(self, url: str, *, log_items: bool = True, queue_size: int = 10_000, batch_size: int = 500):
        self.url = url
        self.log_items = log_items
        self.batch_size = batch_size
        self.engine = engine_for(url, create=True)
        migrate(self.engine)
        self.written = 0
        self.dropped = 0
        self.write_errors = 0
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, name="verdict-log", daemon=True)
        self._thread.start()

    def log(
        self,
        item: Item,
        verdict: Verdict,
        *,
        role: str = "production",
        judge_key: str | None = None,
        pair_id: str | None = None,
    ) -> None:
        """Queue one verdict; when the queue is full it is dropped and counted."""
        try:
            self._queue.put_nowait((time.time(), item, verdict, role, judge_key or verdict.judge.name, pair_id))
        except queue.Full:
            with self._lock:
                self.dropped += 1

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def row(self, ts: float, item: Item, v: Verdict, role: str, judge_key: str, pair_id: str | None) -> dict:
        return {
            "ts": ts,
            "judge": v.judge.name,
            "judge_key": judge_key,
            "role": role,
            "fingerprint": v.judge.fingerprint,
            "engine": v.judge.engine,
            "item_id": item.id,
            "item_hash": item_hash(item),
            "item": item.model_dump(mode="json", exclude_none=True) if self.log_items else None,
            "verdict": None if v.verdict is None else str(v.verdict),
            "probs": v.probs,
            "confidence": v.confidence,
            "consistent": v.consistent,
            "order_probs": v.order_probs,
            "latency_ms": v.latency_ms,
            "error": v.error,
            "pair_id": pair_id,
        }

    def _drain(self) -> None:
        for batch, entries in queued_batches(self._queue, self.batch_size):
            try:
                if entries:
                    rows = [self.row(*e) for e in entries]
                    with self.engine.begin() as conn:
                        conn.execute(VERDICTS.insert(), rows)
                    with self._lock:
                        self.written += len(rows)
            except Exception:  # a database outage costs log rows, never a request or the thread
                log.exception("could not write %d verdict(s) to the log", len(entries))
                with self._lock:
                    self.write_errors += len(entries)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def flush(self) -> None:
        """Wait until every verdict queued so far is written (or counted as failed)."""
        self._queue.join()

    def close(self) -> None:
        """Write what is queued, stop the thread, release the database."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self.engine.dispose()

    def collector(self):
        """A Prometheus collector of the log's counters (register it on the API's registry)."""

        owner = self

        class _Collector:
            def collect(self):
                yield CounterMetricFamily(
                    "judgeloop_verdict_log_written", "verdicts written to the verdict log", value=owner.written
                )
                yield CounterMetricFamily(
                    "judgeloop_verdict_log_dropped",
                    "verdicts not logged because the log's queue was full",
                    value=owner.dropped,
                )
                yield CounterMetricFamily(
                    "judgeloop_verdict_log_write_errors",
                    "verdicts not logged because the database write failed",
                    value=owner.write_errors,
                )
                yield GaugeMetricFamily(
                    "judgeloop_verdict_log_queued", "verdicts waiting to be written", value=owner.queued
                )

        return _Collector()


def read_rows(
    location: str | Path,
    *,
    since: float | None = None,
    until: float | None = None,
    judge: str | None = None,
    roles: Iterable[str] | None = None,
) -> list[dict]:
    """Logged verdicts in ``[since, until)``, oldest first, optionally of one judge (spec name) and some roles.
    Every row has every column: one an older log lacks reads as null (the file is not changed)."""
    engine = engine_for(as_url(location), create=False)
    try:
        if not sa.inspect(engine).has_table(VERDICTS.name):
            raise DataError(
                f"no verdict log table in {location}", field="log", hint="`judgeloop serve` creates it when it starts"
            )
        present = _columns(engine)
        columns = [c if c.name in present else sa.null().label(c.name) for c in VERDICTS.c]
        query = sa.select(*columns).order_by(VERDICTS.c.ts, VERDICTS.c.row)
        if since is not None:
            query = query.where(VERDICTS.c.ts >= since)
        if until is not None:
            query = query.where(VERDICTS.c.ts < until)
        if judge is not None:
            query = query.where(VERDICTS.c.judge == judge)
        if roles is not None:
            query = query.where(VERDICTS.c.role.in_(list(roles)))
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
    except sa.exc.DatabaseError as exc:  # locked, unreadable, or damaged past its header
        raise DataError(f"cannot read the verdict log: {exc.orig}", path=str(location), field="log") from None
    finally:
        engine.dispose()
