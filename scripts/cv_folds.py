"""Grouped K-fold cross-validation of a training recipe on one prepared dataset: a figure that does not hang
on one lucky test split.

    python scripts/cv_folds.py folds --data runs/demo/data --out runs/cv        # writes runs/cv/fold{k}/...
    for k in 0 1 2 3; do
      judgeloop train configs/train/smollm2-cpu.yaml --output_dir=runs/cv/run$k \\
          --data.train=[runs/cv/fold$k/train.jsonl] --data.dev=[runs/cv/fold$k/dev.jsonl]
      judgeloop eval --judge runs/cv/run$k --engine transformers --items runs/cv/fold$k/test.jsonl \\
          --spec helpfulness-separate --out runs/cv/run$k/eval --reference pandalm:pandalm-7b
    done
    python scripts/cv_folds.py pool --out runs/cv

Folds are whole instruction groups (``data.splits.group_fraction``, seeded), so no prompt is in two folds;
within the other folds a seeded eighth of the groups is the dev split (checkpoint choice), the rest trains.
``pool`` scores every fold's verdicts against the human label on the non-tie items: agreement, the
pick-the-longer rule on the same items, the margin between them with a bootstrap over instructions, the
accuracy where humans chose the shorter response, and the reference judges of each fold's validation.json.
"""
import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from data.splits import group_fraction  # noqa: E402

FOLD_SEED, DEV_SEED, DEV_FRACTION = 100, 101, 0.125


def make_folds(data: Path, out: Path, k: int) -> None:
    rows = [json.loads(line) for split in ("train", "dev", "test")
            for line in (data / f"{split}.jsonl").read_text().splitlines() if line.strip()]
    for fold in range(k):
        parts: dict[str, list] = {"train": [], "dev": [], "test": []}
        for row in rows:
            if int(group_fraction(row["group"], FOLD_SEED) * k) == fold:
                parts["test"].append(row)
            else:
                parts["dev" if group_fraction(row["group"], DEV_SEED) < DEV_FRACTION else "train"].append(row)
        (out / f"fold{fold}").mkdir(parents=True, exist_ok=True)
        for split, items in parts.items():
            (out / f"fold{fold}" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
        print(f"fold {fold}: " + ", ".join(f"{s} {len(v)}" for s, v in parts.items()))


def _stats(rows: list[dict]) -> dict:
    shorter = [r for r in rows if r["longer"] != r["human"]]
    acc = sum(r["judge"] == r["human"] for r in rows) / len(rows)
    longer = sum(r["longer"] == r["human"] for r in rows) / len(rows)
    return {"n": len(rows), "accuracy": acc, "pick_longer": longer, "margin": acc - longer,
            "shorter_preferred": sum(r["judge"] == r["human"] for r in shorter) / len(shorter) if shorter else None,
            "judge_picks_longer": sum(r["judge"] == r["longer"] for r in rows) / len(rows)}


def pool(out: Path, k: int, resamples: int = 2000) -> dict:
    rows, refs = [], {}
    for fold in range(k):
        verdicts_path = out / f"run{fold}" / "eval" / "verdicts.jsonl"
        if not verdicts_path.exists():
            continue
        verdicts = {v["id"]: v for v in map(json.loads, verdicts_path.read_text().splitlines())}
        for item in map(json.loads, (out / f"fold{fold}" / "test.jsonl").read_text().splitlines()):
            la, lb = len(item["response_a"]), len(item["response_b"])
            if item.get("label") not in ("A", "B") or item["id"] not in verdicts or la == lb:
                continue
            rows.append({"fold": fold, "group": item["group"], "human": item["label"],
                         "judge": verdicts[item["id"]].get("verdict"), "longer": "A" if la > lb else "B"})
        validation = json.loads((out / f"run{fold}" / "eval" / "validation.json").read_text())
        for name, ref in (validation.get("reference_judges") or {}).items():
            n, acc = refs.get(name, (0, 0.0))
            refs[name] = (n + ref["n"], acc + ref["n"] * ref["metrics"]["accuracy"]["value"])
    if not rows:
        raise SystemExit(f"no fold verdicts under {out}/run*/eval/")
    groups: dict[str, list] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    rng, names = random.Random(0), list(groups)
    boots = [_stats([r for g in (rng.choice(names) for _ in names) for r in groups[g]]) for _ in range(resamples)]

    def interval(key):
        xs = sorted(b[key] for b in boots)
        return [round(xs[int(0.025 * len(xs))], 3), round(xs[min(int(0.975 * len(xs)), len(xs) - 1)], 3)]

    result = {"pooled": {**_stats(rows), "accuracy_ci": interval("accuracy"), "margin_ci": interval("margin"),
                         "groups": len(groups)},
              "folds": {fold: _stats([r for r in rows if r["fold"] == fold]) for fold in sorted({r["fold"] for r in rows})},
              "references": {name: round(acc / n, 4) for name, (n, acc) in refs.items()}}
    (out / "pooled.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("folds", "pool"))
    p.add_argument("--data", type=Path, default=REPO / "runs" / "demo" / "data",
                   help="a prepared split folder (train/dev/test.jsonl) whose items are all used")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "cv")
    p.add_argument("--k", type=int, default=4)
    args = p.parse_args(argv)
    if args.command == "folds":
        make_folds(args.data, args.out, args.k)
    else:
        print(json.dumps(pool(args.out, args.k), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
