"""The verdict log behind a real judge API and real SQLite: every served verdict is a row, even under
concurrency; a full queue or a broken database costs log rows (counted), never a request."""

import asyncio
import sqlite3
import time

import httpx

from data.schema import Item
from serve.client import AsyncJudgeClient, JudgeClient
from serve.verdict_log import item_hash, read_rows
from tests.live.conftest import KEY, live_api
from tests.serve.helpers import pairwise_items


def metric(server, name: str) -> float:
    text = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    line = next(ln for ln in text.splitlines() if ln.startswith(name + " "))
    return float(line.split()[1])


def test_logged_rows_equal_served_requests_under_concurrency(live_serving, tmp_path):
    db = tmp_path / "verdicts.sqlite"
    items = pairwise_items(48, "c")

    async def traffic(url):
        async with AsyncJudgeClient(url, api_key=KEY) as client:
            singles = [client.judge(it, "tiny-helpfulness") for it in items[:32]]
            batches = [
                client.judge_batch(items[i : i + 4], "tiny-helpfulness", both_orders=i % 8 == 0)
                for i in range(32, 48, 4)
            ]
            done = await asyncio.gather(*singles, *batches)
        return [v for d in done for v in (d if isinstance(d, list) else [d])]

    with live_api(live_serving, db, "--shadow=false") as (server, live):
        served = asyncio.run(traffic(server.url))
        live.flush()
        assert metric(server, "judgeloop_verdict_log_written_total") == 48
        assert metric(server, "judgeloop_verdict_log_dropped_total") == 0
    rows = read_rows(db)
    assert len(served) == len(rows) == 48
    by_id = {r["item_id"]: r for r in rows}
    assert set(by_id) == {it["id"] for it in items}
    for v in served:
        r = by_id[v.id]
        assert (r["verdict"], r["fingerprint"], r["role"], r["judge"]) == (
            v.verdict,
            v.judge.fingerprint,
            "production",
            "tiny-helpfulness",
        )
        assert r["probs"] == v.probs and r["confidence"] == v.confidence and r["consistent"] == v.consistent
        assert r["order_probs"] == v.order_probs and r["latency_ms"] == v.latency_ms and r["error"] is None
        assert r["engine"] == v.judge.engine and r["engine"].startswith("transformers/")
    item = Item.model_validate({**items[5], "kind": "pairwise"})
    assert by_id["c5"]["item"]["response_a"] == items[5]["response_a"] and by_id["c5"]["item_hash"] == item_hash(item)
    one_order = [r for r in rows if r["item_id"] in {"c36", "c37"}]  # both_orders=false
    assert len(one_order) == 2 and all(r["order_probs"] is None and r["consistent"] is None for r in one_order)


def test_log_items_off_keeps_only_the_hash(live_serving, tmp_path):
    db = tmp_path / "private.sqlite"
    item = pairwise_items(1, "p")[0]
    with live_api(live_serving, db, "--log_items=false", "--shadow=false") as (server, live):
        with JudgeClient(server.url, api_key=KEY) as client:
            client.judge(item, "tiny-helpfulness")
        live.flush()
    (row,) = read_rows(db)
    assert row["item"] is None and row["item_hash"] == item_hash(Item.model_validate(item))
    assert "Paris" not in db.read_bytes().decode("latin-1")


def test_a_full_queue_drops_and_counts_and_requests_do_not_wait(live_serving, tmp_path):
    db = tmp_path / "busy.sqlite"
    items = pairwise_items(6, "q")
    with live_api(live_serving, db, "--queue_size=2", "--shadow=false") as (server, live):
        with JudgeClient(server.url, api_key=KEY) as client:
            client.judge(items[0], "tiny-helpfulness")
            live.flush()  # creates the WAL files before another connection locks the database
            blocker = sqlite3.connect(db, timeout=0)
            blocker.execute("BEGIN IMMEDIATE")  # the writer thread now waits on the database
            try:
                client.judge(items[1], "tiny-helpfulness")
                deadline = time.monotonic() + 5
                while live.verdict_log.queued and time.monotonic() < deadline:
                    time.sleep(0.01)  # until the writer holds that verdict
                start = time.perf_counter()
                served = client.judge_batch(items[2:6], "tiny-helpfulness")  # 2 fit the queue, 2 are dropped
                seconds = time.perf_counter() - start
            finally:
                blocker.rollback()
                blocker.close()
        live.flush()
        assert len(served) == 4 and all(v.error is None for v in served)
        assert seconds < 2.5, f"the request waited for the blocked log ({seconds:.2f} s)"
        assert metric(server, "judgeloop_verdict_log_dropped_total") == 2
    assert len(read_rows(db)) == 4  # items[0], items[1] and the two that were queued


def test_a_broken_database_never_fails_a_request(live_serving, tmp_path):
    db = tmp_path / "broken.sqlite"
    items = pairwise_items(3, "b")
    with live_api(live_serving, db, "--shadow=false") as (server, live):
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TABLE verdicts")
        with JudgeClient(server.url, api_key=KEY) as client:
            served = client.judge_batch(items, "tiny-helpfulness")
        live.flush()
        assert [v.error for v in served] == [None, None, None]
        assert metric(server, "judgeloop_verdict_log_write_errors_total") == 3
        assert httpx.get(server.url + "/health").status_code == 200


