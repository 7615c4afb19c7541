"""The judge fingerprint: sha256 over the spec, the base model's weights and the adapter's weights.

Stamped on every verdict, card, report and registry entry; promotion is keyed by it. Hashing
weights is slow for big models, so a file's hash is cached by (path, size, mtime).

Which files are a model's weights (``weight_files``): every file with a weight suffix
(``WEIGHT_SUFFIXES``, the formats transformers, PEFT and vLLM load, plus ``OTHER_WEIGHT_SUFFIXES``,
other formats that hold tensors or pickles: hashed too, never silently ignored) and every file a shard
index (``*.index.json``) names, whatever its suffix. Tokenizer, config and documentation files are
not weights. A hub id (``Qwen/Qwen2.5-7B-Instruct``) is fingerprinted by the files of its snapshot in
the local Hugging Face cache (the revision that is served); only a hub id not downloaded yet stands
for itself (``id:NAME``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from data.paths import cache_dir
from data.provenance import sha256_chunks, sha256_file, sha256_json
from data.spec import JudgeSpec, spec_hash

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
# formats that carry tensors (or pickles) but that judgeloop does not write: a model directory holding one
# is fingerprinted over it too, so a file a loader might pick up cannot change without changing the fingerprint
OTHER_WEIGHT_SUFFIXES = (".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".pkl", ".pickle", ".npz", ".npy", ".ot")
INDEX_SUFFIX = ".index.json"  # model.safetensors.index.json: {"weight_map": {tensor: shard file}}


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


def weight_files(directory: Path) -> list[Path]:
    """A model directory's weight files (see the module docstring), sorted by name."""
    files = {f for f in directory.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES + OTHER_WEIGHT_SUFFIXES}
    for index in directory.glob("*" + INDEX_SUFFIX):
        try:
            shards = set((json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}).values())
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
            continue  # not an index a loader could follow either
        files |= {
            directory / name for name in map(str, shards) if Path(name).name == name and (directory / name).is_file()
        }
    return sorted(files, key=lambda f: f.name)


def hub_snapshot(model_id: str) -> Path | None:
    """The local Hugging Face cache's snapshot of a hub id (its ``main`` revision), or None when it is not
    downloaded (or ``model_id`` is no hub id). Never touches the network."""
    from huggingface_hub import snapshot_download  # deferred: only hub ids need it

    try:
        path = snapshot_download(model_id, local_files_only=True, cache_dir=os.environ.get("HF_HUB_CACHE") or None)
    except Exception:  # not a repo id, not downloaded, no cache: the id stands for itself
        return None
    return Path(path) if isinstance(path, str) and Path(path).is_dir() else None


def weights_identity(model: str | Path) -> str:
    """sha256 over a model directory's weight files (names and contents); a hub id is its cached snapshot's
    files, or the id itself when it is not downloaded yet."""
    p = Path(model)
    if not p.is_dir():
        snapshot = hub_snapshot(str(model)) if "/" in str(model) and not p.is_absolute() else None
        if snapshot is None:
            return "id:" + str(model)
        p = snapshot
    files = weight_files(p)
    if not files:
        return "id:" + str(model)
    return sha256_chunks(f.name.encode() + b"\x00" + _cached_sha256(f).encode() + b"\x00" for f in files)


def weights_hashes(directory: str | Path) -> dict[str, str]:
    """{file name: sha256} of a directory's weight files (what ``judgeloop merge`` records as
    ``weights_sha256``), hashed through the same cache as the fingerprint."""
    return {f.name: _cached_sha256(f) for f in weight_files(Path(directory))}


def fingerprint(spec: JudgeSpec, base_model: str | Path, adapter: str | Path | None = None) -> str:
    parts = {
        "spec": spec_hash(spec),
        "base": weights_identity(base_model),
        "adapter": weights_identity(adapter) if adapter else None,
    }
    return sha256_json(parts, ensure_ascii=True)
