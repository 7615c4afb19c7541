"""An out-of-distribution test set for a helpfulness judge trained on PandaLM: English chat-assistant
comparisons from LLMEval2 that no recipe trains on, each decided by one human (ties left out).

    python scripts/ood_items.py [--n 300] [--out runs/ood/llmeval2-chat-en.jsonl]
    judgeloop eval --judge RUN_DIR --engine transformers --items runs/ood/llmeval2-chat-en.jsonl \
        --spec helpfulness-separate --out RUN_DIR/eval-ood

The subsets (mt-bench, webgpt, shp, eli5, hh-rlhf) are other people's prompts, other models' answers and
other annotators, so agreement here says how far the judge carries beyond the split it was tuned on.
Whole prompts are sampled (seeded), so the figure's bootstrap interval stays honest. The validation
report's "shorter preferred" accuracy is the length-adversarial part: items where the human chose the
shorter answer (the pick-the-longer rule gets 0 there).
"""
import argparse
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from data.registry import load_items  # noqa: E402

SUBSETS = ("mt-bench", "webgpt", "shp", "eli5", "hh-rlhf")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=300, help="items at most (whole prompts, seeded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/ood/llmeval2-chat-en.jsonl")
    args = p.parse_args()
    items = [i for i in load_items("llmeval2")
             if i.meta.get("language") == "en" and i.label in ("A", "B")
             and i.meta["source"].split("/", 1)[1] in SUBSETS]
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(item.group, []).append(item)
    order = sorted(groups)
    random.Random(args.seed).shuffle(order)
    chosen = []
    for g in order:
        if len(chosen) + len(groups[g]) > args.n:
            continue
        chosen.extend(groups[g])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(i.model_dump_json(exclude_none=True) + "\n" for i in chosen))
    by = {s: sum(i.meta["source"].endswith("/" + s) for i in chosen) for s in SUBSETS}
    print(f"{len(chosen)} items of {len(items)} ({by}) -> {out}")


if __name__ == "__main__":
    main()
