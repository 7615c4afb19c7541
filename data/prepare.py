"""Prepare a registered dataset: canonical JSONL with grouped, deterministic train/dev/test splits and a manifest.

Splits follow the cross-source split table (``data.grouping``): an instruction has the same split in every
registered dataset it appears in, and a prepared item's ``group`` is its canonical group (its source's own is
kept in ``meta.source_group`` where they differ), so anything grouping by ``group`` later (folds, group
bootstrap) groups across sources too. Items of a reserved dataset, and items sharing an instruction with one,
are written to ``reserved.jsonl``: never train, dev or test.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from data.dataset_registry import get_dataset, load_items, resolve_file, split_groups
from data.grouping import NORMALISATION, SPLIT_GROUPS_FILE
from data.jsonl import write_jsonl
from data.provenance import git_commit, library_versions, sha256_file
from data.splits import RESERVED, SPLITS, assign


def prepare(name: str, out: Path, seed: int = 0, fractions=(0.8, 0.1, 0.1), progress=print) -> dict:
    """Convert a registered dataset and write grouped, deterministic splits plus a manifest."""
    ds = get_dataset(name)
    table = split_groups()
    out.mkdir(parents=True, exist_ok=True)
    names = (*SPLITS, RESERVED)
    buckets: dict[str, list] = {s: [] for s in names}
    groups: dict[str, set] = {s: set() for s in names}
    for split, item in assign(load_items(name), fractions, seed, table):
        if ds.reserved:
            split = RESERVED
        canonical = table.canonical(item.group)
        if canonical != item.group:
            item = item.model_copy(update={"group": canonical, "meta": {**item.meta, "source_group": item.group}})
        buckets[split].append(item)
        groups[split].add(item.group)
    leaked = {g for a in names for b in names if a < b for g in groups[a] & groups[b]}
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
        "split_groups": {"normalisation": NORMALISATION, "sha256": sha256_file(SPLIT_GROUPS_FILE)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git_commit(),
        "versions": library_versions(),
        "splits": {},
    }
    reserved_path = out / f"{RESERVED}.jsonl"
    if not buckets[RESERVED]:
        reserved_path.unlink(missing_ok=True)  # a stale one from an older table must not linger
    for split in names:
        if split == RESERVED and not buckets[split]:
            continue
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
