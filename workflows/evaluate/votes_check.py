"""Ranking systems with a judge against the ranking by human votes: the real check of `judgeloop evaluate`
on `vicuna80-human` (nine systems answering the same questions, with crowd votes), run by `make demo`'s
last stage and by ``python -m benchmarks.evaluate_vicuna80``.

1. The nine systems ranked with the judge (all pairs, Bradley-Terry) and with all the human votes;
   Kendall's tau between the two with a paired bootstrap interval over questions.
2. Human labels on a seeded random ``fraction`` of each system pair's voted items (the votes of those items):
   - per system pair, whether the corrected (PPI++) win rate's interval covers the win rate from all votes,
     and how wide it is against the human-only interval from the same labels;
   - the ranking corrected with those labels (``estimators.ppi_bradley_terry``) and the ranking from those
     labels alone, each with Kendall's tau against the ranking by all votes.

Writes ``OUT/votes_check.json`` (and the evaluation run itself under OUT).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from data import dataset_registry
from workflows.evaluate import estimators as est
from workflows.evaluate.run import (
    JudgeHandle,
    RunOptions,
    build_items,
    evaluate_run,
    judge_value,
    load_responses,
    pair_id,
    pair_outcome,
    pairs_for,
)

DATASET = "vicuna80-human"
RESULT_FILE = "votes_check.json"


def responses_and_votes(
    out: Path, max_prompts: int | None = None, dataset: str = DATASET
) -> tuple[Path, dict[str, list[str]], dict]:
    """The responses file (one line per question and system) and the votes per item id, with the systems in
    the dataset's A/B order (the workflow may put them the other way round)."""
    items = list(dataset_registry.load_items(dataset))
    if max_prompts:
        keep = set(list(dict.fromkeys(it.meta["question"] for it in items))[:max_prompts])
        items = [it for it in items if it.meta["question"] in keep]
    rows: dict[tuple[str, str], dict] = {}
    votes: dict[str, list[str]] = {}
    orient: dict[str, tuple[str, str]] = {}
    for it in items:
        q, a, b = it.meta["question"], it.meta["system_a"], it.meta["system_b"]
        rows.setdefault((q, a), {"prompt_id": q, "system": a, "response": it.response_a, "instruction": it.instruction})
        rows.setdefault((q, b), {"prompt_id": q, "system": b, "response": it.response_b, "instruction": it.instruction})
        votes[pair_id(q, a, b)] = list(it.labels)
        orient[pair_id(q, a, b)] = (a, b)
    path = out / "responses.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
    return path, votes, orient


def swap_to(labels: list[str], dataset_ab: tuple[str, str], item_a: str) -> list[str]:
    """Votes in the terms of an item whose response A is ``item_a``."""
    if dataset_ab[0] == item_a:
        return labels
    return [{"A": "B", "B": "A"}.get(x, x) for x in labels]


def label_sample(
    items: list, votes: dict[str, list[str]], orient: dict, systems: list[str], fraction: float, seed: int
) -> tuple[list[dict], dict[tuple[str, str], list]]:
    """A seeded random ``fraction`` of each system pair's voted items, as `--labels` lines (their votes in
    the item's A/B terms), and per pair (x before y in ``systems``) its voted items."""
    sidx = {s: k for k, s in enumerate(systems)}
    by_pair: dict[tuple[str, str], list] = defaultdict(list)
    for it in items:
        if it.id in votes:
            by_pair[tuple(sorted((it.meta["system_a"], it.meta["system_b"]), key=sidx.get))].append(it)
    rng = np.random.default_rng(seed)
    lines = []
    for pair in sorted(by_pair, key=lambda p: (sidx[p[0]], sidx[p[1]])):
        its = by_pair[pair]
        n = max(2, int(round(fraction * len(its))))
        for k in sorted(rng.permutation(len(its))[:n]):
            it = its[k]
            lines.append({"id": it.id, "labels": swap_to(votes[it.id], orient[it.id], it.meta["system_a"])})
    return lines, by_pair


