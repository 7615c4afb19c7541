"""The judge API (FastAPI): verdicts over HTTP, in front of vLLM or the in-process engine.

Routes: ``POST /v1/judge`` (one item or a batch, one judge or several for the same items),
``GET /v1/judges``, ``GET /health``, ``GET /metrics`` (Prometheus), and the OpenAPI docs at
``/docs``. ``/v1/*`` and ``/metrics`` need ``Authorization: Bearer KEY`` unless the server was
started without a key (allowed only on a loopback address); such a server answers only
requests whose ``Host`` names a loopback address or ``allowed_hosts`` (421 otherwise: DNS
rebinding). Every bad request gets a 4xx JSON body ``{"error": reason, "request_id": ...}``;
an item that cannot be scored gets a verdict with ``error`` set; nothing a client sends stops
the server, and after any answer to a request whose body was read (a 4xx, a bug's 500) the
connection stays usable (a 413, 421 or 429 comes before the body is read, and closes it).
Internal detail (vLLM's URLs, its errors, exception text) goes to the server log under the
request id (also the ``X-Request-ID`` header), never into a response.

A judge request is admitted (or refused with 429) before its body is read, and its body is
read up to ``max_body_bytes`` (413 above), so memory is bounded by the admission limits.

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
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Literal, Optional

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException

from data.errors import ServerUnavailable
from data.jsonl import lone_surrogate, pydantic_problems
from data.schema import Item, Label, Verdict

log = logging.getLogger("judgeloop.api")
VerdictLogger = Callable[[Item, Verdict], None]
ROUTES = ("/v1/judge", "/v1/judges", "/health", "/metrics", "/docs", "/openapi.json", "/redoc")
JUDGE_ROUTE = "/v1/judge"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


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

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data):
        where = lone_surrogate(data)
        if where is not None:  # "\ud800" is valid JSON but not text: no tokenizer, log or response can hold it
            raise PydanticCustomError(
                "lone_surrogate",
                "text with a lone surrogate (a \\ud800-\\udfff escape without its pair) is not valid Unicode",
                {"field": where},
            )
        return data

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
    request_id: Optional[str] = Field(None, description="quote it when asking about the request: the server log has it")
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


def host_name(host: str) -> str:
    """The name in a ``Host`` header without its port, lower-case: ``[::1]:8000`` -> ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 literal
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class _Admission:
    """At most ``running`` judge requests scored at once and ``queued`` more admitted (being read,
    checked or waiting); beyond that a request is refused at once (429), before its body is read,
    so load never turns into dropped connections or unbounded memory."""

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


class _Disconnected(Exception):
    """The client went away while its body was being read."""


class _Guard:
    """ASGI middleware in front of the app: the request id, the Host check (no key: loopback names
    only), admission of judge requests (429 before the body is read), the body-size limit (413
    before the app parses anything), a 500 for a bug that keeps the connection open, and metrics."""

    def __init__(
        self,
        app,
        max_body_bytes: int,
        metrics: _Metrics,
        admission: _Admission,
        allowed_hosts: frozenset[str] | None,
    ):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.admission = admission
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        path = scope.get("path", "")
        status = {"code": 500, "started": False}
        admitted = False

        async def send_tracked(message):
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        async def refuse(code: int, error: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
            await _send_json(send_tracked, code, {"error": error, "request_id": request_id}, headers)

        try:
            host = self._bad_host(scope)
            if host is not None:
                return await refuse(
                    421,
                    f"this server has no API key and answers only requests addressed to 127.0.0.1, localhost "
                    f"or [::1], not Host '{host}' (a page that points its own name at this machine cannot "
                    "use it); add the name to api.allowed_hosts if it is yours",
                )
            if path == JUDGE_ROUTE and scope.get("method") == "POST":
                if not self.admission.enter():
                    return await refuse(
                        429,
                        f"too many judge requests: {self.admission.running} being scored and "
                        f"{self.admission.queued} waiting; retry later",
                        [(b"retry-after", b"1")],
                    )
                admitted = True
            try:
                body = await self._read_body(scope, receive)
            except _Disconnected:
                status["code"] = 499  # nobody to answer
                return
            if body is None:
                return await refuse(413, f"request body is over the limit of {self.max_body_bytes} bytes")
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send_tracked)
        except Exception:
            # a bug: the detail goes to the log; the client gets a reason and keeps its connection
            log.exception("request %s: unhandled error on %s %s", request_id, scope.get("method"), path)
            if status["started"]:
                raise  # half a response is out: only closing the connection can end it
            await _send_json(
                send_tracked,
                500,
                {"error": "internal error; the server is still up", "request_id": request_id},
                keep_alive=True,
            )
        finally:
            if admitted:
                self.admission.leave()
            route = path if path in ROUTES else "other"
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)

    def _bad_host(self, scope) -> str | None:
        """The Host header's value when this server checks hosts and it is not allowed, else None."""
        if self.allowed_hosts is None:
            return None
        raw = dict(scope.get("headers") or []).get(b"host")
        host = raw.decode("latin-1") if raw is not None else ""
        return None if host and host_name(host) in self.allowed_hosts else (host or "(none)")

    async def _read_body(self, scope, receive) -> bytes | None:
        """The whole body, or None when it is over the limit (by header, before reading, or by counting)."""
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
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


