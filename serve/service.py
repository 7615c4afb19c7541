"""Judges ready to score: each served judge with its tokenizer and backend, and the vLLM servers behind them.

``start_judges(cfg)`` is what `judgeloop serve` and `judgeloop score --judge` run: load the
configured judges (merging production adapters on CPU), launch the vLLM servers they need (or
use ``vllm.endpoints`` already running, or the in-process transformers engine), and return a
``JudgeService`` per judge key; launched servers are restarted if they exit (``serve.supervisor``).
Every service scores through the one scoring core.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from data.criteria import judge_refs, load_criteria
from data.schema import Item, JudgeRef, Verdict
from judge.hf_backend import HFBackend
from judge.loading import Judge, budgeted
from judge.precision import bf16_is_fast, hardware, resolve_dtype
from judge.scoring import score_items, score_items_async
from serve.launcher import ServedJudge, VLLMServer, judge_endpoints, launch, plan_servers, serving_judges, stop_all
from serve.supervisor import Supervisor
from serve.vllm_backend import VLLMBackend

log = logging.getLogger("judgeloop")


class _OneAtATime:
    """An in-process backend shared by threads: one forward pass at a time (it uses every core)."""

    def __init__(self, backend):
        self.backend = backend
        self._lock = threading.Lock()

    def label_probs(self, prompts, spec):
        with self._lock:
            return self.backend.label_probs(prompts, spec)


@dataclass
class JudgeService:
    served: ServedJudge
    tokenizer: object
    backend: object
    engine: str | None = None  # engine/dtype, named in every verdict (JudgeRef.engine)

    @property
    def key(self) -> str:
        return self.served.key

    @property
    def judge(self) -> Judge:
        return self.served.judge

    @property
    def spec(self):
        return self.served.judge.spec

    @property
    def ref(self) -> JudgeRef:
        return self.served.judge.ref.model_copy(update={"engine": self.engine})

    def describe(self) -> dict:
        j = self.served.judge
        return {
            "name": self.key,
            "spec": j.spec.name,
            "version": j.version,
            "fingerprint": j.fingerprint,
            "status": self.served.status,
            "served_as": self.served.served_as,
            "kind": j.spec.kind,
            "labels": list(j.spec.labels),
            "engine": self.engine,
            "description": j.spec.description,
        }

    async def score(self, items: Sequence[Item], both_orders: bool = True) -> list[Verdict]:
        return await score_items_async(
            items, self.spec, self.backend, self.tokenizer, self.ref, both_orders=both_orders
        )

    def score_stream(self, items: Iterable[Item], both_orders: bool = True, batch_size: int = 64) -> Iterator[Verdict]:
        return score_items(
            items, self.spec, self.backend, self.tokenizer, self.ref, both_orders=both_orders, batch_size=batch_size
        )


@dataclass
class Serving:
    """What ``start_judges`` started; ``close`` stops the vLLM servers and the HTTP clients."""

    services: dict[str, JudgeService]
    servers: list[VLLMServer] = field(default_factory=list)
    supervisor: Supervisor | None = None

    def close(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        for service in self.services.values():
            close = getattr(service.backend, "close", None)
            if close:
                close()
        stop_all(self.servers)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def serving_dtype(setting: str, progress=print) -> str:
    """The dtype judges are served in: ``auto`` is bfloat16 where the hardware has bf16 math, else float32
    (judge/precision.py); bfloat16 asked for on a CPU without bf16 math is served, with a warning."""
    dtype = resolve_dtype(setting) if setting in ("auto", "float32", "bfloat16") else setting
    if dtype == "bfloat16" and setting == "bfloat16" and not bf16_is_fast():
        log.warning("serving in bfloat16 on %s: matmuls are emulated there (~100x slower); use float32", hardware())
    return dtype


def start_judges(
    cfg, *, judges: list[str] | None = None, candidates: list[str] | None = None, progress=print
) -> Serving:
    """Judges of a ``ServeConfig`` (or the ones given), ready to score; the caller closes the result."""
    if judges is None:
        judges = list(cfg.judges)
        if cfg.criteria:
            judges += [
                ref for ref in judge_refs(load_criteria(cfg.criteria), cfg.criteria_untrained) if ref not in judges
            ]
    served = serving_judges(
        judges,
        cfg.candidates if candidates is None else candidates,
        cfg.vllm.device,
        progress,
        merge_on_cpu=cfg.vllm.cpu_merge_production,
    )
    # every judge renders with the budget its engine can take: the spec's, else the model's context capped by
    # vLLM's max_model_len (so no item is refused for length: the renderer cuts it to fit)
    max_model_len = None if cfg.engine == "transformers" else cfg.vllm.max_model_len
    for s in served:
        s.judge = budgeted(s.judge, max_model_len)
    tokenizers = {s.key: s.judge.tokenizer() for s in served}
    dtype = serving_dtype(cfg.vllm.dtype, progress)
    engine = f"{cfg.engine}/{dtype}"
    if cfg.engine == "transformers":
        backends: dict[tuple, object] = {}
        services = {}
        for s in served:
            key = (s.judge.model_path, s.judge.adapter_path)
            if key not in backends:
                backends[key] = _OneAtATime(HFBackend.load(s.judge.model_path, s.judge.adapter_path, dtype=dtype))
            services[s.key] = JudgeService(s, tokenizers[s.key], backends[key], engine)
        return Serving(services)

    servers: list[VLLMServer] = []
    vcfg = dataclasses.replace(cfg.vllm, dtype=dtype)
    if cfg.vllm.endpoints:
        endpoints = {s.key: list(cfg.vllm.endpoints) for s in served}
    else:
        plans = plan_servers(served, vcfg)
        servers = launch(plans, vcfg, cfg.log_dir, progress)
        endpoints = judge_endpoints(served, plans)
    c = cfg.client
    services = {
        s.key: JudgeService(
            s,
            tokenizers[s.key],
            VLLMBackend(
                endpoints[s.key],
                s.model,
                tokenizers[s.key],
                concurrency=c.concurrency,
                prompts_per_request=c.prompts_per_request,
                timeout_s=c.timeout_s,
                retries=c.retries,
                backoff_s=c.backoff_s,
            ),
            engine,
        )
        for s in served
    }
    supervisor = None
    if servers and cfg.vllm.max_restarts > 0:
        supervisor = Supervisor(
            servers, max_restarts=cfg.vllm.max_restarts, startup_timeout_s=cfg.vllm.startup_timeout_s, progress=progress
        ).start()
    return Serving(services, servers, supervisor)
