"""Python client of the judge API, synchronous (``JudgeClient``) and asynchronous (``AsyncJudgeClient``).

    from serve.client import JudgeClient
    with JudgeClient("http://127.0.0.1:8000", api_key=os.environ["JUDGELOOP_API_KEY"]) as client:
        verdict = client.judge({"instruction": "...", "response_a": "...", "response_b": "..."},
                               judge="helpfulness-pairwise")
        print(verdict.verdict, verdict.probs, verdict.judge.fingerprint)

Items are dicts (or ``data.schema.Item``); ``id``, ``group`` and ``kind`` may be left out.
A request the API refuses raises ``ServerError`` with the API's reason; connection failures
and 429/502/503/504 are retried first, after the ``Retry-After`` the API sends (seconds or an
HTTP date) or else an exponential backoff; then an unreachable API, a 429 or a 503 raises
``ServerUnavailable`` (a ``ServerError``). A ``Retry-After`` longer than ``timeout_s`` is not
waited for: the call gives up at once. Every call has a timeout (``timeout_s``). Per-item
failures are not exceptions: such a verdict has ``error`` set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception_type, retry_if_result

from data.errors import ServerError, ServerUnavailable
from data.schema import Item, Verdict

RETRY_STATUS = (429, 502, 503, 504)
ItemLike = dict | Item


def _payload(items: Sequence[ItemLike], judge: str | None, judges: Sequence[str] | None, both_orders: bool) -> dict:
    body: dict[str, Any] = {
        "items": [
            i.model_dump(exclude_none=True, exclude_defaults=True) if isinstance(i, Item) else dict(i) for i in items
        ],
        "both_orders": both_orders,
    }
    if judges:
        body["judges"] = list(judges)
    elif judge:
        body["judge"] = judge
    return body


def _verdicts(resp: httpx.Response) -> list[Verdict]:
    _raise_for(resp)
    return [Verdict.model_validate(v) for v in resp.json()["verdicts"]]


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        reason = resp.json().get("error", resp.text)
    except ValueError:
        reason = resp.text[:300]
    error = ServerUnavailable if resp.status_code in (429, 503) else ServerError
    raise error(f"judge API answered HTTP {resp.status_code}: {reason}")


def retry_after_s(resp: httpx.Response) -> float | None:
    """The seconds a ``Retry-After`` header asks for (delay-seconds or an HTTP date); None without a usable one."""
    value = resp.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return max(0.0, seconds)


class _Base:
    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 300.0,
        retries: int = 2,
        backoff_s: float = 0.5,
    ):
        self.url = url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get("JUDGELOOP_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s

    def _retry_policy(self) -> dict[str, Any]:
        """The one retry policy of both clients (tenacity's ``Retrying``/``AsyncRetrying`` arguments): a
        connection failure or a 429/502/503/504 is tried again up to ``retries`` times, after the answer's
        ``Retry-After`` or else ``backoff_s * 2**n``; a wait longer than ``timeout_s`` is not made. Giving
        up returns the last answer (the caller raises for it) or raises ``ServerUnavailable``."""
        return {
            "retry": retry_if_exception_type(httpx.TransportError)
            | retry_if_result(lambda resp: resp.status_code in RETRY_STATUS),
            "wait": self._wait_s,
            "stop": lambda rs: rs.attempt_number > self.retries or self._wait_s(rs) > self.timeout_s,
            "retry_error_callback": self._give_up,
        }

    def _wait_s(self, rs: RetryCallState) -> float:
        outcome = rs.outcome
        asked = None if outcome is None or outcome.failed else retry_after_s(outcome.result())
        return asked if asked is not None else self.backoff_s * 2 ** (rs.attempt_number - 1)

    def _give_up(self, rs: RetryCallState) -> httpx.Response:
        outcome = rs.outcome
        if outcome.failed:
            raise ServerUnavailable(f"cannot reach the judge API at {self.url}: {outcome.exception()}") from None
        return outcome.result()


class JudgeClient(_Base):
    """Synchronous client; use as a context manager or call ``close``."""

    def __init__(self, url: str, api_key: str | None = None, **kw):
        super().__init__(url, api_key, **kw)
        self._http = httpx.Client(base_url=self.url, headers=self.headers, timeout=self.timeout_s)

    def _request(self, method: str, path: str, **kw) -> httpx.Response:
        return Retrying(**self._retry_policy())(self._http.request, method, path, **kw)

    def judge(self, item: ItemLike, judge: str | None = None, *, both_orders: bool = True) -> Verdict:
        """One item, one judge (``judge`` may be omitted when the API serves only one)."""
        return self.judge_batch([item], judge, both_orders=both_orders)[0]

    def judge_batch(
        self, items: Iterable[ItemLike], judge: str | None = None, *, both_orders: bool = True
    ) -> list[Verdict]:
        """Several items with one judge, in one request (the API limits its size)."""
        return _verdicts(self._request("POST", "/v1/judge", json=_payload(list(items), judge, None, both_orders)))

    def judge_criteria(self, item: ItemLike, judges: Sequence[str], *, both_orders: bool = True) -> dict[str, Verdict]:
        """One item judged by several judges (criteria): judge name -> verdict."""
        verdicts = _verdicts(self._request("POST", "/v1/judge", json=_payload([item], None, judges, both_orders)))
        return dict(zip(judges, verdicts))

    def judges(self) -> list[dict]:
        resp = self._request("GET", "/v1/judges")
        _raise_for(resp)
        return resp.json()["judges"]

    def health(self) -> dict:
        return self._request("GET", "/health").json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncJudgeClient(_Base):
    """Asynchronous client (httpx.AsyncClient); ``async with`` or ``await aclose()``."""

    def __init__(self, url: str, api_key: str | None = None, *, max_connections: int = 32, **kw):
        super().__init__(url, api_key, **kw)
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=self.headers,
            timeout=self.timeout_s,
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def _request(self, method: str, path: str, **kw) -> httpx.Response:
        return await AsyncRetrying(**self._retry_policy())(self._http.request, method, path, **kw)

    async def judge(self, item: ItemLike, judge: str | None = None, *, both_orders: bool = True) -> Verdict:
        return (await self.judge_batch([item], judge, both_orders=both_orders))[0]

    async def judge_batch(
        self, items: Iterable[ItemLike], judge: str | None = None, *, both_orders: bool = True
    ) -> list[Verdict]:
        return _verdicts(await self._request("POST", "/v1/judge", json=_payload(list(items), judge, None, both_orders)))

    async def judge_criteria(
        self, item: ItemLike, judges: Sequence[str], *, both_orders: bool = True
    ) -> dict[str, Verdict]:
        verdicts = _verdicts(await self._request("POST", "/v1/judge", json=_payload([item], None, judges, both_orders)))
        return dict(zip(judges, verdicts))

    async def judges(self) -> list[dict]:
        resp = await self._request("GET", "/v1/judges")
        _raise_for(resp)
        return resp.json()["judges"]

    async def health(self) -> dict:
        return (await self._request("GET", "/health")).json()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
