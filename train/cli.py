"""`judgeloop train CONFIG [--key=value ...] [--resume]` and `judgeloop merge RUN_DIR [--out DIR]`."""

from __future__ import annotations

import argparse
import os

from data.config import field_help
from judge.merge import merge
from train.config import TrainConfig, load_train_config
from train.trainer import train

USAGE = """usage: judgeloop train CONFIG [--key=value ...] [--resume]

Fine-tune a LoRA judge on human labels. CONFIG is a YAML file (configs/train/*.yaml); any field
can be overridden with --key=value (nested with dots: --lora.rank=8). --resume continues the run
in output_dir from its last checkpoint. `judgeloop train --all [--only A,B] [--gpu] [--dry-run]`
trains every criterion of configs/criteria.yaml not trained yet, one at a time. Several processes:
torchrun --nproc_per_node N -m judgeloop train CONFIG (CPU), or
accelerate launch --config_file configs/accelerate/ddp.yaml -m judgeloop ... (GPU).

fields:
"""


def train_main(argv: list[str]) -> int:

    if not argv or any(a in ("-h", "--help") for a in argv):
        helps = field_help(TrainConfig)
        width = max(map(len, helps))
        print(USAGE + "\n".join(f"  --{k:<{width}}  {v}" for k, v in helps.items()))
        return 0
    resume = "--resume" in argv
    args = [a for a in argv if a != "--resume"]
    path, overrides = (None, args) if args[0].startswith("--") else (args[0], args[1:])
    cfg = load_train_config(path, overrides)

    train(cfg, resume=resume)
    return 0


def merge_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="judgeloop merge", description="merge a run's LoRA adapter into its base model for serving without LoRA"
    )
    p.add_argument("run_dir", help="a run directory from `judgeloop train`")
    p.add_argument("--out", help="output directory (default RUN_DIR/merged)")
    args = p.parse_args(argv)

    merge(args.run_dir, args.out)
    return 0


def main(argv: list[str]) -> int:
    # Before torch loads OpenMP: on a busy CPU box, threads spinning while waiting for a descheduled
    # sibling made LoRA steps 4-6x slower here (2 shared cores); sleeping waiters avoid it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    command, rest = argv[0], argv[1:]
    return train_main(rest) if command == "train" else merge_main(rest)
