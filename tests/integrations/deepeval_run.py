"""Run by tests/integrations/test_deepeval.py in DeepEval's own environment (.venv-deepeval): a two-case
evaluation through DeepEval's `evaluate()` with the judgeloop metric; prints each case's result as JSON.

    python deepeval_run.py URL KEY JUDGE THRESHOLD CASES_JSON
"""

import json
import sys

from deepeval import evaluate
from deepeval.evaluate.configs import AsyncConfig, DisplayConfig, ErrorConfig
from deepeval.test_case import LLMTestCase

from integrations.deepeval_metric import JudgeloopMetric

url, key, judge, threshold, cases = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
test_cases = [LLMTestCase(**c) for c in json.loads(cases)]
metric = JudgeloopMetric(url, judge=judge, api_key=key, threshold=threshold)
result = evaluate(
    test_cases=test_cases,
    metrics=[metric],
    async_config=AsyncConfig(run_async=False),
    display_config=DisplayConfig(show_indicator=False, print_results=False),
    error_config=ErrorConfig(ignore_errors=True),
)
out = []
for tr in result.test_results:
    (m,) = tr.metrics_data
    out.append({"input": tr.input, "score": m.score, "success": m.success, "reason": m.reason, "error": m.error})
print("RESULTS " + json.dumps(out))
