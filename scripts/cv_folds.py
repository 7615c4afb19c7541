"""Grouped K-fold cross-validation of a training recipe on one prepared dataset: a figure that does not hang
on one lucky test split.

    python scripts/cv_folds.py run configs/train/gemma3-cpu-sources.yaml --data runs/demo/data --out runs/cv

``run`` does it all and resumes where it stopped: it writes the folds (``folds``), trains the recipe once per
fold the way ``judgeloop demo`` trains it on its split (the fold's train part of the dataset in place of the
recipe's ``pandalm``, the fold's dev part as dev; the recipe's other sources stay, less every item that shares an
instruction with the fold's test part), merges each judge, scores the fold's test part through vLLM (the serving
engine) and pools every fold's verdicts (``pool``). A fold whose run and verdicts are finished is reused. The
steps by hand, as the 2026-11-29 figures were made (SmolLM2's PandaLM-only recipe, scored with transformers):

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
from data.errors import JudgeloopError  # noqa: E402
from data.jsonl import read_jsonl  # noqa: E402
from data.schema import Item, Verdict  # noqa: E402
from data.spec import load_spec  # noqa: E402
from data.splits import group_fraction  # noqa: E402
from eval.gate import write_result  # noqa: E402

if TYPE_CHECKING:
    from data.spec import JudgeSpec
    from eval.result import ValidationResult

SPLITS = ("train", "dev", "test")
FOLD_SEED, DEV_SEED, DEV_FRACTION, SUBSAMPLE_SEED = 100, 101, 0.125, 102


def make_folds(data: Path, out: Path, k: int, train_fraction: float = 1.0) -> None:
    rows = [
        json.loads(line)
        for split in SPLITS
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


def pool(out: Path, k: int, spec: str | JudgeSpec, references: list[str]) -> ValidationResult:
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
        load_spec(spec) if isinstance(spec, str) else spec,
        reference_verdicts=refs,
        judge_info={"name": f"{k}-fold cross-validation", "fingerprint": "cv:" + ",".join(fingerprints)},
    )
    (out / "pooled").mkdir(parents=True, exist_ok=True)
    write_result(out / "pooled" / "validation.json", result)
    return result


def run(
    recipe: Path, data: Path, out: Path, k: int, overrides: list[str], serve_config: Path, train_fraction: float = 1.0
) -> JudgeSpec:
    """Folds, then per fold: train (``judgeloop demo``'s overrides for a split folder), merge, score the test part
    through vLLM into ``run{k}/eval/verdicts.jsonl``, where ``pool`` reads it. Returns the judges' spec."""
    import time

    from data.provenance import sha256_file
    from judge.loading import load_judge  # deferred: as pool's imports
    from judgeloop import progress_output
    from train.config import load_train_config
    from workflows import steps
    from workflows.demo import train_args

    with progress_output(quiet=False):  # the steps' progress (training, vLLM, scoring) as judgeloop shows it
        load_train_config(recipe, train_args(out / "run0", data, recipe, overrides))  # every config error before a fold
        make_folds(data, out, k, train_fraction)  # seeded by instruction group: the same folds every time
        spec, start = None, time.perf_counter()
        for fold in range(k):
            fold_dir, run_dir = out / f"fold{fold}", out / f"run{fold}"
            elapsed = time.perf_counter() - start
            print(
                f"[{elapsed / 60:5.1f} min] fold {fold} of {k}: train, merge, score {fold_dir / 'test.jsonl'}",
                flush=True,
            )
            hashes = {split: sha256_file(fold_dir / f"{split}.jsonl") for split in SPLITS}
            judge_dir = steps.train_in_child(recipe, train_args(run_dir, fold_dir, recipe, overrides), hashes)
            merged = steps.merged(judge_dir)
            spec = load_judge(merged).spec
            items = list(read_jsonl(fold_dir / "test.jsonl", Item))
            steps.score_with_vllm(str(merged), items, run_dir / "eval" / "verdicts.jsonl", serve_config)
    return spec


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("run", "folds", "pool"))
    p.add_argument("recipe", nargs="?", type=Path, help="run: the training recipe (a judgeloop train config)")
    p.add_argument("overrides", nargs="*", help="run: the recipe's --key=value overrides, as judgeloop train takes")
    p.add_argument("--serve-config", type=Path, default=REPO / "configs" / "serve" / "cpu.yaml", help="run: vLLM")
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
    args, unknown = p.parse_known_args(argv)  # the recipe's --key=value overrides are not this script's options
    if args.command != "run" and (unknown or args.recipe):
        p.error(f"only run takes a recipe and overrides: {' '.join(unknown or [str(args.recipe)])}")
    if args.command in ("run", "folds") and not all((args.data / f"{s}.jsonl").exists() for s in SPLITS):
        p.error(
            f"{args.data} has no train/dev/test.jsonl: `judgeloop demo` writes runs/demo/data, or "
            f"`judgeloop data prepare pandalm --out DIR` and --data DIR (every item is used whatever its split)"
        )
    if args.k < 2:
        p.error(f"--k must be at least 2, not {args.k}")
    if args.command in ("run", "folds") and not 0 < args.train_fraction <= 1:
        p.error(f"--train-fraction must be in (0, 1], not {args.train_fraction}")
    if args.command == "run":
        if args.recipe is None:
            p.error("run needs a recipe: python scripts/cv_folds.py run configs/train/gemma3-cpu-sources.yaml")
        overrides = [*args.overrides, *unknown]
        try:
            args.spec = run(args.recipe, args.data, args.out, args.k, overrides, args.serve_config, args.train_fraction)
        except JudgeloopError as e:  # a bad recipe or override, a failed fold: one line, what is done stays
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.command == "folds":
        make_folds(args.data, args.out, args.k, args.train_fraction)
        return 0
    r = pool(args.out, args.k, args.spec, args.reference)
    acc = r.metrics["accuracy"]
    print(
        f"pooled: {r.n} items, accuracy {acc.value:.3f} [{acc.ci_low:.3f}, {acc.ci_high:.3f}]; "
        f"where humans chose the shorter {r.length_control.acc_shorter_preferred:.3f}"
    )
    for name, ref in r.reference_judges.items():  # pick-the-longer and the dataset's registered references
        diff = ref.judge_minus_reference.diff
        print(
            f"  {name}: {ref.metrics['accuracy'].value:.3f}; judge minus it {diff.value:+.3f} "
            f"[{diff.ci_low:+.3f}, {diff.ci_high:+.3f}]"
        )
    print(f"wrote {args.out / 'pooled' / 'validation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
