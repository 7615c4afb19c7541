"""The live side of serving: the judge API's verdict-log hook and shadow candidates.

``start_live(cfg.live, services, log_dir)`` opens the verdict log and returns a ``Live`` whose
``logger`` is the API's ``verdict_logger(item, verdict)`` hook. Each verdict is logged with its
role: ``production``, or ``candidate`` when a client asked a candidate (NAME@VERSION) directly.
With ``live.shadow`` on, every production item is also handed to the candidates of the same
spec: a background thread scores it with them (the one scoring core, on the candidates' own
engines) and logs their verdicts with role ``shadow`` and the production verdict's
``pair_id``. The request never waits for any of it; a full shadow queue drops and counts.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import uuid
from collections import defaultdict
from pathlib import Path

from prometheus_client.core import CounterMetricFamily

from data.schema import Item, Verdict
from serve.verdict_log import VerdictLog, queued_batches

log = logging.getLogger("judgeloop.live")


class ShadowScorer:
    """Scores production items with candidate services in a background thread and logs the verdicts."""

    def __init__(
        self, shadows: dict[str, list], verdict_log: VerdictLog, *, queue_size: int = 1_000, batch_size: int = 16
    ):
        self.shadows = shadows  # spec name -> candidate JudgeServices
        self.verdict_log = verdict_log
        self.batch_size = batch_size
        self.scored = 0
        self.dropped = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def submit(self, judge: str, item: Item, pair_id: str, both_orders: bool) -> None:
        if judge not in self.shadows:
            return
        try:
            self._queue.put_nowait((judge, item, pair_id, both_orders))
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            for batch, entries in queued_batches(self._queue, self.batch_size):
                groups: dict[tuple, list] = defaultdict(list)
                for judge, item, pair_id, both in entries:
                    groups[(judge, both)].append((item, pair_id))
                for (judge, both), members in groups.items():
                    for service in self.shadows[judge]:
                        try:
                            verdicts = loop.run_until_complete(service.score([m[0] for m in members], both))
                        except Exception:  # a broken candidate costs shadow verdicts, never production ones
                            log.exception("shadow scoring with %s failed", service.key)
                            with self._lock:
                                self.failed += len(members)
                            continue
                        for (item, pair_id), verdict in zip(members, verdicts):
                            self.verdict_log.log(item, verdict, role="shadow", judge_key=service.key, pair_id=pair_id)
                        with self._lock:
                            self.scored += len(members)
                for _ in batch:
                    self._queue.task_done()
        finally:
            loop.close()

    def flush(self) -> None:
        """Wait until every item queued so far has been scored (its verdicts handed to the log)."""
        self._queue.join()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class Live:
    """The verdict log and the shadow scorer behind one API hook."""

    def __init__(self, services: dict, verdict_log: VerdictLog, shadow: ShadowScorer | None = None):
        self.verdict_log = verdict_log
        self.shadow = shadow
        # a verdict names its judge by fingerprint; production wins if a candidate shares it
        self._by_fingerprint = {}
        for service in sorted(services.values(), key=lambda s: s.served.status != "production", reverse=True):
            self._by_fingerprint[service.ref.fingerprint] = service

    def logger(self, item: Item, verdict: Verdict) -> None:
        """The API's ``verdict_logger`` hook: queue the verdict, hand production items to the shadows."""
        service = self._by_fingerprint.get(verdict.judge.fingerprint)
        role = "production" if service is None or service.served.status == "production" else "candidate"
        key = service.key if service is not None else verdict.judge.name
        pair_id = uuid.uuid4().hex if role == "production" else None
        self.verdict_log.log(item, verdict, role=role, judge_key=key, pair_id=pair_id)
        if self.shadow is not None and role == "production":
            # a pairwise verdict without per-order probabilities was asked for in one order only
            both_orders = item.kind != "pairwise" or verdict.error is not None or verdict.order_probs is not None
            self.shadow.submit(verdict.judge.name, item, pair_id, both_orders)

    def register_metrics(self, registry) -> None:
        """Add the log's and the shadow's counters to the API's Prometheus registry (served on /metrics)."""
        registry.register(self.verdict_log.collector())
        if self.shadow is not None:
            shadow = self.shadow

            class _Collector:
                def collect(self):
                    yield CounterMetricFamily(
                        "judgeloop_shadow_scored", "production items scored by shadow candidates", value=shadow.scored
                    )
                    yield CounterMetricFamily(
                        "judgeloop_shadow_dropped",
                        "production items not shadow-scored because the queue was full",
                        value=shadow.dropped,
                    )
                    yield CounterMetricFamily(
                        "judgeloop_shadow_failed", "shadow scorings that failed", value=shadow.failed
                    )

            registry.register(_Collector())

    def flush(self) -> None:
        """Wait for the shadows, then for the log (tests and shutdown)."""
        if self.shadow is not None:
            self.shadow.flush()
        self.verdict_log.flush()

    def close(self) -> None:
        if self.shadow is not None:
            self.shadow.close()
        self.verdict_log.close()


def start_live(live_cfg, services: dict, log_dir: Path | None = None) -> Live:
    """The verdict log (and shadows, when configured and a candidate shares a production judge's spec)."""
    verdict_log = VerdictLog(live_cfg.url(log_dir), log_items=live_cfg.log_items, queue_size=live_cfg.queue_size)
    shadow = None
    if live_cfg.shadow:
        production = {s.spec.name for s in services.values() if s.served.status == "production"}
        shadows: dict[str, list] = defaultdict(list)
        for s in services.values():
            if s.served.status == "candidate" and s.spec.name in production:
                shadows[s.spec.name].append(s)
        if shadows:
            shadow = ShadowScorer(dict(shadows), verdict_log, queue_size=live_cfg.shadow_queue_size)
    return Live(services, verdict_log, shadow)
