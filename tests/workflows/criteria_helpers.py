"""Tiny criteria for the criteria tests: specs on a tiny model, labelled items, real (tiny) training runs,
and a criteria registry file naming them."""

from __future__ import annotations

import random
from pathlib import Path

import yaml

from data.jsonl import write_jsonl
from data.schema import Item
from tests.serve.helpers import spec_file

# criterion -> (spec like, kind)
TINY_CRITERIA = {
    "correctness": ("answer-correctness", "binary"),
    "coherence": ("summary-coherence", "pointwise"),
    "fluency": ("summary-fluency", "pointwise"),
}


def labelled_items(kind: str, n: int, prefix: str, seed: int = 0) -> list[Item]:
    """Items whose label follows the response (a 'fox' answer is right / good), 3 annotators each."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        good = rng.random() < 0.5
        response = ("The quick brown fox jumps. " if good else "The lazy dog. ") * rng.randint(1, 3)
        if kind == "binary":
            label = "yes" if good else "no"
            labels = [label, label, label if rng.random() < 0.8 else ("no" if good else "yes")]
        else:
            label = rng.choice([4, 5]) if good else rng.choice([1, 2])
            labels = [label, label, min(5, label + 1)]
        out.append(
            Item(
                id=f"{prefix}{i}",
                group=f"{prefix}g{i // 2}",
                kind=kind,
                instruction="Which animal jumps?",
                context="A fox jumped over a dog.",
                reference="the fox",
                response=response,
                labels=labels,
                label=label if kind == "binary" else round(sum(labels) / 3, 6),
            )
        )
    return out


def tiny_criteria(
    root: Path,
    model_dir: Path,
    names=tuple(TINY_CRITERIA),
    train: tuple[str, ...] = (),
    n_train: int = 16,
    n_test: int = 24,
) -> Path:
    """A criteria registry in ``root`` for ``names`` on ``model_dir``; the criteria in ``train`` are trained
    for real (a few steps of `judgeloop train all`, LoRA on the last layer only). Returns the registry path."""
    root.mkdir(parents=True, exist_ok=True)
    criteria = {}
    for name in names:
        like, kind = TINY_CRITERIA[name]
        spec = spec_file(root, model_dir, f"tiny-{name}", like=like)
        train_file = root / f"{name}-train.jsonl"
        test_file = root / f"{name}-test.jsonl"
        write_jsonl(train_file, labelled_items(kind, n_train, f"{name}-t", seed=1))
        write_jsonl(test_file, labelled_items(kind, n_test, f"{name}-x", seed=2))
        config = root / f"{name}-train.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "spec": str(spec),
                    "base_model": str(model_dir),
                    "output_dir": str(root / "runs" / name),
                    "data": {"train": [str(train_file)]},
                    "lora": {"rank": 4, "alpha": 8, "layers": 1},
                    "max_steps": 3,
                    "batch_size": 4,
                    "learning_rate": 5e-3,
                    "logging_steps": 1,
                    "eval": {"steps": 3},
                }
            )
        )
        criteria[name] = {"spec": str(spec), "train": str(config), "test": [str(test_file)]}
    path = root / "criteria.yaml"
    path.write_text(yaml.safe_dump({"runs_dir": str(root / "runs"), "criteria": criteria}, sort_keys=False))
    if train:
        from data.criteria import load_criteria
        from workflows.all_criteria import train_all

        train_all(load_criteria(path), list(train))
    return path
