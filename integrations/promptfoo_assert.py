"""judgeloop's judge as a promptfoo grader: a Python assertion that sends each output to the judge API.

In a promptfoo config (promptfoo runs this file with ``PROMPTFOO_PYTHON``, a Python that has judgeloop):

    defaultTest:
      assert:
        - type: python
          value: file://integrations/promptfoo_assert.py
          config: {url: "http://127.0.0.1:8000", judge: answer-correctness, threshold: 0.5}

What is judged, by the judge's kind (``/v1/judges`` says which): binary and pointwise judges see the rendered
prompt (or the test's ``instruction`` var) as the instruction, the output as the response and the ``reference``
var (if any) as the reference; the score is P(first label) (e.g. P(yes)) or the expected score scaled to 0-1. A
pairwise judge compares the output (A) with the ``reference`` var (B): the score is the win rate (win 1, tie
0.5). ``pass`` is score >= ``threshold``; ``reason`` names the verdict, the judge and its fingerprint, and
``namedScores``/``metadata`` carry the label probabilities, the judge's name, fingerprint and engine.

promptfoo's grader hook (a ``python`` assertion returning a GradingResult) is used rather than a provider:
a provider produces outputs, a grader judges them. An item the judge cannot render (or a judge error) comes
back as a failed assertion whose reason is the judge's error: promptfoo's own form for a grader that cannot
grade, never a crash.
"""

from __future__ import annotations

import os
from typing import Any

from data.errors import JudgeloopError
from serve.client import JudgeClient

_described: dict[tuple[str, str], dict] = {}


def _judge_info(client: JudgeClient, url: str, judge: str) -> dict:
    if (url, judge) not in _described:
        for j in client.judges():
            _described[(url, j["name"])] = j
    if (url, judge) not in _described:
        raise JudgeloopError(f"the judge API at {url} serves no judge '{judge}'", field="config.judge")
    return _described[(url, judge)]


def item_for(kind: str, output: str, context: dict) -> dict[str, Any]:
    variables = context.get("vars") or {}
    instruction = str(variables.get("instruction") or context.get("prompt") or "")
    reference = variables.get("reference")
    if kind == "pairwise":
        if not reference:
            raise JudgeloopError("a pairwise judge compares the output with the test's 'reference' var: it has none")
        return {"instruction": instruction, "response_a": output, "response_b": str(reference)}
    item = {"instruction": instruction, "response": output}
    if reference:
        item["reference"] = str(reference)
    return item


def grade(output: str, context: dict) -> dict[str, Any]:
    """The GradingResult for one output (promptfoo's ``get_assert``)."""
    config = (context or {}).get("config") or {}
    url = str(config.get("url") or os.environ.get("JUDGELOOP_URL") or "http://127.0.0.1:8000")
    judge = config.get("judge")
    threshold = float(config.get("threshold", 0.5))
    try:
        if not judge:
            raise JudgeloopError("names no judge", field="config.judge", hint="config: {judge: answer-correctness}")
        with JudgeClient(url, api_key=config.get("api_key")) as client:
            info = _judge_info(client, url, judge)
            verdict = client.judge_batch([item_for(info["kind"], output, context or {})], judge)[0]
        if verdict.error or verdict.verdict is None:
            raise JudgeloopError(f"judge '{judge}' gave no verdict: {verdict.error}")
    except JudgeloopError as exc:
        return {"pass": False, "score": 0.0, "reason": f"judgeloop: {exc.first}"}
    labels = info["labels"]
    if info["kind"] == "pairwise":
        score = {"A": 1.0, "tie": 0.5}.get(verdict.verdict, 0.0)
    elif info["kind"] == "pointwise":
        score = (float(verdict.score) - float(labels[0])) / (float(labels[-1]) - float(labels[0]))
    else:
        score = float(verdict.probs[labels[0]])
    ref = verdict.judge
    return {
        "pass": score >= threshold,
        "score": score,
        "reason": f"judgeloop {ref.name} ({ref.fingerprint[:12]}): {verdict.verdict}",
        "namedScores": {f"{judge}:{label}": p for label, p in verdict.probs.items()},
        "metadata": {
            "verdict": verdict.verdict,
            "probs": verdict.probs,
            "judge": ref.name,
            "fingerprint": ref.fingerprint,
            "engine": ref.engine,
        },
    }


def get_assert(output: str, context: dict) -> dict[str, Any]:
    """promptfoo's entry point for a ``python`` assertion."""
    return grade(output, context)
