from pathlib import Path

import pytest

from tests.serve.helpers import servable_tiny_model, spec_file


@pytest.fixture(scope="session")
def serve_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return servable_tiny_model(tiny_model_dir, tmp_path_factory.mktemp("tiny-servable"))


@pytest.fixture(scope="session")
def tiny_specs(serve_model_dir, tmp_path_factory) -> dict[str, Path]:
    """Judge specs on the tiny model: one per kind."""
    d = tmp_path_factory.mktemp("specs")
    return {"pairwise": spec_file(d, serve_model_dir, "tiny-helpfulness"),
            "binary": spec_file(d, serve_model_dir, "tiny-correctness", like="answer-correctness"),
            "pointwise": spec_file(d, serve_model_dir, "tiny-coherence", like="summary-coherence")}
