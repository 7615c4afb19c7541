"""`judgeloop evaluate --label-sample N`: a seeded random sample of the evaluated items for people to label,
exported through the review export (workflows/review.py: Label Studio tasks, a CSV, review-manifest.json).

The sample is stratified by criterion and by system (pointwise and binary judges) or pair of systems
(pairwise judges): N is shared out evenly over these strata (the remainder to strata drawn by the seed; a
stratum with fewer items gives its share to the others), and within each stratum the items are a uniform
random draw (``data.splits.seeded_sample``) of those the judge gave a verdict. Every corrected figure is
estimated per system or per pair, so each one's labelled items are a uniform random subset of its items,
which is what PPI++ needs. The same run, N and seed draw the same sample.

Each criterion goes to ``OUT/label-sample/<criterion>/``. A task's ``review_id`` is the evaluated item's id,
so what people label comes back unchanged: ``judgeloop review import`` turns the export into labelled
items that ``judgeloop evaluate --labels`` takes, and ``--labels`` takes the Label Studio export or the
filled CSV directly too (the manifest beside it names the criterion).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

from data.errors import DataError
from data.splits import seeded_sample
from workflows import review
from workflows.evaluate.run import SEP, CriterionData

DIR = "label-sample"
REASON = "uniform random within its stratum (criterion and system or pair)"


def stratum_of(item) -> str:
    if item.kind == "pairwise":
        x, y = sorted((item.meta["system_a"], item.meta["system_b"]))
        return f"{x} vs {y}"
    return item.meta["system"]


def _seed(seed: int, *parts: str) -> int:
    return int(hashlib.sha256(SEP.join([str(seed), *parts]).encode()).hexdigest()[:15], 16)


def allocate(sizes: list[int], n: int, seed: int) -> list[int]:
    """N shared out evenly over strata of these sizes (the remainder to strata drawn by the seed); a stratum
    that has fewer items gives its share to the others."""
    take = [0] * len(sizes)
    order = list(range(len(sizes)))
    random.Random(seed).shuffle(order)
    left = min(n, sum(sizes))
    while left > 0:
        open_ = [i for i in order if take[i] < sizes[i]]
        each = max(1, left // len(open_))
        for i in open_:
            k = min(each, sizes[i] - take[i], left)
            take[i] += k
            left -= k
            if left == 0:
                break
    return take


def draw(datas: list[CriterionData], n: int, seed: int) -> dict[str, dict[str, list]]:
    """criterion -> stratum -> the sampled items (those the judge gave a verdict), in the run's item order."""
    pools: list[tuple[str, str, list]] = []
    for data in datas:
        by: dict[str, list] = {}
        for it in data.items:
            v = data.verdicts.get(it.id)
            if v is not None and not v.error and v.verdict is not None:
                by.setdefault(stratum_of(it), []).append(it)
        pools += [(data.criterion, s, its) for s, its in by.items()]
    take = allocate([len(p[2]) for p in pools], n, seed)
    out: dict[str, dict[str, list]] = {d.criterion: {} for d in datas}
    for (crit, stratum, its), k in zip(pools, take):
        out[crit][stratum] = seeded_sample(its, k, _seed(seed, crit, stratum)) if k else []
    return out


def sample_dir(out: str | Path, criterion: str) -> Path:
    return Path(out) / DIR / criterion


def check_earlier(out: str | Path, criteria: list[str], n: int, seed: int) -> None:
    """Before anything is scored: an earlier label sample in OUT drawn with another N or seed is refused (its
    CSV may hold people's labels); one drawn alike is kept."""
    for crit in criteria:
        m = sample_dir(out, crit) / review.MANIFEST
        if m.exists():
            ev = json.loads(m.read_text(encoding="utf-8")).get("evaluate") or {}
            if (ev.get("n"), ev.get("seed")) != (n, seed):
                raise DataError(
                    f"an earlier label sample (N={ev.get('n')}, seed {ev.get('seed')}) is here; not overwriting it",
                    path=str(m),
                    field="--label-sample",
                    hint="use another --out, or move the earlier sample away after importing its labels",
                )


def export_label_sample(
    datas: list[CriterionData], out: str | Path, n: int, seed: int, responses_sha256: str
) -> list[str]:
    """Draw the sample and export it (one review export per criterion); returns lines to print."""
    drawn = draw(datas, n, seed)
    export_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    lines = []
    for data in datas:
        crit = data.criterion
        strata = drawn[crit]
        d = sample_dir(out, crit)
        ids = sorted(it.id for its in strata.values() for it in its)
        m = d / review.MANIFEST
        if m.exists():  # the same N and seed (check_earlier): the same draw unless the run changed
            earlier = json.loads(m.read_text(encoding="utf-8"))
            if sorted(earlier["items"]) != ids:
                raise DataError(
                    "an earlier label sample of another set of items is here (the responses changed?); "
                    "not overwriting it",
                    path=str(m),
                    field="--label-sample",
                    hint="use another --out, or move the earlier sample away after importing its labels",
                )
            lines.append(f"{crit}: label sample of {len(ids)} item(s) already in {d} (kept)")
            continue
        spec = data.judge.spec
        sizes: dict[str, int] = {}
        for it in data.items:
            v = data.verdicts.get(it.id)
            if v is not None and not v.error and v.verdict is not None:
                sizes[stratum_of(it)] = sizes.get(stratum_of(it), 0) + 1
        entries = {}
        for stratum, its in strata.items():
            for it in its:
                v = data.verdicts[it.id]
                item = it.model_dump(mode="json", exclude_none=True)
                item["meta"] = {**item.get("meta", {}), "criterion": crit}
                entries[it.id] = {
                    "stratum": stratum,
                    "reason": REASON,
                    "verdict": v.verdict,
                    "confidence": v.confidence,
                    "consistent": v.consistent,
                    "fingerprint": data.judge.ref.fingerprint,
                    "item_hash": hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest(),
                    "item": item,
                }
        manifest = {
            "schema_version": 1,
            "export": export_id,
            "judge": data.judge.name,
            "spec": spec.name,
            "kind": spec.kind,
            "labels": list(spec.labels),
            "population": sum(sizes.values()),
            "strata": sizes,
            "seed": seed,
            "estimator": "PPI++ per system or pair (judgeloop evaluate --labels)",
            "evaluate": {"criterion": crit, "n": n, "seed": seed, "responses_sha256": responses_sha256},
            "items": entries,
        }
        paths = review.export_paths(d)
        review.write_export(paths, spec, manifest)
        per = ", ".join(f"{s} {len(its)}" for s, its in strata.items())
        lines.append(f"{crit}: {len(entries)} item(s) to label ({per}) in {d}")
        lines.append(
            f"  Label Studio: import {paths['tasks']} with {paths['config']}; or fill the 'label' column of "
            f"{paths['csv']}; then rerun with --labels EXPORT.json (or the CSV), or `judgeloop review import "
            f"EXPORT.json --spec {spec.name} --manifest {paths['manifest']} --out labels.jsonl` and "
            "--labels labels.jsonl"
        )
    return lines