def _dumps(payload: dict) -> bytes:
    """JSON for a response body; ASCII, so no text a client sent can make it unencodable."""
    return json.dumps(payload, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


async def _send_json(
    send, status: int, payload: dict, headers: Iterable[tuple[bytes, bytes]] = (), keep_alive: bool = False
) -> None:
    """A JSON answer sent before the app ran. The body may be unread, so the connection is closed
    unless ``keep_alive`` (the app has read the body already)."""
    body = _dumps(payload)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(() if keep_alive else [(b"connection", b"close")]),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _ErrorJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return _dumps(content)


def _error(status: int, error: str, request: Request | None = None, **extra) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if "retry_after_s" in extra:
        headers = {"Retry-After": str(extra["retry_after_s"])}
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    body = {"error": error, **({"request_id": request_id} if request_id else {}), **extra}
    return _ErrorJSON(body, status_code=status, headers=headers)


def _public_error(verdict: Verdict, judge: str, request_id: str) -> Verdict:
    """The verdict as a client sees it: an engine's failure (which names vLLM's URLs and errors)
    becomes a generic reason with the request id, and its detail goes to the server log. An item's
    own problem (``render: ...``, e.g. too long) is the client's to fix and is returned as it is."""
    if not verdict.error.startswith("backend:"):
        return verdict
    log.warning("request %s: judge %s, item %r: %s", request_id, judge, verdict.id, verdict.error)
    return verdict.model_copy(
        update={"error": f"backend: the engine could not score this item (request id {request_id}; see the server log)"}
    )


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
    allowed_hosts: Iterable[str] = (),
) -> FastAPI:
    """The judge API over ``services`` (judge key -> ``serve.service.JudgeService``).

    ``api_key=None`` turns authentication off: the caller decides when that is allowed. Without a
    key only requests whose ``Host`` names 127.0.0.1, localhost, [::1] or one of ``allowed_hosts``
    (any port) are answered, else 421: a browser page whose name was pointed at this machine (DNS
    rebinding) cannot use an unauthenticated server.
    Judge requests beyond ``max_concurrent_requests`` scoring plus ``max_queued_requests`` waiting
    get 429; one that no engine can answer (vLLM down) or that is not done within
    ``request_timeout_s`` gets 503; both with ``Retry-After`` and a JSON reason.
    """
    metrics = _Metrics()
    admission = _Admission(max_concurrent_requests, max_queued_requests)
    hosts = None
    if api_key is None:
        hosts = frozenset(LOOPBACK_HOSTS) | {host_name(h) for h in allowed_hosts}
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
        return _error(exc.status_code, str(exc.detail), request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            reason = (bad_json.get("ctx") or {}).get("error", "")
            return _error(400, f"malformed JSON{': ' + str(reason) if reason else ''}", request)
        if isinstance(exc.body, (bytes, str)):  # not sent as JSON (no application/json content type)
            try:
                json.loads(exc.body)
            except ValueError:
                return _error(400, "malformed JSON: the body is not a JSON object", request)
            return _error(415, "send the body with Content-Type: application/json", request)
        detail = [
            {
                "field": e["ctx"]["field"] if e.get("type") == "lone_surrogate" else _where(e.get("loc", ())),
                "message": str(e.get("msg", "")).removeprefix("Value error, "),
            }
            for e in errors
        ]
        return _error(422, "; ".join(f"{d['field']}: {d['message']}" for d in detail), request, detail=detail)

    # A bug (any other exception) is answered by _Guard: a 500 with the request id, the connection kept.

    @app.post(
        "/v1/judge",
        response_model=JudgeResponse,
        dependencies=[Depends(authorised)],
        responses={
            400: {"model": ErrorResponse},
            401: {"model": ErrorResponse},
            404: {"model": ErrorResponse},
            413: {"model": ErrorResponse},
            421: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
            429: {"model": ErrorResponse},
            503: {"model": ErrorResponse},
        },
    )
    async def judge(request: JudgeRequest, http: Request) -> Any:
        """Judge one item or a batch with one judge or several; a verdict per item and judge."""
        request_id = http.state.request_id
        names = request.judges or ([request.judge] if request.judge else [])
        if not names:
            if len(services) != 1:
                return _error(422, "name the judge: 'judge' (GET /v1/judges lists them)", http, known=sorted(services))
            names = list(services)
        unknown = [n for n in names if n not in services]
        if unknown:
            close = difflib.get_close_matches(unknown[0], list(services), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            return _error(404, f"unknown judge '{unknown[0]}'{hint}", http, known=sorted(services))
        raw_items = request.items if request.items is not None else [request.item]
        if len(raw_items) * len(names) > max_batch_items:
            return _error(
                413,
                f"{len(raw_items)} item(s) x {len(names)} judge(s) is over the limit of "
                f"{max_batch_items} per request; split the batch",
                http,
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
                    return _error(422, f"for judge '{name}': " + "; ".join(problems), http)
            per_judge[name] = items

        # admitted by _Guard before the body was read (429 there); here only the scoring slots
        async def scored():
            async with admission.slots:
                return await asyncio.gather(*(services[n].score(per_judge[n], request.both_orders) for n in names))

        try:
            results = await asyncio.wait_for(scored(), request_timeout_s)
        except ServerUnavailable as exc:
            log.warning("request %s: 503, no engine can answer: %s", request_id, exc)
            return _error(503, "no engine can answer now; retry in a few seconds", http, retry_after_s=5)
        except asyncio.TimeoutError:
            return _error(
                503,
                f"the request was not scored within {request_timeout_s:g}s (the engines are overloaded or stuck)",
                http,
                retry_after_s=5,
            )
        verdicts = []
        for i in range(len(raw_items)):
            for name, judged in zip(names, results):
                verdict = judged[i]
                if verdict.error is None:
                    metrics.verdicts.labels(name, str(verdict.verdict)).inc()
                    verdicts.append(verdict)
                else:
                    metrics.errors.labels(name).inc()
                    verdicts.append(_public_error(verdict, name, request_id))
                if verdict_logger is not None:  # the server-side log keeps the full error
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
        down = [url for url, up in engines.items() if not up]
        if down:
            log.info("health: engine(s) not answering: %s", ", ".join(down))
        # engines by number, not URL: where vLLM listens is the server log's business, not a client's
        return JSONResponse(
            {
                "status": "ok" if ok else "unavailable",
                "judges": sorted(services),
                "engines": {f"engine-{n}": up for n, up in enumerate(engines.values(), 1)},
            },
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", dependencies=[Depends(authorised)])
    async def prometheus() -> Response:
        """Prometheus metrics: requests, latency histogram, verdicts by judge and label, errors."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_Guard, max_body_bytes=max_body_bytes, metrics=metrics, admission=admission, allowed_hosts=hosts)
    app.state.metrics = metrics
    return app
