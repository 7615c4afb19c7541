"""Merge a run's LoRA adapter into its base model: a plain checkpoint vLLM serves without LoRA.

On CPU, vLLM serves a LoRA adapter ~10x slower than a merged model (PLATFORM.md), so the judge
that takes production traffic is merged. The merged judge keeps the adapter judge's fingerprint:
it is the same judge, and the served production judge must carry the validated fingerprint.
``weights_sha256`` records the merged files (``judge.fingerprint.weight_files``: the same files a
fingerprint covers), ``merged_from`` the run it came from; loading the merged judge checks its files
against ``weights_sha256`` (``judge.loading.verify_weights``), so swapped weights do not keep the
validated fingerprint.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from data.errors import ModelError
from data.paths import JUDGE_FILE
from data.provenance import sha256_file
from judge.fingerprint import weight_files
from judge.loading import load_judge


def merge(run_dir: str | Path, out: str | Path | None = None, progress=print) -> Path:
    """Write ``out`` (default RUN_DIR/merged): merged weights (safetensors), tokenizer, judge.json."""
    import torch  # deferred: torch takes seconds to import; only this path needs it
    from peft import PeftModel  # deferred: PEFT takes seconds to import; only this path needs it
    from transformers import (  # deferred: transformers takes seconds to import; only this path needs it
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    run_dir = Path(run_dir)
    judge = load_judge(run_dir)
    if judge.adapter_path is None:
        raise ModelError("this judge has no adapter to merge (it is already a plain model)", path=str(run_dir))
    out = Path(out) if out else run_dir / "merged"
    if out.exists() and any(out.iterdir()):
        raise ModelError("the output directory is not empty", path=str(out), hint="pass --out NEW_DIR or delete it")
    # the base's own precision: a bf16 base stays bf16 (what vLLM would load), fp32 stays fp32
    dtype = getattr(AutoConfig.from_pretrained(judge.model_path), "dtype", None) or torch.float32
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    progress(f"merging {judge.adapter_path} into {judge.model_path} ({dtype}) ...")
    base = AutoModelForCausalLM.from_pretrained(judge.model_path, dtype=dtype)
    merged = PeftModel.from_pretrained(base, judge.adapter_path).merge_and_unload()
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(staging, safe_serialization=True)
    AutoTokenizer.from_pretrained(judge.adapter_path).save_pretrained(staging)
    meta = json.loads((run_dir / JUDGE_FILE).read_text())
    weights = {f.name: sha256_file(f) for f in weight_files(staging)}
    meta.update(
        {
            "base_model": ".",
            "adapter": None,
            "fingerprint": judge.fingerprint,
            "merged_from": str(run_dir.resolve()),
            "weights_sha256": weights,
            "merged": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    meta.pop("card", None)
    (staging / JUDGE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    if out.exists():
        out.rmdir()
    staging.rename(out)
    progress(
        f"merged judge '{judge.name}' (fingerprint {judge.fingerprint[:16]}) -> {out}\n"
        f"  a plain checkpoint: vLLM serves it without --enable-lora"
    )
    return out
