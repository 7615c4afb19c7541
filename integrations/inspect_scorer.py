"""judgeloop's judge as an Inspect AI scorer: each sample's output is judged by a judge behind the judge API.

    from integrations.inspect_scorer import judgeloop_scorer

    @task
    def my_eval():
        return Task(dataset=..., solver=generate(),
                    scorer=judgeloop_scorer("http://127.0.0.1:8000", judge="answer-correctness", threshold=0.5))

What is judged, by the judge's kind (the judge API's ``/v1/judges`` says which):

- binary: the sample's input as ``instruction``, the model's output as ``response``, the target (if any) as
  ``reference``; the score is P(first label), e.g. P(yes);
- pointwise: the same item; the score is the judge's expected score on its scale;
- pairwise: the model's output (A) against the target (B, a reference answer); the score is the win rate
  (win 1, tie 0.5, loss 0), both orders as the API always judges them.

With ``threshold`` the value is CORRECT/INCORRECT (score >= threshold), for Inspect's ``accuracy()``; without,
the number, for ``mean()``. Every Score carries the verdict, the label probabilities, the judge's name,
fingerprint and engine in ``metadata``. An item the judge cannot render (or any judge error) raises, so Inspect
records it as that sample's error (its own error form), never as a score.
"""

from __future__ import annotations

from typing import Any

from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, mean, scorer, stderr
from inspect_ai.solver import TaskState

from serve.client import AsyncJudgeClient


class JudgeVerdictError(RuntimeError):
    """The judge gave no verdict for this sample (its error says why)."""


def item_for(kind: str, state: TaskState, target: Target) -> dict[str, Any]:
    """The judge API item for one sample."""
    reference = target.text if target and target.text else None
    instruction = state.input_text
    response = state.output.completion if state.output else ""
    if kind == "pairwise":
        if not reference:
            raise JudgeVerdictError("a pairwise judge compares the output with the sample's target: it has none")
        return {"instruction": instruction, "response_a": response, "response_b": reference}
    item = {"instruction": instruction, "response": response}
    if reference:
        item["reference"] = reference
    return item


def score_of(kind: str, labels: list[str], verdict) -> float:
    if kind == "pairwise":
        return {"A": 1.0, "tie": 0.5}.get(verdict.verdict, 0.0)
    if kind == "pointwise":
        return float(verdict.score)
    return float(verdict.probs[labels[0]])


@scorer(metrics=[mean(), stderr()])
def judgeloop_scorer(
    url: str,
    judge: str,
    api_key: str | None = None,
    threshold: float | None = None,
    timeout_s: float = 120.0,
):
    """Scores each sample with ``judge`` on the judge API at ``url`` (see the module docstring)."""
    described: dict[str, dict] = {}

    async def score(state: TaskState, target: Target) -> Score:
        async with AsyncJudgeClient(url, api_key=api_key, timeout_s=timeout_s) as client:
            if judge not in described:
                described.update({j["name"]: j for j in await client.judges()})
                if judge not in described:
                    raise JudgeVerdictError(f"the judge API at {url} serves no judge '{judge}'")
            info = described[judge]
            (verdict,) = await client.judge_batch([item_for(info["kind"], state, target)], judge)
        if verdict.error or verdict.verdict is None:
            raise JudgeVerdictError(f"judge '{judge}' gave no verdict: {verdict.error}")
        value = score_of(info["kind"], info["labels"], verdict)
        metadata = {
            "verdict": verdict.verdict,
            "probs": verdict.probs,
            "judge": verdict.judge.name,
            "fingerprint": verdict.judge.fingerprint,
            "engine": verdict.judge.engine,
            "score": value,
        }
        explanation = f"judgeloop {verdict.judge.name} ({verdict.judge.fingerprint[:12]}): {verdict.verdict}"
        if threshold is not None:
            return Score(
                value=CORRECT if value >= threshold else INCORRECT,
                answer=verdict.verdict,
                explanation=explanation,
                metadata=metadata,
            )
        return Score(value=value, answer=verdict.verdict, explanation=explanation, metadata=metadata)

    return score


__all__ = ["judgeloop_scorer", "JudgeVerdictError", "accuracy"]
