"""judgeloop's judge as a DeepEval metric: each test case is judged by a judge behind the judge API.

    from integrations.deepeval_metric import JudgeloopMetric

    metric = JudgeloopMetric("http://127.0.0.1:8000", judge="answer-correctness", threshold=0.5)
    evaluate(test_cases=[LLMTestCase(input=..., actual_output=..., expected_output=...)], metrics=[metric])

What is judged, by the judge's kind (``/v1/judges`` says which): binary and pointwise judges see ``input`` as the
instruction, ``actual_output`` as the response, ``expected_output`` (if any) as the reference and
``context``/``retrieval_context`` (joined) as the context; the score is P(first label) (e.g. P(yes)) or the
expected score on the judge's scale, normalised to 0-1 (DeepEval's convention) as (score - min) / (max - min).
A pairwise judge compares ``actual_output`` (A) with ``expected_output`` (B) and scores the win rate (win 1,
tie 0.5). ``success`` is score >= ``threshold``; ``reason`` names the verdict, the judge and its fingerprint,
and ``verdict``, ``probs``, ``judge_name``, ``fingerprint`` and ``engine`` are attributes after ``measure``.

DeepEval pins its own dependencies (click, rich and pytest plugins that clash with judgeloop's), so it runs in
its own environment (``.venv-deepeval``, made by ``make test``): this module needs only DeepEval and httpx and
calls the judge API over HTTP. A test case the judge cannot render sets ``self.error`` and raises, which
DeepEval reports as that metric's error (``ignore_errors`` keeps the run going).
"""

from __future__ import annotations

import os

import httpx
from deepeval.metrics import BaseMetric
from deepeval.test_case import LLMTestCase, SingleTurnParams


class JudgeloopError(RuntimeError):
    """The judge API gave no verdict for this test case (its message says why)."""


class JudgeloopMetric(BaseMetric):
    _required_params = [SingleTurnParams.INPUT, SingleTurnParams.ACTUAL_OUTPUT]

    def __init__(
        self,
        url: str,
        judge: str,
        api_key: str | None = None,
        threshold: float = 0.5,
        timeout_s: float = 120.0,
    ):
        self.url, self.judge = url.rstrip("/"), judge
        key = api_key if api_key is not None else os.environ.get("JUDGELOOP_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.threshold, self.timeout_s = threshold, timeout_s
        self.async_mode = True
        self.strict_mode = False
        self.include_reason = True
        self.evaluation_model = f"judgeloop:{judge}"
        self._info: dict | None = None
        self.verdict = self.probs = self.fingerprint = self.engine = self.judge_name = None

    @property
    def __name__(self):
        return f"judgeloop {self.judge}"

    # -- the judge API ---------------------------------------------------------------------------------
    def _describe(self, judges: list[dict]) -> dict:
        found = {j["name"]: j for j in judges}.get(self.judge)
        if found is None:
            raise JudgeloopError(f"the judge API at {self.url} serves no judge '{self.judge}'")
        return found

    def _item(self, case: LLMTestCase) -> dict:
        kind = self._info["kind"]
        if kind == "pairwise":
            if not case.expected_output:
                raise JudgeloopError("a pairwise judge compares actual_output with expected_output: it has none")
            return {"instruction": case.input, "response_a": case.actual_output, "response_b": case.expected_output}
        item = {"instruction": case.input, "response": case.actual_output}
        if case.expected_output:
            item["reference"] = case.expected_output
        context = [*(case.context or []), *(case.retrieval_context or [])]
        if context:
            item["context"] = "\n\n".join(context)
        return item

    def _apply(self, answer: dict) -> float:
        (verdict,) = answer["verdicts"]
        if verdict.get("error") or verdict.get("verdict") is None:
            self.error = f"judge '{self.judge}' gave no verdict: {verdict.get('error')}"
            raise JudgeloopError(self.error)
        kind, labels = self._info["kind"], self._info["labels"]
        if kind == "pairwise":
            score = {"A": 1.0, "tie": 0.5}.get(verdict["verdict"], 0.0)
        elif kind == "pointwise":
            low, high = float(labels[0]), float(labels[-1])
            score = (float(verdict["score"]) - low) / (high - low)
        else:
            score = float(verdict["probs"][labels[0]])
        judge = verdict["judge"]
        self.verdict, self.probs = verdict["verdict"], verdict["probs"]
        self.judge_name, self.fingerprint, self.engine = judge["name"], judge["fingerprint"], judge.get("engine")
        self.score, self.success = score, score >= self.threshold
        self.reason = (
            f"judgeloop {self.judge_name} ({self.fingerprint[:12]}): {self.verdict}, probabilities {self.probs}"
        )
        return score

    def _request(self, case: LLMTestCase) -> dict:
        return {"judge": self.judge, "items": [self._item(case)]}

    def measure(self, test_case: LLMTestCase, *args, **kwargs) -> float:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=self.timeout_s) as client:
            if self._info is None:
                self._info = self._describe(_json(client.get("/v1/judges"))["judges"])
            return self._apply(_json(client.post("/v1/judge", json=self._request(test_case))))

    async def a_measure(self, test_case: LLMTestCase, *args, **kwargs) -> float:
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=self.timeout_s) as client:
            if self._info is None:
                self._info = self._describe(_json(await client.get("/v1/judges"))["judges"])
            return self._apply(_json(await client.post("/v1/judge", json=self._request(test_case))))

    def is_successful(self) -> bool:
        return bool(self.success) and not self.error


def _json(resp: httpx.Response) -> dict:
    if resp.status_code != 200:
        raise JudgeloopError(f"the judge API answered HTTP {resp.status_code}: {resp.text[:300]}")
    return resp.json()
