"""The live judge on the in-process engine: production tiny-helpfulness and a LoRA candidate of the same spec."""

import contextlib

import pytest

from data.config import load_config
from serve.api import create_app
from serve.config import LiveConfig, load_serve_config
from serve.live import start_live
from serve.service import start_judges
from tests.serve.helpers import APIServer, lora_judge

KEY = "live-key-0123456789abcdef"
CANDIDATE = "tiny-helpfulness@2"


@pytest.fixture(scope="session")
def live_serving(tiny_specs, serve_model_dir, tmp_path_factory):
    candidate = lora_judge(serve_model_dir, tiny_specs["pairwise"], tmp_path_factory.mktemp("candidate"), seed=3)
    cfg = load_serve_config(None, ["--engine=transformers"])
    with start_judges(cfg, judges=[str(tiny_specs["pairwise"])], candidates=[str(candidate)]) as serving:
        yield serving


@contextlib.contextmanager
def live_api(serving, db_path, *overrides: str):
    """The judge API with the verdict log (and shadows) on a real uvicorn server; yields (server, live)."""
    cfg = load_config(LiveConfig, None, [f"--log_url=sqlite:///{db_path}", *overrides])
    live = start_live(cfg, serving.services)
    app = create_app(serving.services, api_key=KEY, verdict_logger=live.logger)
    live.register_metrics(app.state.metrics.registry)
    try:
        with APIServer(app) as server:
            yield server, live
    finally:
        live.close()
