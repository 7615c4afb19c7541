"""Run by tests/train/test_distributed.py under `torchrun --nproc_per_node 2`: the real training path,
plus a callback with which each rank reports its world size and a hash of its final LoRA weights."""

import hashlib
import json
import sys
from pathlib import Path

from transformers import TrainerCallback

from data.config import load_config
from train.config import TrainConfig
from train.trainer import train


class RankReport(TrainerCallback):
    def __init__(self, out: Path):
        self.out = out

    def on_train_end(self, args, state, control, model=None, **kwargs):
        lora = hashlib.sha256()
        for name, p in sorted(model.named_parameters()):
            if "lora_" in name:
                lora.update(name.encode() + p.detach().float().cpu().numpy().tobytes())
        rank = args.process_index
        report = {
            "rank": rank,
            "world_size": args.world_size,
            "distributed_type": str(args.distributed_state.distributed_type),
            "lora_sha256": lora.hexdigest(),
            "steps": state.global_step,
        }
        (self.out / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    out = Path(sys.argv[1])
    cfg = load_config(TrainConfig, None, sys.argv[2:])
    train(cfg, callbacks=[RankReport(out)])
