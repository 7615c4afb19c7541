"""Run by tests/train/test_fsdp.py under `torchrun --nproc_per_node 2` (CPU, gloo): a tiny LoRA model sharded
with FSDP2 (``fully_shard``, as configs/accelerate/fsdp.yaml does on GPUs) is scored by judge/hf_backend.py, the
code the dev evaluation in the loop runs, and its adapter is gathered and saved the way the Trainer saves under
FSDP (a full state dict, then PEFT's save_pretrained). Each rank reports its scores and the adapter it saw."""

import copy
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from peft import LoraConfig, get_peft_model
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForCausalLM, AutoTokenizer

from data.schema import JudgeRef
from data.spec import load_spec
from judge.hf_backend import HFBackend
from judge.scoring import score_items
from tests.train.helpers import SPEC, pairwise_items
from train.trainer import TrainError, check_adapter_saved


def scores(model, tokenizer, spec, items) -> list[dict]:
    backend = HFBackend(model, tokenizer)
    ref = JudgeRef(name=spec.name, fingerprint="fsdp-test")
    return [v.order_probs for v in score_items(items, spec, backend, tokenizer, ref, both_orders=True)]


def main(model_dir: str, out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    spec = load_spec(SPEC)
    items = pairwise_items(6, "f", seed=3)
    # random lora_B (init_lora_weights=False): the adapter changes the scores, so a dropped one would show
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM"),
    )
    model.eval()
    reference = scores(copy.deepcopy(model), tokenizer, spec, items)
    for layer in model.base_model.model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    sharded = scores(model, tokenizer, spec, items)
    state = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, cpu_offload=True)
    )
    saved = None
    if rank == 0:
        model.save_pretrained(out / "adapter", state_dict=state)
        try:
            check_adapter_saved(model, out / "adapter")
            saved = "complete"
        except TrainError as exc:
            saved = str(exc.problems[0])
    (out / f"rank{rank}.json").write_text(
        json.dumps(
            {
                "rank": rank,
                "world_size": dist.get_world_size(),
                "reference": reference,
                "sharded": sharded,
                "dtensor_params": sum(type(p).__name__ == "DTensor" for p in model.parameters()),
                "saved": saved,
            }
        )
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
