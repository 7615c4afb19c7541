"""Grouped K-fold cross-validation of a training recipe on one prepared dataset: a figure that does not hang
on one lucky test split.

    python scripts/cv_folds.py folds --data runs/demo/data --out runs/cv        # writes runs/cv/fold{k}/...
    for k in 0 1 2 3; do
      judgeloop train configs/train/smollm2-cpu.yaml --output_dir=runs/cv/run$k \\
          --data.train=[runs/cv/fold$k/train.jsonl] --data.dev=[runs/cv/fold$k/dev.jsonl]
      judgeloop eval --judge runs/cv/run$k --engine transformers --items runs/cv/fold$k/test.jsonl \\
          --spec helpfulness-separate --out runs/cv/run$k/eval --reference pandalm:pandalm-7b
    done
    python scripts/cv_folds.py pool --out runs/cv      # -> runs/cv/pooled/validation.json

Folds are whole instruction groups (``data.splits.group_fraction``, seeded), so no prompt is in two folds;
within the other folds a seeded eighth of the groups is the dev split (checkpoint choice), the rest trains.
``pool`` validates all folds' verdicts together with the eval harness (``runs/cv/pooled/validation.json``:
agreement with group-bootstrap intervals, length control, baselines), with pick-the-longer and the dataset's
reference judges as references, so the margin over each is a paired difference with its interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from data.jsonl import read_jsonl  # noqa: E402
from data.schema import Item, Verdict  # noqa: E402
from data.spec import load_spec  # noqa: E402
from data.splits import group_fraction  # noqa: E402
from eval.gate import write_result  # noqa: E402

if TYPE_CHECKING:
    from eval.result import ValidationResult

FOLD_SEED, DEV_SEED, DEV_FRACTION, SUBSAMPLE_SEED = 100, 101, 0.125, 102


def make_folds(data: Path, out: Path, k: int, train_fraction: float = 1.0) -> None:
    rows = [
        json.loads(line)
        for split in ("train", "dev", "test")
        for line in (data / f"{split}.jsonl").read_text().splitlines()
        if line.strip()
    ]
    for fold in range(k):
        parts: dict[str, list] = {"train": [], "dev": [], "test": []}
        for row in rows:
            if int(group_fraction(row["group"], FOLD_SEED) * k) == fold:
                parts["test"].append(row)
            else:
                split = "dev" if group_fraction(row["group"], DEV_SEED) < DEV_FRACTION else "train"
                if split == "dev" or group_fraction(row["group"], SUBSAMPLE_SEED) < train_fraction:
                    parts[split].append(row)
        (out / f"fold{fold}").mkdir(parents=True, exist_ok=True)
        for split, items in parts.items():
            (out / f"fold{fold}" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
        print(f"fold {fold}: " + ", ".join(f"{s} {len(v)}" for s, v in parts.items()))


def pool(out: Path, k: int, spec_name: str, references: list[str]) -> ValidationResult:
    """Every fold's test items and verdicts as one validation, by the eval harness (its metrics, group bootstrap,
    baselines and length control), with pick-the-longer as a reference judge for the paired margin."""
    from eval.bias import longer_rule_verdicts  # deferred: as evaluate
    from eval.harness import evaluate  # deferred: takes seconds to import (SciPy, scikit-learn); only `pool` needs it
    from workflows.validate import load_reference  # deferred: takes seconds to import; only `pool` needs it

    items, verdicts = [], []
    for fold in range(k):
        path = out / f"run{fold}" / "eval" / "verdicts.jsonl"
        if path.exists():
            items += list(read_jsonl(out / f"fold{fold}" / "test.jsonl", Item))
            verdicts += list(read_jsonl(path, Verdict))
    if not verdicts:
        raise SystemExit(f"no fold verdicts under {out}/run*/eval/")
    longer = longer_rule_verdicts(items)
    refs = {"pick-the-longer": longer, **{name: v for name, v, _ in map(load_reference, references)}}
    fingerprints = sorted({v.judge.fingerprint for v in verdicts})
    result = evaluate(
        items,
        verdicts,
        load_spec(spec_name),
        reference_verdicts=refs,
        judge_info={"name": f"{k}-fold cross-validation", "fingerprint": "cv:" + ",".join(fingerprints)},
    )
    (out / "pooled").mkdir(parents=True, exist_ok=True)
    write_result(out / "pooled" / "validation.json", result)
    return result


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("folds", "pool"))
    p.add_argument(
        "--data",
        type=Path,
        default=REPO / "runs" / "demo" / "data",
        help="a prepared split folder (train/dev/test.jsonl) whose items are all used",
    )
    p.add_argument("--out", type=Path, default=REPO / "runs" / "cv")
    p.add_argument("--k", type=int, default=4)
    p.add_argument(
        "--train-fraction",
        type=float,
        default=1.0,
        help="folds: keep this seeded fraction of each fold's training groups (a learning curve: the "
        "same dev and test items, less training data)",
    )
    p.add_argument("--spec", default="helpfulness-separate", help="pool: the spec the folds' judges were trained on")
    p.add_argument(
        "--reference",
        action="append",
        default=["pandalm:pandalm-7b", "pandalm:gpt-3.5-turbo"],
        help="pool: reference judges, as judgeloop eval --reference",
    )
    args = p.parse_args(argv)
    if args.command == "folds":
        if not 0 < args.train_fraction <= 1:
            p.error(f"--train-fraction must be in (0, 1], not {args.train_fraction}")
        make_folds(args.data, args.out, args.k, args.train_fraction)
        return 0
    r = pool(args.out, args.k, args.spec, args.reference)
    acc = r.metrics["accuracy"]
    print(
        f"pooled: {r.n} items, accuracy {acc.value:.3f} [{acc.ci_low:.3f}, {acc.ci_high:.3f}]; "
        f"where humans chose the shorter {r.length_control.acc_shorter_preferred:.3f}"
    )
    for name, ref in r.reference_judges.items():
        diff = ref.judge_minus_reference.diff
        print(
            f"  {name}: {ref.metrics['accuracy'].value:.3f}; judge minus it {diff.value:+.3f} "
            f"[{diff.ci_low:+.3f}, {diff.ci_high:+.3f}]"
        )
    print(f"wrote {args.out / 'pooled' / 'validation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
