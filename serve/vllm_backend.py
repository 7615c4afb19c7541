"""The vLLM backend: label distributions from one or more vLLM OpenAI-compatible servers.

Each prompt goes to ``/v1/completions`` as the renderer's token ids, so the prompt served is
token-identical to the prompt trained and validated (chat template and truncation included;
``/v1/chat/completions`` would re-render and re-tokenise it on the server). One output token
is generated, and ``logprob_token_ids`` asks for the raw logprob of exactly each label's first
token; the sampled text is never read: the distribution is the labels' first-token probabilities,
renormalised, which is what the in-process backend computes from the logits. A label absent from
the answer counts as probability 0. No guided decoding (``structured_outputs``): renormalising the
raw logprobs over the labels is the same distribution that guided choice returns, and guided requests
wait for their grammar (vLLM's "Deferred" requests) and were measured slower (benchmarks/batching.py).

All HTTP runs on one event loop in a background thread, so the backend serves the judge API's
loop (``alabel_probs``) and plain synchronous callers (``label_probs``) alike. Requests carry
several prompts each, at most ``concurrency`` are in flight, endpoints are used round-robin,
and a failed request is retried on the next endpoint (with exponential backoff once every
endpoint has been tried). A prompt that still fails comes back as a ``ServerError`` in its
slot, so the scoring core gives only its item an ``error``. When no endpoint can be reached at
all (every one refused the connection within ``DOWN_FOR_S``: vLLM died or is restarting), the
whole call raises ``ServerUnavailable`` at once instead of waiting out the retries: the judge API
turns that into a 503. Every HTTP call has a timeout (``timeout_s``, 5 s for /health).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future

import httpx

from data.errors import JudgeloopError, ServerError, ServerUnavailable
from data.render import Rendered
from data.spec import JudgeSpec
from judge.hf_backend import label_token_ids
from judge.scoring import LabelProbs

# vLLM's default --max-logprobs; only matters for a server that ignores logprob_token_ids
TOP_LOGPROBS = 20
DOWN_FOR_S = 5.0  # an endpoint that refused a connection is skipped this long (unless all are)


class _Rejected(Exception):
    """vLLM answered 4xx: the request itself is wrong, retrying will not help."""


class VLLMBackend:
    """Scores rendered prompts on vLLM servers that serve ``model`` (a model or LoRA name)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        model: str,
        tokenizer,
        *,
        concurrency: int = 8,
        prompts_per_request: int = 16,
        timeout_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        api_key: str | None = None,
    ):
        if not endpoints:
            raise ValueError("VLLMBackend needs at least one endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.model = model
        self.tokenizer = tokenizer
        self.concurrency = concurrency
        self.prompts_per_request = max(1, prompts_per_request)
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._next = 0
        self._down_until = dict.fromkeys(self.endpoints, 0.0)
        self._label_ids: dict[tuple[str, ...], list[int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._lock = threading.Lock()

    # -- the public, Backend-protocol side -------------------------------------------------
    def label_probs(self, prompts: Sequence[Rendered], spec: JudgeSpec) -> list[LabelProbs]:
        return self._submit(self._score(list(prompts), spec)).result()

    async def alabel_probs(self, prompts: Sequence[Rendered], spec: JudgeSpec) -> list[LabelProbs]:
        return await asyncio.wrap_future(self._submit(self._score(list(prompts), spec)))

    def health(self) -> dict[str, bool]:
        """Which endpoints answer ``/health`` now."""
        return self._submit(self._health()).result()

    async def ahealth(self) -> dict[str, bool]:
        return await asyncio.wrap_future(self._submit(self._health()))

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result(timeout=10)
            self._client = self._semaphore = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the loop thread -------------------------------------------------------------------
    def _submit(self, coro) -> Future:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-backend", daemon=True)
                self._thread.start()
            return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _ensure_client(self) -> httpx.AsyncClient:
        if self._client is None:  # created on the loop thread, used only there
            limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
            self._client = httpx.AsyncClient(
                headers=self.headers,
                limits=limits,
                timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)),
            )
            self._semaphore = asyncio.Semaphore(self.concurrency)
        return self._client

    # -- scoring -----------------------------------------------------------------------------
    def _ids_for(self, spec: JudgeSpec) -> list[int]:
        key = (*spec.labels, spec.prompt_format)
        if key not in self._label_ids:
            self._label_ids[key] = label_token_ids(self.tokenizer, spec.labels, spec.prompt_format)
        return self._label_ids[key]

    async def _score(self, prompts: list[Rendered], spec: JudgeSpec) -> list[LabelProbs]:
        self._ensure_client()
        try:
            ids = self._ids_for(spec)
        except JudgeloopError as exc:
            return [exc] * len(prompts)
        step = self.prompts_per_request
        chunks = [prompts[i : i + step] for i in range(0, len(prompts), step)]
        results = await asyncio.gather(*(self._score_chunk(c, spec, ids) for c in chunks))
        flat = [d for chunk in results for d in chunk]
        down = next((d for d in flat if isinstance(d, ServerUnavailable)), None)
        if down is not None:
            raise down
        return flat

    def request_body(self, chunk: Sequence[Rendered], spec: JudgeSpec, ids: list[int]) -> dict:
        """One /v1/completions request: the prompts' token ids, one output token, the logprobs of the labels'
        first tokens (raw: renormalised here, so no guided decoding is needed, see the module's docstring)."""
        return {
            "model": self.model,
            "prompt": [p.token_ids for p in chunk],
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": TOP_LOGPROBS,
            "logprob_token_ids": ids,
            "return_tokens_as_token_ids": True,
        }

    async def _score_chunk(self, chunk: list[Rendered], spec: JudgeSpec, ids: list[int]) -> list[LabelProbs]:
        body = self.request_body(chunk, spec, ids)
        try:
            data = await self._post(body)
        except _Rejected as exc:
            if len(chunk) > 1:  # find the one prompt vLLM refuses (e.g. longer than max_model_len)
                parts = await asyncio.gather(*(self._score_chunk([p], spec, ids) for p in chunk))
                return [d for part in parts for d in part]
            return [ServerError(f"vLLM refused the prompt: {exc}")]
        except ServerError as exc:
            return [exc] * len(chunk)
        out: list[LabelProbs] = [ServerError("vLLM returned no choice for this prompt")] * len(chunk)
        try:
            for choice in data["choices"]:
                out[choice["index"]] = _label_distribution(choice, spec.labels, ids)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return [ServerError(f"unexpected answer from vLLM ({type(exc).__name__}: {exc})")] * len(chunk)
        return out

    async def _post(self, body: dict) -> dict:
        client = self._ensure_client()
        attempts = self.retries + 1
        last = ""
        for attempt in range(attempts):
            if self._all_down():
                raise ServerUnavailable(
                    f"no vLLM endpoint is reachable (all refused connections in the last {DOWN_FOR_S:g}s)",
                    hint="vLLM is down or restarting; retry in a few seconds",
                )
            endpoint = self._pick()
            try:
                async with self._semaphore:
                    resp = await client.post(endpoint + "/v1/completions", json=body)
            except httpx.TimeoutException:
                last = f"{endpoint} timed out after {self.timeout_s:g}s"
            except httpx.TransportError as exc:
                last = f"{endpoint} unreachable ({type(exc).__name__}: {exc})"
                self._down_until[endpoint] = time.monotonic() + DOWN_FOR_S
                if self._all_down():  # every endpoint refused: no backoff to wait out
                    raise ServerUnavailable(
                        f"no vLLM endpoint is reachable ({last})",
                        hint="vLLM is down or restarting; retry in a few seconds",
                    )
            else:
                if resp.status_code == 200:
                    return resp.json()
                reason = _error_text(resp)
                if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
                    raise _Rejected(f"HTTP {resp.status_code}: {reason}")
                last = f"{endpoint} answered HTTP {resp.status_code}: {reason}"
            if attempt + 1 < attempts and (attempt + 1) % len(self.endpoints) == 0:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt // len(self.endpoints)))
        raise ServerError(
            f"vLLM request failed after {attempts} attempt(s): {last}", hint="is the vLLM server up? see its log"
        )

    def _all_down(self) -> bool:
        now = time.monotonic()
        return all(until > now for until in self._down_until.values())

    def _pick(self) -> str:
        """The next endpoint round-robin, skipping ones that just refused connections."""
        now = time.monotonic()
        n = len(self.endpoints)
        for k in range(n):
            endpoint = self.endpoints[(self._next + k) % n]
            if self._down_until[endpoint] <= now:
                self._next = (self._next + k + 1) % n
                return endpoint
        endpoint = self.endpoints[self._next % n]  # all down: try anyway, in turn
        self._next = (self._next + 1) % n
        return endpoint

    async def _health(self) -> dict[str, bool]:
        client = self._ensure_client()

        async def one(endpoint: str) -> bool:
            try:
                return (await client.get(endpoint + "/health", timeout=5.0)).status_code == 200
            except httpx.HTTPError:
                return False

        states = await asyncio.gather(*(one(e) for e in self.endpoints))
        return dict(zip(self.endpoints, states))


def _label_distribution(choice: dict, labels: Sequence[str], ids: Sequence[int]) -> LabelProbs:
    """The labels' first-token probabilities in one completion choice, renormalised."""
    top = choice["logprobs"]["top_logprobs"][0]
    by_id: dict[int, float] = {}
    for token, logprob in top.items():
        if token.startswith("token_id:"):
            by_id[int(token.removeprefix("token_id:"))] = float(logprob)
    raw = [math.exp(by_id[i]) if i in by_id else 0.0 for i in ids]
    total = sum(raw)
    if not total > 0 or not math.isfinite(total):
        return ServerError(f"vLLM gave no probability to any label ({', '.join(labels)})")
    return {lab: p / total for lab, p in zip(labels, raw)}


def _error_text(resp: httpx.Response) -> str:
    try:
        err = resp.json()
        if isinstance(err, dict):
            err = err.get("error", err)
            if isinstance(err, dict):
                err = err.get("message", err)
        return str(err)[:500]
    except ValueError:
        return resp.text[:500]
