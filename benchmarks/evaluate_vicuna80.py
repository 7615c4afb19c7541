"""The real check of `judgeloop evaluate` on vicuna80-human: nine systems answering the same questions,
with crowd votes.

1. Rank the nine systems with a judgeloop judge (all pairs, Bradley-Terry) and with all the human votes;
   Kendall's tau between the two rankings with a paired bootstrap interval over questions.
2. Give the judge human labels on a seeded random 20% of the voted pairs of each system pair; per system
   pair, does the corrected (PPI++) win rate's interval cover the win rate from all human votes, and how
   much narrower is it than the human-only interval from the same 20%?

    python -m benchmarks.evaluate_vicuna80 [--judge helpfulness-pairwise] [--engine transformers] [--out DIR]

Writes DIR/vicuna80_check.json (and the evaluation run itself under DIR).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from data import dataset_registry
from workflows.evaluate import estimators as est
from workflows.evaluate.run import (
    RunOptions,
    evaluate_run,
    judge_value,
    load_responses,
    open_judges,
    pair_id,
    pair_outcome,
)


def responses_and_votes(out: Path, max_prompts: int | None = None) -> tuple[Path, dict[str, list[str]], dict]:
    """The responses file (one line per question and system) and the votes per item id in the workflow's
    A/B terms (swapped where the workflow put the systems the other way round)."""
    items = list(dataset_registry.load_items("vicuna80-human"))
    if max_prompts:
        keep = list(dict.fromkeys(it.meta["question"] for it in items))[:max_prompts]
        items = [it for it in items if it.meta["question"] in set(keep)]
    rows: dict[tuple[str, str], dict] = {}
    votes: dict[str, list[str]] = {}
    orient: dict[str, tuple[str, str]] = {}
    for it in items:
        q, a, b = it.meta["question"], it.meta["system_a"], it.meta["system_b"]
        rows.setdefault((q, a), {"prompt_id": q, "system": a, "response": it.response_a, "instruction": it.instruction})
        rows.setdefault((q, b), {"prompt_id": q, "system": b, "response": it.response_b, "instruction": it.instruction})
        votes[pair_id(q, a, b)] = list(it.labels)
        orient[pair_id(q, a, b)] = (a, b)
    path = out / "vicuna80_responses.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
    return path, votes, orient


def swap_to(labels: list[str], dataset_ab: tuple[str, str], item_a: str) -> list[str]:
    if dataset_ab[0] == item_a:
        return labels
    return [{"A": "B", "B": "A"}.get(x, x) for x in labels]


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--judge", default="helpfulness-pairwise", help="spec name (its untuned base) or a judge dir")
    p.add_argument("--engine", default="transformers", choices=["transformers", "vllm"])
    p.add_argument("--serve-config")
    p.add_argument("--out", default="runs/evaluate-vicuna80")
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--judge-score", choices=["hard", "soft"], default="soft")
    p.add_argument("--max-prompts", type=int, help="only the first N questions (a smoke figure on a slow machine)")
    args = p.parse_args(argv)
    out = Path(args.out)
    resp_path, votes, orient = responses_and_votes(out, args.max_prompts)
    opts = RunOptions(all_pairs=True, seed=args.seed, n_boot=args.n_boot, soft=args.judge_score == "soft")
    with open_judges([args.judge], args.engine, args.serve_config) as judges:
        ev, (data,) = evaluate_run(resp_path, judges, out, opts, progress=True)
    resp = load_responses(resp_path)
    systems, prompts = resp.systems, resp.common
    pidx = {q: k for k, q in enumerate(prompts)}
    sidx = {s: k for k, s in enumerate(systems)}
    k = len(systems)
    judge_o = np.full((k, k, len(prompts)), np.nan)
    human_o = np.full((k, k, len(prompts)), np.nan)
    per_pair = defaultdict(list)  # (x, y) -> [(human outcome, judge value)] over voted items, x < y by index
    for it in data.items:
        a, b = it.meta["system_a"], it.meta["system_b"]
        x, y = sorted((a, b), key=sidx.get)
        q = it.meta["prompt_id"]
        f = judge_value(data.verdicts.get(it.id), it, "pairwise", x, opts.soft)
        judge_o[sidx[x], sidx[y], pidx[q]] = f
        if it.id in votes:
            labels = swap_to(votes[it.id], orient[it.id], a)
            h = float(np.mean([pair_outcome(lab, x, it) for lab in labels]))
            human_o[sidx[x], sidx[y], pidx[q]] = h
            if not np.isnan(f):
                per_pair[(x, y)].append((h, f))
    w = est.bootstrap_weights(len(prompts), args.n_boot, args.seed)
    pj, bj, _ = est.bradley_terry_boot(judge_o, w, systems)
    ph, bh, _ = est.bradley_terry_boot(human_o, w, systems)
    tau = est.kendall_tau_interval(bj, bh, pj, ph)
    rng = np.random.default_rng(args.seed)
    pairs_out, covered, ratios = [], 0, []
    for (x, y), hf in sorted(per_pair.items()):
        h = np.array([a for a, _ in hf])
        f = np.array([b for _, b in hf])
        n = max(2, int(round(args.fraction * len(h))))
        mask = np.zeros(len(h), bool)
        mask[rng.permutation(len(h))[:n]] = True
        res = est.ppi_mean(h[mask], f[mask], f[~mask])
        truth = float(h.mean())
        c, hu = res["corrected"], res["human"]
        ok = c["lo"] <= truth <= c["hi"]
        covered += ok
        ratio = (c["hi"] - c["lo"]) / (hu["hi"] - hu["lo"]) if hu["hi"] > hu["lo"] else None
        if ratio is not None:
            ratios.append(ratio)
        pairs_out.append(
            {
                "pair": [x, y],
                "n_voted_items": len(h),
                "n_labelled": int(n),
                "all_votes_win_rate": truth,
                "judge_only": float(f.mean()),
                "corrected": c,
                "human_only": hu,
                "covered": bool(ok),
                "width_ratio_corrected_to_human": ratio,
                "n_effective": res.get("n_effective"),
            }
        )
    result = {
        "judge": {"name": data.judge.name, "fingerprint": data.judge.ref.fingerprint, "engine": args.engine},
        "judge_score": args.judge_score,
        "systems": systems,
        "n_prompts": len(prompts),
        "ranking_judge": [systems[i] for i in np.argsort(-pj)],
        "ranking_human": [systems[i] for i in np.argsort(-ph)],
        "kendall_tau": tau.as_dict(),
        "label_fraction": args.fraction,
        "max_prompts": args.max_prompts,
        "coverage": covered / len(pairs_out),
        "n_system_pairs": len(pairs_out),
        "median_width_ratio": float(np.median(ratios)) if ratios else None,
        "pairs": pairs_out,
        "evaluation": str(out / "evaluation.json"),
    }
    (out / "vicuna80_check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"judge ranking: {' > '.join(result['ranking_judge'])}\nhuman ranking: {' > '.join(result['ranking_human'])}\n"
        f"Kendall tau {tau.estimate:.3f} [{tau.lo:.3f}, {tau.hi:.3f}]\n"
        f"corrected intervals cover the all-votes win rate for {covered}/{len(pairs_out)} system pairs "
        f"({100 * result['coverage']:.0f}%); median width corrected/human-only "
        f"{result['median_width_ratio']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
