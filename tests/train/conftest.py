import os

import pytest

# see train/cli.py: effective only when torch is not imported yet (e.g. `pytest tests/train`)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def learnable_model_dir(tmp_path_factory):
    """The tiny Llama with 10x larger (tied) embeddings: its logits can move far enough for a test to see a
    trained distribution (with the 0.02-std init the label logits can differ by ~2.5 at most)."""
    import torch

    from tests.tiny_model import tiny_llama, tiny_tokenizer

    path = tmp_path_factory.mktemp("learnable-llama")
    tok = tiny_tokenizer()
    model = tiny_llama(tok)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(10)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