def check_against_votes(
    judge: JudgeHandle,
    out: str | Path,
    *,
    fraction: float = 0.2,
    seed: int = 0,
    n_boot: int = 1000,
    soft: bool = True,
    max_prompts: int | None = None,
    progress: bool = False,
    dataset: str = DATASET,
) -> dict:
    """The check (module docstring) with a started judge. The sampled votes go to `judgeloop evaluate` as its
    ``--labels``, so OUT/evaluation.json and OUT/report/ are the corrected evaluation a user would get;
    writes OUT/votes_check.json and returns it."""
    from workflows.evaluate.report import write_report  # deferred: matplotlib takes seconds to import

    out = Path(out)
    resp_path, votes, orient = responses_and_votes(out, max_prompts, dataset)
    resp = load_responses(resp_path)
    systems, prompts = resp.systems, resp.common
    items = build_items(resp, "pairwise", pairs_for(systems, "all_pairs", None))
    lines, by_pair = label_sample(items, votes, orient, systems, fraction, seed)
    labels_path = out / "labels.jsonl"
    labels_path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    opts = RunOptions(all_pairs=True, labels=str(labels_path), seed=seed, n_boot=n_boot, soft=soft)
    ev, (data,) = evaluate_run(resp, [judge], out, opts, progress=progress)
    paths = write_report(ev, out / "report")
    (crit,) = ev.criteria

    pidx = {q: k for k, q in enumerate(prompts)}
    sidx = {s: k for k, s in enumerate(systems)}
    k = len(systems)
    judge_o = np.full((k, k, len(prompts)), np.nan)
    human_o = np.full((k, k, len(prompts)), np.nan)
    for it in data.items:
        x, y = sorted((it.meta["system_a"], it.meta["system_b"]), key=sidx.get)
        q = pidx[it.meta["prompt_id"]]
        judge_o[sidx[x], sidx[y], q] = judge_value(data.verdicts.get(it.id), it, "pairwise", x, soft)
        if it.id in votes:
            labels = swap_to(votes[it.id], orient[it.id], it.meta["system_a"])
            human_o[sidx[x], sidx[y], q] = float(np.mean([pair_outcome(lab, x, it) for lab in labels]))
    w = est.bootstrap_weights(len(prompts), n_boot, seed)
    pj, bj, _ = est.bradley_terry_boot(judge_o, w, systems)
    ph, bh, _ = est.bradley_terry_boot(human_o, w, systems)
    tau = est.kendall_tau_interval(bj, bh, pj, ph)

    win = {(wr.system, wr.opponent): wr for wr in crit.win_rates}
    pairs_out, covered, ratios = [], 0, []
    for (x, y), its in sorted(by_pair.items(), key=lambda kv: (sidx[kv[0][0]], sidx[kv[0][1]])):
        truth = float(np.nanmean([human_o[sidx[x], sidx[y], pidx[it.meta["prompt_id"]]] for it in its]))
        wr = win[(x, y)]
        corr = wr.correction
        c = corr.corrected if corr else None
        hu = corr.human if corr else None
        ok = c is not None and c.lo is not None and c.lo <= truth <= c.hi
        covered += ok
        ratio = None
        if c is not None and hu is not None and hu.hi is not None and hu.hi > hu.lo:
            ratio = (c.hi - c.lo) / (hu.hi - hu.lo)
            ratios.append(ratio)
        pairs_out.append(
            {
                "pair": [x, y],
                "n_voted_items": len(its),
                "n_labelled": corr.n_labelled if corr else 0,
                "all_votes_win_rate": truth,
                "judge_only": wr.judge.model_dump(),
                "corrected": c.model_dump() if c else None,
                "human_only": hu.model_dump() if hu else None,
                "covered": bool(ok),
                "width_ratio_corrected_to_human": ratio,
                "n_effective": corr.n_effective if corr else None,
            }
        )
    rc = crit.ranking_correction

    def rows(rs):
        return [r.model_dump() for r in rs] if rs else None

    def tau_to_votes(rs):
        if not rs:
            return None
        strength = {r.system: r.strength.estimate for r in rs}
        return est.kendall_tau(np.array([strength[s] for s in systems]), ph)

    result = {
        "dataset": dataset,
        "judge": {"name": data.judge.name, "fingerprint": data.judge.ref.fingerprint, "engine": data.judge.ref.engine},
        "judge_score": "soft" if soft else "hard",
        "systems": systems,
        "n_prompts": len(prompts),
        "max_prompts": max_prompts,
        "ranking_judge": [systems[i] for i in np.argsort(-pj, kind="stable")],
        "ranking_human": [systems[i] for i in np.argsort(-ph, kind="stable")],
        "kendall_tau": tau.as_dict(),
        "label_fraction": fraction,
        "seed": seed,
        "labels": str(labels_path),
        "n_labelled": len(lines),
        "n_voted_items": sum(len(v) for v in by_pair.values()),
        "ranking_corrected": rows(rc.corrected if rc else None),
        "ranking_labelled_only": rows(rc.human if rc else None),
        "kendall_tau_corrected": tau_to_votes(rc.corrected if rc else None),
        "kendall_tau_labelled_only": tau_to_votes(rc.human if rc else None),
        "ranking_n_effective": rc.n_effective if rc else None,
        "coverage": covered / len(pairs_out) if pairs_out else None,
        "n_system_pairs": len(pairs_out),
        "median_width_ratio": float(np.median(ratios)) if ratios else None,
        "pairs": pairs_out,
        "evaluation": str(out / "evaluation.json"),
        "report": str(paths["html"]),
    }
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result


def summary_lines(result: dict) -> list[str]:
    """What the check found, in a few lines."""

    def fmt(x):
        return "n/a" if x is None else f"{x:.3f}"

    t = result["kendall_tau"]
    corrected = result["ranking_corrected"]
    return [
        f"{result['dataset']}: {len(result['systems'])} systems, {result['n_prompts']} questions, "
        f"judge {result['judge']['name']} ({(result['judge']['fingerprint'] or '')[:12]})",
        f"ranking by all human votes:     {' > '.join(result['ranking_human'])}",
        f"ranking by the judge alone:     {' > '.join(result['ranking_judge'])}  "
        f"(Kendall tau {t['estimate']:.3f} [{t['lo']:.3f}, {t['hi']:.3f}])",
        f"corrected with {result['n_labelled']} of {result['n_voted_items']} voted pairs "
        f"({100 * result['label_fraction']:.0f}%): {' > '.join(r['system'] for r in corrected) if corrected else 'n/a'}"
        f"  (tau {fmt(result['kendall_tau_corrected'])}; those labels alone: tau "
        f"{fmt(result['kendall_tau_labelled_only'])})",
        f"corrected win-rate intervals cover the all-votes win rate for "
        f"{sum(p['covered'] for p in result['pairs'])}/{result['n_system_pairs']} system pairs; median width "
        f"corrected / human-only {fmt(result['median_width_ratio'])}",
    ]
