"""Prepare a registered dataset: canonical JSONL with grouped, deterministic train/dev/test splits and a manifest."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from data.dataset_registry import get_dataset, load_items, resolve_file
from data.jsonl import write_jsonl
from data.provenance import git_commit, library_versions, sha256_file
from data.splits import SPLITS, assign


def prepare(name: str, out: Path, seed: int = 0, fractions=(0.8, 0.1, 0.1), progress=print) -> dict:
    """Convert a registered dataset and write grouped, deterministic splits plus a manifest."""
    ds = get_dataset(name)
    out.mkdir(parents=True, exist_ok=True)
    buckets: dict[str, list] = {s: [] for s in SPLITS}
    groups: dict[str, set] = {s: set() for s in SPLITS}
    for split, item in assign(load_items(name), fractions, seed):
        buckets[split].append(item)
        groups[split].add(item.group)
    leaked = (groups["train"] & groups["test"]) | (groups["train"] & groups["dev"]) | (groups["dev"] & groups["test"])
    assert not leaked, f"split leaked groups: {sorted(leaked)[:3]}"
    manifest = {
        "dataset": ds.name,
        "kind": ds.kind,
        "criterion": ds.criterion,
        "source": ds.source,
        "license": ds.license,
        "source_files": {
            key: {"path": f.path, "sha256": sha256_file(resolve_file(ds, key))} for key, f in ds.files.items()
        },
        "seed": seed,
        "fractions": list(fractions),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git_commit(),
        "versions": library_versions(),
        "splits": {},
    }
    for split in SPLITS:
        path = out / f"{split}.jsonl"
        write_jsonl(path, buckets[split])
        labels = Counter(json.dumps(i.label) for i in buckets[split])
        manifest["splits"][split] = {
            "file": path.name,
            "items": len(buckets[split]),
            "groups": len(groups[split]),
            "sha256": sha256_file(path),
            "labels": dict(sorted(labels.items())),
        }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
