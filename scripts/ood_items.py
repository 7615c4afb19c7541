"""A second test set for the CPU helpfulness judge: LLMEval2's held-out splits (dev and test, seed 0), English,
ties left out: other people's prompts, other models' answers, one other annotator each.

    python scripts/ood_items.py [--out runs/ood/llmeval2-heldout-en.jsonl]
    judgeloop eval --judge RUN_DIR --engine transformers --items runs/ood/llmeval2-heldout-en.jsonl \
        --spec helpfulness-separate --out RUN_DIR/eval-llmeval2

The CPU recipe (configs/train/smollm2-cpu.yaml) trains on PandaLM only; a variant that mixes in LLMEval2
takes a capped part of its *train* split (data.max_items), so these dev and test splits stay unseen. The
validation report slices agreement by source (mt-bench, webgpt, shp, ...), and its "shorter
preferred" accuracy is the length-adversarial part: the items where the human chose the shorter answer.
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from data.jsonl import read_jsonl, write_jsonl  # noqa: E402
from data.prepare import prepare  # noqa: E402
from data.schema import Item  # noqa: E402
from train.data import longer_preferred  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepared", default="prepared/llmeval2", help="LLMEval2's prepared splits (seed 0)")
    p.add_argument("--out", default="runs/ood/llmeval2-heldout-en.jsonl")
    args = p.parse_args()
    folder = Path(args.prepared)
    if not (folder / "manifest.json").exists():
        prepare("llmeval2", folder, seed=0)
    items = [
        i
        for split in ("dev", "test")
        for i in read_jsonl(folder / f"{split}.jsonl", Item)
        if i.meta.get("language") == "en" and i.label in ("A", "B")
    ]
    n = write_jsonl(args.out, items)
    share = longer_preferred([(i, i.label) for i in items])
    print(f"{n} items (humans preferred the longer response in {share:.0%}) -> {args.out}")


if __name__ == "__main__":
    main()
