"""The judge API (FastAPI): verdicts over HTTP, in front of vLLM or the in-process engine.

Routes: ``POST /v1/judge`` (one item or a batch, one judge or several for the same items),
``GET /v1/judges``, ``GET /health``, ``GET /metrics`` (Prometheus), and the OpenAPI docs at
``/docs``. ``/v1/*`` and ``/metrics`` need ``Authorization: Bearer KEY`` unless the server was
started without a key (allowed only on a loopback address). Every bad request gets a 4xx
JSON body ``{"error": reason, ...}``; an item that cannot be scored gets a verdict with
``error`` set; nothing a client sends stops the server.

``verdict_logger(item, verdict)`` is called for every verdict served (the hook for a verdict
log); it must be quick, and an exception from it is logged, never returned to the client.
"""

from __future__ import annotations

import asyncio
import difflib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Literal, Optional

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.exceptions import HTTPException

from data.errors import ServerUnavailable
from data.jsonl import pydantic_problems
from data.schema import Item, Label, Verdict

log = logging.getLogger("judgeloop.api")
VerdictLogger = Callable[[Item, Verdict], None]
ROUTES = ("/v1/judge", "/v1/judges", "/health", "/metrics", "/docs", "/openapi.json", "/redoc")


class ItemIn(BaseModel):
    """An item to judge. ``id`` defaults to its position, ``group`` to the id, ``kind`` to the judge's."""

    model_config = ConfigDict(extra="forbid")

    id: Optional[str] = Field(None, min_length=1)
    group: Optional[str] = Field(None, min_length=1)
    kind: Optional[Literal["pairwise", "pointwise", "binary"]] = None
    instruction: str
    input: Optional[str] = None
    context: Optional[str] = None
    reference: Optional[str] = None
    response: Optional[str] = None
    response_a: Optional[str] = None
    response_b: Optional[str] = None
    labels: list[Optional[Label]] = Field(default_factory=list, description="human labels, if any (kept, not used)")
    label: Optional[Label] = None
    meta: dict[str, Any] = Field(default_factory=dict)


