"""Small item sets and configs for training tests on the tiny random Llama."""

from __future__ import annotations

import random
from pathlib import Path

from data.config import load_config
from data.jsonl import write_jsonl
from data.schema import Item
from train.config import TrainConfig

SPEC = "helpfulness-pairwise"


def pairwise_items(n: int, prefix: str = "t", seed: int = 0, labels=("A", "B")) -> list[Item]:
    """Pairwise items whose human label depends on the responses (A wins when it mentions the fox)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        fox, dog = "The quick brown fox jumps. " * rng.randint(1, 3), "The lazy dog. " * rng.randint(1, 3)
        first_is_fox = rng.random() < 0.5
        a, b = (fox, dog) if first_is_fox else (dog, fox)
        label = rng.choice(labels) if "tie" in labels else ("A" if first_is_fox else "B")
        other = "B" if label == "A" else "A"
        out.append(
            Item(
                id=f"{prefix}{i}",
                group=f"{prefix}g{i}",
                kind="pairwise",
                instruction="Which response is about a fox?",
                response_a=a,
                response_b=b,
                labels=[label, label, other],
                label=label,
            )
        )
    return out


def write_items(path: Path, items: list[Item]) -> str:
    write_jsonl(path, items)
    return str(path)


def tiny_config(
    tmp_path: Path, model_dir: Path, *overrides: str, n_train: int = 16, n_dev: int = 6, dev: bool = True
) -> TrainConfig:
    """A config training the tiny model on a few fox/dog items; overrides as ``--key=value``."""
    train_file = write_items(tmp_path / "train.jsonl", pairwise_items(n_train, "t"))
    args = [
        f"--spec={SPEC}",
        f"--base_model={model_dir}",
        f"--output_dir={tmp_path / 'run'}",
        f"--data.train={train_file}",
        "--max_steps=4",
        "--eval.steps=2",
        "--batch_size=4",
        "--learning_rate=5e-3",
        "--logging_steps=1",
        "--lora.rank=4",
        "--lora.alpha=8",
    ]
    if dev:
        args.append(f"--data.dev={write_items(tmp_path / 'dev.jsonl', pairwise_items(n_dev, 'd', seed=1))}")
    return load_config(TrainConfig, None, args + list(overrides))