def test_live_config_defaults_to_sqlite_in_the_log_dir_and_reports_every_problem(tmp_path):
    import pytest

    from data.errors import ConfigError
    from serve.config import load_serve_config

    cfg = load_serve_config(None, [f"--log_dir={tmp_path}"])
    assert cfg.live.log and cfg.live.log_items and cfg.live.shadow
    assert cfg.live.url(cfg.log_dir) == f"sqlite:///{tmp_path.resolve() / 'verdicts.sqlite'}"
    with pytest.raises(ConfigError) as exc:
        load_serve_config(None, ["--live.queue_size=0", "--live.log_url=verdicts.db"])
    fields = {p.field for p in exc.value.problems}
    assert {"live.queue_size", "live.log_url"} <= fields


def test_reading_never_changes_the_file_and_a_non_database_is_one_located_error(tmp_path):
    """`judgeloop monitor` and `review export` read the log: a file that is not one (an empty file
    included, which SQLite would turn into a database) is refused and left byte-identical."""
    import pytest
    import sqlalchemy as sa

    from data.errors import DataError
    from data.schema import JudgeRef, Verdict
    from serve.verdict_log import VERDICTS, VerdictLog, engine_for

    cases = {
        "notes.txt": b"not a database\n",
        "empty.sqlite": b"",
        "short.sqlite": b"SQLite form",
        "verdicts.jsonl": b'{"id": "p0"}\n',
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        for location in (path, f"sqlite:///{path}"):
            with pytest.raises(DataError) as err:
                read_rows(location)
            assert err.value.first.field == "log" and err.value.first.path == str(path)
            assert "not an SQLite database" in err.value.first.message
        assert path.read_bytes() == content, f"{name} changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(cases)  # no -wal/-shm/-journal beside them

    db = tmp_path / "verdicts.sqlite"
    log = VerdictLog(f"sqlite:///{db}")
    item = Item.model_validate({**pairwise_items(1)[0], "kind": "pairwise"})
    log.log(
        item, Verdict(id=item.id, verdict="A", probs={"A": 0.9, "B": 0.1}, judge=JudgeRef(name="t", fingerprint="f"))
    )
    log.flush()
    log.close()
    before = db.read_bytes()
    assert [r["item_id"] for r in read_rows(db)] == [item.id]
    assert db.read_bytes() == before
    engine = engine_for(f"sqlite:///{db}", create=False)
    try:
        with pytest.raises(sa.exc.OperationalError, match="readonly"), engine.begin() as conn:
            conn.execute(VERDICTS.delete())
    finally:
        engine.dispose()
    assert db.read_bytes() == before and len(read_rows(db)) == 1


OLD_SCHEMA = """
CREATE TABLE verdicts (
    "row" INTEGER NOT NULL, ts FLOAT NOT NULL, judge VARCHAR(200) NOT NULL, judge_key VARCHAR(300) NOT NULL,
    role VARCHAR(16) NOT NULL, fingerprint VARCHAR(64) NOT NULL, item_id VARCHAR(300) NOT NULL,
    item_hash VARCHAR(64) NOT NULL, item JSON, verdict VARCHAR(64), probs JSON, confidence FLOAT,
    consistent BOOLEAN, order_probs JSON, latency_ms FLOAT, error TEXT, pair_id VARCHAR(32), PRIMARY KEY ("row")
);
CREATE INDEX ix_verdicts_item_hash ON verdicts (item_hash);
CREATE INDEX ix_verdicts_ts ON verdicts (ts);
CREATE INDEX ix_verdicts_judge ON verdicts (judge);
CREATE INDEX ix_verdicts_pair_id ON verdicts (pair_id);
INSERT INTO verdicts (ts, judge, judge_key, role, fingerprint, item_id, item_hash, verdict, probs, confidence)
VALUES (1000.0, 't', 't', 'production', 'f', 'old', 'h', 'A', '{"A": 0.8, "B": 0.2}', 0.8);
"""


def test_a_log_written_before_the_engine_column_is_read_as_is_and_migrated_by_the_server(tmp_path):
    """A log from before verdicts recorded their engine: a reader sees its rows with engine null (unknown) and
    leaves the file as it is; the server adds the column on open, old rows stay null, new rows name their engine."""
    from data.schema import JudgeRef, Verdict
    from serve.verdict_log import VerdictLog

    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript(OLD_SCHEMA)
    conn.close()
    before = db.read_bytes()
    (old,) = read_rows(db)
    assert (old["item_id"], old["verdict"], old["probs"], old["engine"]) == ("old", "A", {"A": 0.8, "B": 0.2}, None)
    assert [r["item_id"] for r in read_rows(db, judge="t", roles=["production"], since=999.0)] == ["old"]
    assert db.read_bytes() == before  # reading did not migrate

    item = Item.model_validate({**pairwise_items(1, "n")[0], "kind": "pairwise"})
    ref = JudgeRef(name="t", fingerprint="f", engine="vllm/bfloat16")
    for _ in range(2):  # opening an already migrated log again changes nothing
        log = VerdictLog(f"sqlite:///{db}")
        log.log(item, Verdict(id=item.id, verdict="B", probs={"A": 0.3, "B": 0.7}, judge=ref))
        log.flush()
        log.close()
    with sqlite3.connect(db) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(verdicts)")]
    conn.close()
    assert columns.count("engine") == 1
    rows = read_rows(db)
    assert [(r["item_id"], r["engine"]) for r in rows] == [
        ("old", None),
        ("n0", "vllm/bfloat16"),
        ("n0", "vllm/bfloat16"),
    ]
    assert rows[0]["probs"] == {"A": 0.8, "B": 0.2} and rows[1]["verdict"] == "B"
