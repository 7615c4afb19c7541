"""`judgeloop train CONFIG [--key=value ...] [--resume]` and `judgeloop merge RUN_DIR [--out DIR]`.

(`judgeloop train all` is a workflow above train/: workflows/cli.py adds it to this parser.)
The implementations are imported when a command runs, not here: judgeloop builds the whole parser
tree on every call (``judgeloop --help`` too), and they import torch and transformers (seconds).
"""

from __future__ import annotations

import logging
import os

from data.cli_base import add_command, moved_flag
from data.errors import ConfigError

log = logging.getLogger("judgeloop")

TRAIN_EPILOG = """\
--resume continues the run in output_dir from its last checkpoint. Several processes:
torchrun --nproc_per_node N -m judgeloop train CONFIG (CPU), or
accelerate launch --config_file configs/accelerate/ddp.yaml -m judgeloop train CONFIG (GPU)."""


def _fewer_spinning_threads() -> None:
    # Before torch loads OpenMP: on a busy CPU box, threads spinning while waiting for a descheduled
    # sibling made LoRA steps 4-6x slower here (2 shared cores); sleeping waiters avoid it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def train_fields() -> dict[str, str]:
    from data.config import field_help  # deferred: module docstring
    from train.config import TrainConfig

    return field_help(TrainConfig)


def cmd_train(args) -> int:
    if not args.config and not args.overrides:
        raise ConfigError(
            "give a training config (CONFIG) and/or --key=value fields",
            hint="e.g. judgeloop train configs/train/smollm2-cpu.yaml; judgeloop train --help lists the fields",
        )
    _fewer_spinning_threads()
    from train.config import load_train_config  # deferred: module docstring
    from train.trainer import train

    cfg = load_train_config(args.config, args.overrides)
    result = train(cfg, resume=args.resume, progress=log.info)
    args.outputs = [str(result.run_dir)]  # what it wrote, for what runs after the command (judgeloop.py)
    return 0


def cmd_merge(args) -> int:
    _fewer_spinning_threads()
    from judge.merge import merge  # deferred: module docstring

    out = merge(args.run_dir, args.out, progress=log.info)
    print(f"wrote {out}")
    return 0


def add_commands(commands) -> None:
    train = add_command(
        commands,
        "train",
        help="fine-tune a LoRA judge on human labels (train all: every criterion)",
        description="Fine-tune a LoRA judge on human labels. CONFIG is a YAML file (configs/train/*.yaml); "
        "any field can be overridden with --key=value.",
        example="judgeloop train configs/train/smollm2-cpu.yaml --max_steps=100 --lora.rank=8 --output_dir=runs/mine",
        run=cmd_train,
        overrides=True,
        config_help=train_fields,
        epilog=TRAIN_EPILOG,
    )
    train.add_argument("config", nargs="?", metavar="CONFIG", help="training config YAML")
    train.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last checkpoint")
    moved_flag(train, "--all", "judgeloop train all")

    merge = add_command(
        commands,
        "merge",
        help="merge a LoRA judge into a plain model for serving",
        description="merge a run's LoRA adapter into its base model for serving without LoRA",
        example="judgeloop merge runs/smollm2-cpu --out runs/smollm2-cpu/merged",
        run=cmd_merge,
    )
    merge.add_argument("run_dir", metavar="RUN_DIR", help="a run directory from `judgeloop train`")
    merge.add_argument("--out", help="output directory (default RUN_DIR/merged)")
