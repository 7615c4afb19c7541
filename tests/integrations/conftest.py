"""A judge API on loopback for the frameworks' tests: the in-process engine (starts in seconds) on the tiny
random-weight model, one judge per kind, plus one whose rubric alone overflows the model's context (the one
way an item gets no verdict), behind an API key."""

from __future__ import annotations

import pytest
import yaml

from serve.api import create_app
from serve.config import load_serve_config
from serve.service import start_judges
from tests.serve.helpers import APIServer, spec_file

API_KEY = "integrations-key-0123456789abcdef"


@pytest.fixture(scope="session")
def judge_api(tiny_specs, tmp_path_factory):
    base = yaml.safe_load(tiny_specs["pairwise"].read_text())["base_model"]
    verbose = spec_file(tmp_path_factory.mktemp("verbose"), base, "tiny-verbose", criteria="Be thorough. " * 800)
    judges = [str(tiny_specs[k]) for k in ("pairwise", "binary", "pointwise")] + [str(verbose)]
    cfg = load_serve_config(None, ["--engine=transformers", "--vllm.dtype=float32"])
    with start_judges(cfg, judges=judges, candidates=[]) as serving:
        app = create_app(serving.services, api_key=API_KEY, max_body_bytes=200_000, max_batch_items=64)
        with APIServer(app) as server:
            server.key = API_KEY
            yield server


def api_items(judge: str, cases: list[dict], instruction: str, output: str, reference: str) -> list[dict]:
    """The judge API items a framework's cases should become (pairwise: the output against the reference)."""
    if judge == "tiny-helpfulness":
        return [{"instruction": c[instruction], "response_a": c[output], "response_b": c[reference]} for c in cases]
    return [{"instruction": c[instruction], "response": c[output], "reference": c[reference]} for c in cases]
