"""The judge as an Inspect AI scorer: a two-sample evaluation through Inspect's own `eval()`, a mock model
(no network) writing the outputs, scored by the judge API on loopback; the scores are the API's verdicts."""

from __future__ import annotations

import pytest
from inspect_ai import Task, eval
from inspect_ai.dataset import Sample
from inspect_ai.model import ModelOutput, ModelUsage, get_model
from inspect_ai.solver import generate

from integrations.inspect_scorer import judgeloop_scorer
from serve.client import JudgeClient

pytestmark = pytest.mark.integration

SAMPLES = [
    Sample(input="What is 2+2?", target="4", id="s1"),
    Sample(input="Capital of France?", target="Paris", id="s2"),
]
OUTPUTS = ["4", "It is Lyon, a city famous for its food and its long history."]


def output(text: str) -> ModelOutput:
    """The mock model's answer, with its usage given (else mockllm counts tokens with tiktoken, a download)."""
    out = ModelOutput.from_content("mockllm/model", text)
    out.usage = ModelUsage(input_tokens=8, output_tokens=8, total_tokens=16)
    return out


def run(judge_api, tmp_path, judge: str, threshold=None):
    model = get_model("mockllm/model", custom_outputs=[output(o) for o in OUTPUTS], memoize=False)
    task = Task(
        dataset=SAMPLES,
        solver=generate(),
        scorer=judgeloop_scorer(judge_api.url, judge=judge, api_key=judge_api.key, threshold=threshold),
    )
    (log,) = eval(task, model=model, log_dir=str(tmp_path / "logs"), display="none", max_samples=1, fail_on_error=False)
    return log


def direct(judge_api, items, judge):
    with JudgeClient(judge_api.url, api_key=judge_api.key) as client:
        return client.judge_batch(items, judge)


@pytest.mark.parametrize("judge", ["tiny-correctness", "tiny-coherence", "tiny-helpfulness"])
def test_scores_are_the_judge_apis_verdicts(judge_api, tmp_path, judge):
    log = run(judge_api, tmp_path, judge)
    assert log.status == "success", log.error
    by_id = {s.id: s for s in log.samples}
    if judge == "tiny-helpfulness":
        items = [{"instruction": s.input, "response_a": o, "response_b": s.target} for s, o in zip(SAMPLES, OUTPUTS)]
    else:
        items = [{"instruction": s.input, "response": o, "reference": s.target} for s, o in zip(SAMPLES, OUTPUTS)]
    expected = direct(judge_api, items, judge)
    for sample, verdict in zip(SAMPLES, expected):
        (score,) = by_id[sample.id].scores.values()
        assert score.answer == verdict.verdict and score.metadata["probs"] == pytest.approx(verdict.probs)
        assert score.metadata["fingerprint"] == verdict.judge.fingerprint and score.metadata["judge"] == judge
        assert score.metadata["engine"] == "transformers/float32"
        if judge == "tiny-correctness":
            assert score.value == pytest.approx(verdict.probs["yes"])
        elif judge == "tiny-coherence":
            assert score.value == pytest.approx(verdict.score)
        else:
            assert score.value == {"A": 1.0, "tie": 0.5, "B": 0.0}[verdict.verdict]
    assert log.results.scores[0].metrics["mean"].value == pytest.approx(
        sum(next(iter(s.scores.values())).value for s in log.samples) / 2
    )


def test_a_threshold_gives_inspect_pass_fail(judge_api, tmp_path):
    log = run(judge_api, tmp_path, "tiny-correctness", threshold=0.0)
    assert {next(iter(s.scores.values())).value for s in log.samples} == {"C"}  # every P(yes) >= 0
    log = run(judge_api, tmp_path, "tiny-correctness", threshold=1.01)
    assert {next(iter(s.scores.values())).value for s in log.samples} == {"I"}


def test_an_item_the_judge_cannot_render_is_a_sample_error_not_a_crash(judge_api, tmp_path):
    log = run(judge_api, tmp_path, "tiny-verbose")
    assert log.status == "error" or all(s.error for s in log.samples)
    errors = [s.error.message for s in log.samples if s.error] or [log.error.message]
    assert all("render:" in e and "fixed parts alone" in e for e in errors), errors
