"""The judge fingerprint: sha256 over the spec, the base model's weights and the adapter's weights.

Stamped on every verdict, card, report and registry entry; promotion is keyed by it. Hashing
weights is slow for big models, so a file's hash is cached by (path, size, mtime).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from data.paths import cache_dir
from data.provenance import sha256_chunks, sha256_file, sha256_json
from data.spec import JudgeSpec, spec_hash

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def _cached_sha256(path: Path) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    store = cache_dir() / "file-hashes.json"
    try:
        known = json.loads(store.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        known = {}
    if key not in known:
        known[key] = sha256_file(path)
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_name(f"{store.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, store)
    return known[key]


def weights_identity(model: str | Path) -> str:
    """sha256 over a model directory's weight files (names and contents); a hub id stands for itself."""
    p = Path(model)
    if not p.is_dir():
        return "id:" + str(model)
    files = sorted(f for f in p.iterdir() if f.suffix in WEIGHT_SUFFIXES)
    if not files:
        return "id:" + str(model)
    return sha256_chunks(f.name.encode() + b"\x00" + _cached_sha256(f).encode() + b"\x00" for f in files)


def fingerprint(spec: JudgeSpec, base_model: str | Path, adapter: str | Path | None = None) -> str:
    parts = {
        "spec": spec_hash(spec),
        "base": weights_identity(base_model),
        "adapter": weights_identity(adapter) if adapter else None,
    }
    return sha256_json(parts, ensure_ascii=True)
