"""The files that make a run directory a judge: ``judge.json`` and the judge card (JSON + Markdown).

The card says what the judge is and how it was made: base model, data names with hashes and
counts, the resolved config, library versions, git commit, the dev curve and the fingerprint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from data.config import to_dict
from data.paths import JUDGE_FILE
from data.provenance import library_versions
from data.spec import JudgeSpec
from judge.fingerprint import weights_identity
from judge.precision import hardware, resolve_bf16, resolve_dtype


def dev_curve(log_history: Sequence[dict]) -> list[dict]:
    keys = ("agreement", "swap_consistency", "label_nll", "n")
    return [
        {"step": h["step"], **{k: h[f"eval_{k}"] for k in keys if f"eval_{k}" in h}}
        for h in log_history
        if "eval_agreement" in h
    ]


def loss_curve(log_history: Sequence[dict]) -> list[dict]:
    return [
        {
            "step": h["step"],
            "loss": h["loss"],
            **({"score_length_corr": h["score_length_corr"]} if "score_length_corr" in h else {}),
        }
        for h in log_history
        if "loss" in h
    ]


def length_following(log_history: Sequence[dict]) -> float | None:
    """Mean ``score_length_corr`` over the last quarter of the logged steps (separate mode): how much the judge's
    scores of an instruction's responses follow their lengths at the end of training; None when not logged."""
    values = [h["score_length_corr"] for h in log_history if "score_length_corr" in h]
    tail = values[len(values) - max(1, len(values) // 4) :]
    return round(sum(tail) / len(tail), 4) if tail else None


def _source_rows(sources) -> list[dict]:
    return [
        {
            "name": s.name,
            "split": s.split,
            "path": str(s.path),
            "sha256": s.sha256,
            "items": len(s.items),
            **({"manifest_sha256": s.manifest_sha256} if s.manifest_sha256 else {}),
        }
        for s in sources
    ]


def synthetic_pairs(reports, weight: float) -> dict | None:
    """How many synthetic pairs of each kind the training split got (``train.negatives``), and their weight; None
    when the run made none."""
    totals: dict[str, int] = {}
    for r in reports:
        for kind, n in r.synthetic.items():
            totals[kind] = totals.get(kind, 0) + n
    return {"pairs": totals, "weight": weight, "splits": ["train"]} if totals else None


def write_run_files(
    run_dir: Path,
    *,
    cfg,
    spec: JudgeSpec,
    base_ref: str,
    base_path: str,
    fingerprint_: str,
    train_sources,
    dev_sources,
    reports,
    n_examples: int,
    n_dev: int,
    log_history: Sequence[dict],
    kept: dict | None,
    steps: int,
    tokens_per_s: float | None,
    world_size: int,
    wall_s: float,
    commit: str | None,
    peak_gpu_gib: float | None = None,
) -> None:
    """judge.json, card.json and card.md. ``commit``: ``git_commit()`` when training started (the code that
    trained, whatever HEAD is when it ends)."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    judge = {
        "name": spec.name,
        "version": fingerprint_[:12],
        "spec": spec.to_dict(),
        "base_model": base_ref,
        "adapter": "adapter",
        "fingerprint": fingerprint_,
        "created": created,
        "card": "card.json",
    }
    (run_dir / JUDGE_FILE).write_text(json.dumps(judge, indent=2) + "\n")
    card = {
        "judge": {
            "name": spec.name,
            "version": judge["version"],
            "fingerprint": fingerprint_,
            "kind": spec.kind,
            "labels": spec.labels,
        },
        "base_model": {"ref": base_ref, "path": base_path, "weights": weights_identity(base_path)},
        "adapter": {"path": "adapter", "weights": weights_identity(run_dir / "adapter")},
        "data": {
            "train": _source_rows(train_sources),
            "dev": _source_rows(dev_sources),
            "training_examples": n_examples,
            "dev_items_scored": n_dev,
            "report": [asdict(r) for r in reports],
            "synthetic": synthetic_pairs(reports, cfg.data.negative_weight),
        },
        "config": to_dict(cfg),
        "training": {
            "steps": steps,
            "processes": world_size,
            "tokens_per_s": tokens_per_s,
            "wall_s": round(wall_s, 1),
            "peak_gpu_gib": peak_gpu_gib,
            "precision": {
                "bf16": resolve_bf16(cfg.bf16),
                "dev_dtype": resolve_dtype(cfg.eval.dtype),
                "hardware": hardware(),
            },
            "kept_checkpoint": kept,
            "score_length_corr": length_following(log_history),
        },
        "dev_curve": dev_curve(log_history),
        "loss_curve": loss_curve(log_history),
        "versions": library_versions(),
        "git_commit": commit,
        "created": created,
    }
    (run_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (run_dir / "card.md").write_text(card_markdown(card))


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def card_markdown(card: dict) -> str:
    j, t = card["judge"], card["training"]
    lines = [
        f"# Judge card: {j['name']} ({j['version']})",
        "",
        f"- fingerprint: `{j['fingerprint']}`",
        f"- kind: {j['kind']}, labels: {', '.join(j['labels'])}",
        f"- base model: `{card['base_model']['ref']}` (weights `{card['base_model']['weights'][:16]}`)",
        f"- adapter: `{card['adapter']['path']}/` (weights `{card['adapter']['weights'][:16]}`)",
        f"- trained: {t['steps']} steps on {t['processes']} process(es) in {t['wall_s']} s"
        + (f", {t['tokens_per_s']:.0f} tokens/s" if t["tokens_per_s"] else "")
        + (f", peak GPU memory {t['peak_gpu_gib']:.1f} GiB (rank 0)" if t.get("peak_gpu_gib") else ""),
        f"- kept checkpoint: step {t['kept_checkpoint']['step']} (the {t['kept_checkpoint']['rule']}), dev agreement "
        f"{_fmt(t['kept_checkpoint']['agreement'])}"
        if t["kept_checkpoint"]
        else "- kept checkpoint: the last",
        *(
            [
                f"- scores follow response length: r = {t['score_length_corr']:.2f} within an instruction "
                "over the last quarter of training (0 = length-blind; `score_length_corr` in the loss curve)"
            ]
            if t.get("score_length_corr") is not None
            else []
        ),
        f"- git commit: `{card['git_commit']}`, created {card['created']}",
        "",
        "## Data",
        "",
        "| split | source | items | sha256 |",
        "|---|---|---|---|",
    ]
    for row in card["data"]["train"] + card["data"]["dev"]:
        lines.append(f"| {row['split']} | {row['name']} | {row['items']} | `{row['sha256'][:16]}` |")
    lines += [
        "",
        f"{card['data']['training_examples']} training examples; {card['data']['dev_items_scored']} dev "
        "items scored at each evaluation.",
        "",
    ]
    mixed = [r for r in card["data"]["report"] if r.get("mixed") is not None]
    if mixed:
        shares = card["config"]["data"]["mix"]
        parts = [f"{r['source']} {r['examples']} -> {r['mixed']} ({shares[r['source']]:.0%})" for r in mixed]
        lines += [
            f"Source shares (data.mix), examples before -> after: {'; '.join(parts)}; the other sources as they come.",
            "",
        ]
    synthetic = card["data"].get("synthetic")
    if synthetic:
        kinds = ", ".join(f"{n} {kind.replace('_', '-')}" for kind, n in synthetic["pairs"].items())
        lines += [
            f"Synthetic pairs ({kinds}) were added to the training split only, each weighing "
            f"{synthetic['weight']} against 1 for a human pair; no dev or test item and no agreement figure "
            "includes them.",
            "",
        ]
    if card["dev_curve"]:
        lines += [
            "## Dev curve (scored as the eval harness does, both orders)",
            "",
            "| step | agreement | swap consistency | label NLL |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {p['step']} | {_fmt(p.get('agreement'))} | {_fmt(p.get('swap_consistency'))} | "
            f"{_fmt(p.get('label_nll'))} |"
            for p in card["dev_curve"]
        ]
        lines.append("")
    lines += [
        "## Config",
        "",
        "```json",
        json.dumps(card["config"], indent=2),
        "```",
        "",
        "## Versions",
        "",
        *(f"- {k} {v}" for k, v in card["versions"].items()),
        "",
    ]
    return "\n".join(lines)
