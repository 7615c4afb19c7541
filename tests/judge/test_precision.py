"""`auto` precision: bf16 only where the hardware has bf16 math; explicit settings win."""

import pytest

from judge import precision


@pytest.mark.parametrize("fast", [True, False])
def test_auto_follows_the_hardware_and_explicit_settings_win(monkeypatch, fast):
    monkeypatch.setattr(precision, "bf16_is_fast", lambda: fast)
    assert precision.resolve_bf16("auto") is fast
    assert precision.resolve_dtype("auto") == ("bfloat16" if fast else "float32")
    assert precision.resolve_bf16(True) is True and precision.resolve_bf16(False) is False
    assert precision.resolve_dtype("float32") == "float32" and precision.resolve_dtype("bfloat16") == "bfloat16"


def test_this_machine_is_described():
    text = precision.hardware()
    assert text and (("bf16 math" in text) or not text.startswith("CPU"))