class JudgeRequest(BaseModel):
    """``judge`` or ``judges``, and ``item`` or ``items``; every item is judged by every judge."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "judge": "helpfulness-pairwise",
                    "item": {
                        "instruction": "Name the capital of France.",
                        "response_a": "Paris.",
                        "response_b": "Lyon.",
                    },
                }
            ]
        },
    )

    judge: Optional[str] = Field(None, description="a judge name from GET /v1/judges")
    judges: Optional[list[str]] = Field(None, min_length=1, description="several judges (criteria) for the same items")
    item: Optional[ItemIn] = None
    items: Optional[list[ItemIn]] = Field(None, min_length=1)
    both_orders: bool = Field(True, description="pairwise: score both orders and average (position bias)")

    @model_validator(mode="after")
    def _one_of_each(self):
        if (self.item is None) == (self.items is None):
            raise ValueError("give exactly one of 'item' or 'items'")
        if self.judge is not None and self.judges is not None:
            raise ValueError("give 'judge' or 'judges', not both")
        return self


class JudgeResponse(BaseModel):
    verdicts: list[Verdict] = Field(description="one per item and judge: item order, then judge order")


class ErrorResponse(BaseModel):
    error: str
    detail: Optional[Any] = None


class _Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "judgeloop_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "judgeloop_request_latency_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.verdicts = Counter(
            "judgeloop_verdicts", "verdicts served by judge and label", ["judge", "label"], registry=self.registry
        )
        self.errors = Counter(
            "judgeloop_verdict_errors", "items served an error instead of a verdict", ["judge"], registry=self.registry
        )


class _Guard:
    """ASGI middleware: the body-size limit (413 before the app parses anything) and HTTP metrics."""

    def __init__(self, app, max_body_bytes: int, metrics: _Metrics):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = {"code": 500}

        async def send_tracked(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            if body is None:
                status["code"] = 413
                await _send_json(send, 413, {"error": f"request body is over the limit of {self.max_body_bytes} bytes"})
                return
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_tracked)
        finally:
            path = scope.get("path", "")
            route = path if path in ROUTES else "other"
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)

    async def _read_body(self, scope, receive) -> bytes | None:
        """The whole body, or None when it is over the limit (by header or by counting)."""
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        return b"".join(chunks)


async def _send_json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error(status: int, error: str, **extra) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if "retry_after_s" in extra:
        headers = {"Retry-After": str(extra["retry_after_s"])}
    return JSONResponse({"error": error, **extra}, status_code=status, headers=headers)


class _Admission:
    """At most ``running`` judge requests scored at once and ``queued`` more waiting; beyond that a
    request is refused at once (429), so load never turns into dropped connections."""

    def __init__(self, running: int, queued: int):
        self.running, self.queued = running, queued
        self.admitted = 0
        self.slots = asyncio.Semaphore(running)

    def enter(self) -> bool:
        if self.admitted >= self.running + self.queued:
            return False
        self.admitted += 1
        return True

    def leave(self) -> None:
        self.admitted -= 1


def _where(loc) -> str:
    return ".".join(str(x) for x in loc if x != "body") or "body"


def create_app(
    services: dict,
    *,
    api_key: str | None,
    max_body_bytes: int = 2_000_000,
    max_batch_items: int = 256,
    verdict_logger: VerdictLogger | None = None,
    max_concurrent_requests: int = 256,
    max_queued_requests: int = 2048,
    request_timeout_s: float = 300.0,
) -> FastAPI:
    """The judge API over ``services`` (judge key -> ``serve.service.JudgeService``).

    ``api_key=None`` turns authentication off: the caller decides when that is allowed.
    Judge requests beyond ``max_concurrent_requests`` scoring plus ``max_queued_requests`` waiting
    get 429; one that no engine can answer (vLLM down) or that is not done within
    ``request_timeout_s`` gets 503; both with ``Retry-After`` and a JSON reason.
    """
    metrics = _Metrics()
    admission = _Admission(max_concurrent_requests, max_queued_requests)
    app = FastAPI(
        title="judgeloop judge API",
        version="1",
        description="Verdicts with the full label distribution from self-hosted LLM judges. "
        "Authenticate with `Authorization: Bearer KEY`.",
    )
    bearer = HTTPBearer(auto_error=False)

    def authorised(credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> None:
        if api_key is None:
            return
        given = credentials.credentials if credentials else ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key (send Authorization: Bearer KEY)")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            reason = (bad_json.get("ctx") or {}).get("error", "")
            return _error(400, f"malformed JSON{': ' + str(reason) if reason else ''}")
        if isinstance(exc.body, (bytes, str)):  # not sent as JSON (no application/json content type)
            try:
                json.loads(exc.body)
            except ValueError:
                return _error(400, "malformed JSON: the body is not a JSON object")
            return _error(415, "send the body with Content-Type: application/json")
        detail = [
            {"field": _where(e.get("loc", ())), "message": str(e.get("msg", "")).removeprefix("Value error, ")}
            for e in errors
        ]
        return _error(422, "; ".join(f"{d['field']}: {d['message']}" for d in detail), detail=detail)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, f"internal error ({type(exc).__name__}); the server is still up")

    @app.post(
        "/v1/judge",
        response_model=JudgeResponse,
        dependencies=[Depends(authorised)],
        responses={
            400: {"model": ErrorResponse},
            401: {"model": ErrorResponse},
            404: {"model": ErrorResponse},
            413: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            429: {"model": ErrorResponse},
            503: {"model": ErrorResponse},
        },
    )
    async def judge(request: JudgeRequest) -> Any:
        """Judge one item or a batch with one judge or several; a verdict per item and judge."""
        names = request.judges or ([request.judge] if request.judge else [])
        if not names:
            if len(services) != 1:
                return _error(422, "name the judge: 'judge' (GET /v1/judges lists them)", known=sorted(services))
            names = list(services)
        unknown = [n for n in names if n not in services]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(services), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            return _error(404, f"unknown judge '{unknown[0]}'{hint}", known=sorted(services))
        raw_items = request.items if request.items is not None else [request.item]
        if len(raw_items) * len(names) > max_batch_items:
            return _error(
                413,
                f"{len(raw_items)} item(s) x {len(names)} judge(s) is over the limit of "
                f"{max_batch_items} per request; split the batch",
            )
        per_judge: dict[str, list[Item]] = {}
        for name in names:
            spec = services[name].spec
            items = []
            for i, raw in enumerate(raw_items):
                data = raw.model_dump(exclude_none=True)
                data.setdefault("id", str(i))
                data.setdefault("group", data["id"])
                data.setdefault("kind", spec.kind)
                try:
                    items.append(Item.model_validate(data))
                except ValidationError as exc:
                    where = "item" if request.item is not None else f"items.{i}"
                    problems = [
                        f"{where}.{p.field}: {p.message}" if p.field else f"{where}: {p.message}"
                        for p in pydantic_problems(exc, "", None)
                    ]
                    return _error(422, f"for judge '{name}': " + "; ".join(problems))
            per_judge[name] = items
        if not admission.enter():
            return _error(
                429,
                f"too many judge requests: {admission.running} being scored and {admission.queued} "
                "waiting; retry later",
                retry_after_s=1,
            )

        async def scored():
            async with admission.slots:
                return await asyncio.gather(*(services[n].score(per_judge[n], request.both_orders) for n in names))

        try:
            results = await asyncio.wait_for(scored(), request_timeout_s)
        except ServerUnavailable as exc:
            return _error(503, f"no engine can answer now: {exc.first.message}", retry_after_s=5)
        except asyncio.TimeoutError:
            return _error(
                503,
                f"the request was not scored within {request_timeout_s:g}s (the engines are overloaded or stuck)",
                retry_after_s=5,
            )
        finally:
            admission.leave()
        verdicts = []
        for i in range(len(raw_items)):
            for name, judged in zip(names, results):
                verdict = judged[i]
                verdicts.append(verdict)
                if verdict.error is None:
                    metrics.verdicts.labels(name, str(verdict.verdict)).inc()
                else:
                    metrics.errors.labels(name).inc()
                if verdict_logger is not None:
                    try:
                        verdict_logger(per_judge[name][i], verdict)
                    except Exception:  # the log must never cost a client its verdict
                        log.exception("verdict logger failed")
        return JudgeResponse(verdicts=verdicts)

    @app.get("/v1/judges", dependencies=[Depends(authorised)])
    async def judges() -> dict:
        """The judges served: name (what to send as 'judge'), version, fingerprint, status."""
        return {"judges": [s.describe() for s in services.values()]}

    @app.get("/health")
    async def health() -> Response:
        """200 when every judge has a healthy engine behind it, else 503 with which does not."""
        engines: dict[str, bool] = {}
        backends = {id(s.backend): s.backend for s in services.values() if hasattr(s.backend, "ahealth")}
        for backend in backends.values():
            engines.update(await backend.ahealth())
        ok = all(
            any(engines.get(e, False) for e in s.backend.endpoints)
            for s in services.values()
            if hasattr(s.backend, "ahealth")
        )
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "judges": sorted(services), "engines": engines},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", dependencies=[Depends(authorised)])
    async def prometheus() -> Response:
        """Prometheus metrics: requests, latency histogram, verdicts by judge and label, errors."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_Guard, max_body_bytes=max_body_bytes, metrics=metrics)
    app.state.metrics = metrics
    return app
