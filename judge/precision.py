"""Which precision to compute in: bfloat16 where the hardware has bf16 math, float32 elsewhere.

bfloat16 is the standard on GPUs that support it and ~1.35x faster LoRA training on CPUs with
AVX512-BF16 or AMX; on a CPU without them (AVX2 only) torch emulates it and a matmul runs ~100x
slower than in float32 (docs/results.md, "bf16 on a CPU without bf16 instructions"). Configs say
``auto`` and this module decides, once per process, from what torch reports.
"""

from __future__ import annotations

import functools
from typing import Literal, Union

BF16Setting = Union[bool, Literal["auto"]]
DTypeSetting = Literal["auto", "float32", "bfloat16"]


@functools.cache
def bf16_is_fast() -> bool:
    """True on a CUDA GPU with bf16 support or a CPU with AVX512-BF16 or AMX instructions."""
    import torch  # deferred: torch takes seconds to import; only callers that compute need it

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_bf16(setting: BF16Setting) -> bool:
    """A ``bf16`` config value as a bool: ``auto`` is :func:`bf16_is_fast`."""
    return bf16_is_fast() if setting == "auto" else bool(setting)


def resolve_dtype(setting: DTypeSetting) -> Literal["float32", "bfloat16"]:
    """A ``dtype`` config value as a dtype name: ``auto`` is bfloat16 where it is fast, else float32."""
    if setting == "auto":
        return "bfloat16" if bf16_is_fast() else "float32"
    return setting


def hardware() -> str:
    """What decided: the GPU's name, or the CPU capability torch reports (``AVX2``, ``AVX512``, ...)."""
    import torch  # deferred: torch takes seconds to import; only callers that compute need it

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    capability = torch.backends.cpu.get_cpu_capability()
    return f"CPU {capability}" + (" with bf16 math" if bf16_is_fast() else " without bf16 math")
