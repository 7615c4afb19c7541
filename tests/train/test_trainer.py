"""Training the tiny random Llama with TRL + PEFT: what is trained, how, and what the run leaves behind."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import TrainerCallback

import judgeloop
from data.config import load_config
from data.errors import ConfigError, DataError
from data.jsonl import read_jsonl
from data.schema import Item
from data.spec import spec_from_dict
from judge.fingerprint import fingerprint
from judge.hf_backend import HFBackend, label_token_ids
from judge.loading import load_judge
from judge.scoring import score_items
from tests.train.helpers import pairwise_items, tiny_config, write_items
from train.config import TrainConfig
from train.data import Source, build_examples
from train.trainer import TrainError, check_adapter_saved, completion_loss, prepare_run, train

QUIET = lambda *a, **k: None  # noqa: E731


class Snapshot(TrainerCallback):
    """Every parameter at the start and at the end of training."""

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def on_train_end(self, args, state, control, model=None, **kw):
        self.after = {n: p.detach().clone() for n, p in model.named_parameters()}


class KillAt(TrainerCallback):
    """Simulates a kill right after the checkpoint of ``step`` is on disk."""

    class Killed(Exception):
        pass

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kw):
        if state.global_step == self.step:
            raise KillAt.Killed(f"killed after step {self.step}")


def verdict_nll(model, examples) -> float:
    """Mean NLL of the verdict token (the first answer token) under ``model``, full vocabulary."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for ex in examples:
            logits = model(input_ids=torch.tensor([ex.input_ids])).logits[0, ex.prompt_len - 1]
            total -= torch.log_softmax(logits.float(), -1)[ex.input_ids[ex.prompt_len]].item()
    return total / len(examples)


def first_batch(run):
    return next(iter(run.trainer.get_train_dataloader()))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """One evaluated run shared by the run-directory, judge and merge tests."""
    tmp = tmp_path_factory.mktemp("trained")
    cfg = tiny_config(tmp, tiny_model_dir, "--max_steps=6", "--eval.steps=3")
    snap = Snapshot()
    result = train(cfg, callbacks=[snap], progress=QUIET)
    return cfg, result, snap


# ------------------------------------------------------------------ what is trained


def test_trl_trains_exactly_our_token_ids(tmp_path, tiny_model_dir):
    run = prepare_run(tiny_config(tmp_path, tiny_model_dir), progress=QUIET)
    prepared = run.trainer.train_dataset
    assert [list(x) for x in prepared["input_ids"]] == [e.input_ids for e in run.examples]
    assert [list(x) for x in prepared["labels"]] == [e.labels for e in run.examples]
    assert not run.trainer.args.padding_free and not run.trainer.args.packing
    batch = first_batch(run)
    assert "attention_mask" in batch and batch["input_ids"].shape[0] == 4  # padded batches, not packed


def test_prompt_tokens_carry_no_loss(tmp_path, tiny_model_dir):
    run = prepare_run(tiny_config(tmp_path, tiny_model_dir, "--lora.dropout=0"), progress=QUIET)
    batch = first_batch(run)
    model = run.trainer.model.eval()
    with torch.no_grad():
        loss = run.trainer.compute_loss(model, dict(batch)).item()
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    supervised = targets != -100
    # exactly the answer tokens (verdict + end of turn: 3 per example here) are supervised
    assert supervised.sum(1).tolist() == [3] * batch["input_ids"].shape[0]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1][supervised].float(), targets[supervised])
    assert loss == pytest.approx(nll.item(), rel=1e-4)
    # changing any prompt token's label cannot change the loss: they are all -100
    prompt_positions = (batch["labels"] == -100) & (batch["attention_mask"] == 1)
    assert prompt_positions.sum() > 10 * batch["input_ids"].shape[0]


def test_training_changes_only_lora_weights_and_lowers_the_verdict_loss(tmp_path, learnable_model_dir):
    tiny_model_dir = learnable_model_dir
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    # float32 whatever the CPU (bf16: auto trains in bfloat16 where the CPU has bf16 math: a looser fit in 8 steps)
    cfg = tiny_config(tmp_path, tiny_model_dir, "--max_steps=8", "--learning_rate=3e-2", "--bf16=false", dev=False)
    snap = Snapshot()
    result = train(cfg, callbacks=[snap], progress=QUIET)
    changed = {n for n in snap.before if not torch.equal(snap.before[n], snap.after[n])}
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_B" in n for n in changed) and any("lora_A" in n for n in changed)
    # the verdict loss on the training examples: base model (= the untrained adapter) vs trained adapter
    spec = spec_from_dict(json.loads((result.run_dir / "judge.json").read_text())["spec"])
    items = list(read_jsonl(cfg.data.train[0], Item))
    examples, _ = build_examples(
        Source("t", "train", Path(cfg.data.train[0]), "", items),
        spec,
        HFBackend.load(str(tiny_model_dir)).tokenizer,
        cfg.data,
        10_000,
    )
    before = verdict_nll(AutoModelForCausalLM.from_pretrained(tiny_model_dir), examples)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), result.run_dir / "adapter")
    after = verdict_nll(tuned, examples)
    assert after < before / 4, (before, after)


def test_lora_layers_adapts_only_the_last_layers(tmp_path, tiny_model_dir):
    run = prepare_run(tiny_config(tmp_path, tiny_model_dir, "--lora.layers=1"), progress=QUIET)
    n_layers = run.trainer.model.config.num_hidden_layers
    adapted = {n.split(".layers.")[1].split(".")[0] for n, p in run.trainer.model.named_parameters() if p.requires_grad}
    assert n_layers > 1 and adapted == {str(n_layers - 1)}
    # every linear module of that layer is adapted (all-linear is expanded to module names)
    kinds = {
        n.split(".lora_A")[0].rsplit(".", 1)[-1]
        for n, p in run.trainer.model.named_parameters()
        if p.requires_grad and "lora_A" in n
    }
    assert {"q_proj", "v_proj", "down_proj"} <= kinds


def test_lora_layers_beyond_the_model_is_a_config_error(tmp_path, tiny_model_dir):
    with pytest.raises(ConfigError, match="cannot adapt the last 99") as err:
        prepare_run(tiny_config(tmp_path, tiny_model_dir, "--lora.layers=99"), progress=QUIET)
    assert err.value.problems[0].field == "lora.layers"


class FailAtStep(TrainerCallback):
    """Raises ``exc`` as a training step begins (what the allocator raises when the batch does not fit)."""

    def __init__(self, exc):
        self.exc = exc

    def on_step_begin(self, args, state, control, **kw):
        raise self.exc


@pytest.mark.parametrize(
    "exc, where, qlora_hint",
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 38.00 GiB"), "GPU", True),
        (
            RuntimeError(
                "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                "you tried to allocate 39661338624 bytes. Error code 12 (Cannot allocate memory)"
            ),
            "CPU",
            False,
        ),
    ],
)
def test_out_of_memory_says_which_setting_to_lower(tmp_path, tiny_model_dir, exc, where, qlora_hint):
    with pytest.raises(TrainError) as err:
        train(tiny_config(tmp_path, tiny_model_dir, "--batch_size=3"), callbacks=[FailAtStep(exc)], progress=QUIET)
    problem = err.value.problems[0]
    assert problem.field == "batch_size"
    assert f"out of {where} memory at batch_size=3" in str(problem)
    assert "lower batch_size" in str(problem) and "gradient_checkpointing=true" in str(problem)
    assert ("lora.qlora=true" in str(problem)) == qlora_hint


def test_other_runtime_errors_are_not_called_out_of_memory(tmp_path, tiny_model_dir):
    with pytest.raises(RuntimeError, match="something else"):
        train(
            tiny_config(tmp_path, tiny_model_dir),
            callbacks=[FailAtStep(RuntimeError("something else"))],
            progress=QUIET,
        )


@pytest.mark.parametrize("wrapped", [False, True])
def test_an_adapter_saved_without_its_tensors_stops_the_run(tmp_path, tiny_model_dir, wrapped):
    """PEFT picks an adapter's tensors by module name: with layers wrapped for activation checkpointing (what FSDP's
    fsdp_activation_checkpointing does) it saves an empty adapter. The run must stop, not ship the base model."""
    from peft import LoraConfig, get_peft_model
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        apply_activation_checkpointing,
        checkpoint_wrapper,
    )
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    if wrapped:
        apply_activation_checkpointing(
            model,
            checkpoint_wrapper_fn=checkpoint_wrapper,
            check_fn=lambda m: type(m).__name__.endswith("DecoderLayer"),
        )
    model.save_pretrained(tmp_path / "adapter")
    if not wrapped:
        check_adapter_saved(model, tmp_path / "adapter")
        return
    with pytest.raises(TrainError, match="holds 0 of the") as err:
        check_adapter_saved(model, tmp_path / "adapter")
    assert "fsdp_activation_checkpointing: false" in str(err.value.problems[0])


# ------------------------------------------------------------------ soft targets


def test_completion_loss_equals_the_full_logit_token_loss(tmp_path, tiny_model_dir):
    run = prepare_run(tiny_config(tmp_path, tiny_model_dir, "--lora.dropout=0"), progress=QUIET)
    batch = first_batch(run)
    model = run.trainer.model.eval()
    ids = label_token_ids(run.trainer.processing_class, run.spec.labels)
    first = (batch["labels"] != -100).int().argmax(1)
    verdict = batch["labels"][torch.arange(len(first)), first]
    onehot = torch.stack([(torch.tensor(ids) == v).float() for v in verdict])
    with torch.no_grad():
        # the model's own loss: logits at every position, labels -100 on the prompt
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        hard, n = completion_loss(model, dict(batch), ids)
        soft, _ = completion_loss(model, {**batch, "target_probs": onehot}, ids)
    assert n == 3 * len(first)
    assert hard.item() == pytest.approx(full.item(), rel=1e-5) and soft.item() == pytest.approx(full.item(), rel=1e-5)


def _label_dist(run_dir, items):
    judge = load_judge(run_dir)
    backend = HFBackend.load(judge.model_path, judge.adapter_path)
    verdicts = list(score_items(items, judge.spec, backend, backend.tokenizer, judge.ref, both_orders=False))
    return {lab: sum(v.probs[lab] for v in verdicts) / len(verdicts) for lab in judge.spec.labels}


@pytest.mark.parametrize(
    "target,expected",
    [("distribution", {"A": 2 / 3, "B": 1 / 3, "tie": 0.0}), ("label", {"A": 1.0, "B": 0.0, "tie": 0.0})],
)
def test_soft_targets_teach_the_annotators_distribution(tmp_path, learnable_model_dir, target, expected):
    # every item: two annotators say A, one says B; the aggregate is A
    items = [it.model_copy(update={"labels": ["A", "A", "B"], "label": "A"}) for it in pairwise_items(8)]
    cfg = load_config(
        TrainConfig,
        None,
        [
            "--spec=helpfulness-pairwise",
            f"--base_model={learnable_model_dir}",
            f"--output_dir={tmp_path / 'run'}",
            f"--data.train={write_items(tmp_path / 'items.jsonl', items)}",
            f"--data.target={target}",
            "--data.both_orders=false",
            "--max_steps=40",
            "--batch_size=8",
            "--learning_rate=2e-2",
            "--lr_scheduler=constant",
            "--warmup=0",
            "--lora.rank=4",
            "--lora.dropout=0",
            "--eval.steps=100",
        ],
    )
    train(cfg, progress=QUIET)
    dist = _label_dist(tmp_path / "run", items)
    for label, p in expected.items():  # seen: (0.73, 0.26, 0.005) soft vs (1.0, 0.0, 0.0) hard
        assert dist[label] == pytest.approx(p, abs=0.1), dist


# ------------------------------------------------------------------ eval in the loop, resume


def test_dev_agreement_is_logged_beside_the_loss_and_the_best_checkpoint_is_kept(trained):
    cfg, result, _ = trained
    log = [json.loads(line) for line in (result.run_dir / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "eval_agreement" in r]
    assert [r["step"] for r in evals] == [3, 6]
    assert all({"eval_swap_consistency", "eval_label_nll", "eval_n"} <= set(r) for r in evals)
    assert any("loss" in r for r in log)
    best = max(evals, key=lambda r: (r["eval_agreement"], -r["step"]))
    assert result.kept == {"step": best["step"], "agreement": best["eval_agreement"], "rule": "best"}
    kept = load_file(result.run_dir / "checkpoints" / f"checkpoint-{best['step']}" / "adapter_model.safetensors")
    final = load_file(result.run_dir / "adapter" / "adapter_model.safetensors")
    assert kept.keys() == final.keys() and all(torch.equal(kept[k], final[k]) for k in kept)


def test_keep_last_makes_the_last_checkpoint_the_judge(tmp_path, tiny_model_dir):
    # learning rate high enough that the adapter moves between the two evaluations
    cfg = tiny_config(
        tmp_path, tiny_model_dir, "--max_steps=6", "--eval.steps=3", "--eval.keep=last", "--learning_rate=1e-2"
    )
    result = train(cfg, progress=QUIET)
    log = [json.loads(line) for line in (result.run_dir / "train_log.jsonl").read_text().splitlines()]
    last = [r for r in log if "eval_agreement" in r][-1]
    assert result.kept == {"step": 6, "agreement": last["eval_agreement"], "rule": "last"}
    final = load_file(result.run_dir / "adapter" / "adapter_model.safetensors")
    for step, same in ((6, True), (3, False)):
        ckpt = load_file(result.run_dir / "checkpoints" / f"checkpoint-{step}" / "adapter_model.safetensors")
        assert all(torch.equal(ckpt[k], final[k]) for k in final) == same
    card = json.loads((result.run_dir / "card.json").read_text())
    assert card["training"]["kept_checkpoint"]["rule"] == "last"
    assert "kept checkpoint: step 6 (the last)" in (result.run_dir / "card.md").read_text()


def test_the_card_names_the_code_that_trained_not_the_head_when_training_ended(tmp_path, tiny_model_dir, monkeypatch):
    """A long run spans commits (a leave-one-source-out fold trains for an hour): the card records HEAD as it
    was when training started, once."""
    import train.trainer as trainer

    heads = iter(["abc123 (at the start)", "def456 (committed meanwhile)"])
    monkeypatch.setattr(trainer, "git_commit", lambda: next(heads))
    result = train(tiny_config(tmp_path, tiny_model_dir, "--max_steps=2", dev=False), progress=QUIET)
    card = json.loads((result.run_dir / "card.json").read_text())
    assert card["git_commit"] == "abc123 (at the start)"
    assert "`abc123 (at the start)`" in (result.run_dir / "card.md").read_text()


def test_early_stopping_stops_when_dev_agreement_does_not_improve(tmp_path, tiny_model_dir):
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "--max_steps=40",
        "--eval.steps=2",
        "--learning_rate=1e-12",
        "--eval.early_stopping_patience=1",
    )
    assert train(cfg, progress=QUIET).steps == 4


def test_resume_after_a_kill_gives_the_same_adapter(tmp_path, tiny_model_dir):
    def cfg(name):
        return tiny_config(tmp_path / name, tiny_model_dir, "--max_steps=6", "--eval.steps=3", dev=False)

    (tmp_path / "whole").mkdir()
    (tmp_path / "killed").mkdir()
    whole = train(cfg("whole"), progress=QUIET)
    killed_cfg = cfg("killed")
    with pytest.raises(KillAt.Killed):
        train(killed_cfg, callbacks=[KillAt(3)], progress=QUIET)
    run_dir = tmp_path / "killed" / "run"
    assert (run_dir / "checkpoints" / "checkpoint-3").is_dir() and not (run_dir / "judge.json").exists()
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg("killed"), progress=QUIET)
    resumed = train(cfg("killed"), resume=True, progress=QUIET)
    assert resumed.steps == whole.steps == 6
    a = load_file(whole.run_dir / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed.run_dir / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps.count(3) == 1  # the killed run's lines after its checkpoint are gone


def test_resume_refuses_a_changed_config(tmp_path, tiny_model_dir):
    train(tiny_config(tmp_path, tiny_model_dir, "--max_steps=2", "--eval.steps=2", dev=False), progress=QUIET)
    with pytest.raises(ConfigError, match="different config") as err:
        train(
            tiny_config(tmp_path, tiny_model_dir, "--max_steps=2", "--eval.steps=2", "--lora.rank=8", dev=False),
            resume=True,
            progress=QUIET,
        )
    assert err.value.first.field == "lora.rank"


# ------------------------------------------------------------------ the run directory, merge


def test_the_run_directory_is_a_complete_judge(trained, tiny_model_dir):
    cfg, result, _ = trained
    run = result.run_dir
    for name in (
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "adapter/tokenizer.json",
        "spec.yaml",
        "config.yaml",
        "train_log.jsonl",
        "card.json",
        "card.md",
        "judge.json",
        "data_report.json",
        "data_report.md",
    ):
        assert (run / name).is_file(), name
    judge = load_judge(run)
    spec = spec_from_dict(yaml.safe_load((run / "spec.yaml").read_text()))
    assert judge.fingerprint == result.fingerprint == fingerprint(spec, str(tiny_model_dir), run / "adapter")
    assert judge.adapter_path == str(run / "adapter") and judge.model_path == str(tiny_model_dir)
    card = json.loads((run / "card.json").read_text())
    assert card["judge"]["fingerprint"] == judge.fingerprint
    assert [row["name"] for row in card["data"]["train"]] == cfg.data.train
    assert all(len(row["sha256"]) == 64 and row["items"] > 0 for row in card["data"]["train"] + card["data"]["dev"])
    assert [p["step"] for p in card["dev_curve"]] == [3, 6]
    assert {"torch", "transformers", "peft", "trl"} <= set(card["versions"]) and "git_commit" in card
    assert card["config"]["lora"]["rank"] == 4
    md = (run / "card.md").read_text()
    assert judge.fingerprint in md and "Dev curve" in md
    # the resolved config reloads as the same config
    assert load_config(TrainConfig, run / "config.yaml") == cfg


def test_merged_model_gives_the_adapters_verdicts_and_keeps_the_fingerprint(trained, tmp_path):
    _, result, _ = trained
    out = tmp_path / "merged"
    assert judgeloop.main(["merge", str(result.run_dir), "--out", str(out)]) == 0
    adapter_judge, merged_judge = load_judge(result.run_dir), load_judge(out)
    meta = json.loads((out / "judge.json").read_text())
    assert merged_judge.fingerprint == adapter_judge.fingerprint and merged_judge.adapter_path is None
    assert meta["merged_from"] == str(result.run_dir.resolve())
    from data.provenance import sha256_file

    assert meta["weights_sha256"] == {"model.safetensors": sha256_file(out / "model.safetensors")}
    items = pairwise_items(12, "m", seed=7)
    lora = HFBackend.load(adapter_judge.model_path, adapter_judge.adapter_path)
    plain = HFBackend.load(merged_judge.model_path)
    a = list(score_items(items, adapter_judge.spec, lora, lora.tokenizer, adapter_judge.ref))
    b = list(score_items(items, merged_judge.spec, plain, plain.tokenizer, merged_judge.ref))
    for va, vb in zip(a, b):
        assert va.verdict == vb.verdict and va.consistent == vb.consistent
        for lab in va.probs:
            assert math.isclose(va.probs[lab], vb.probs[lab], abs_tol=1e-4)
            for order in ("ab", "ba"):
                assert math.isclose(va.order_probs[order][lab], vb.order_probs[order][lab], abs_tol=1e-4)


# ------------------------------------------------------------------ bad input stops before training


ITEM = (
    '{"id": "x1", "group": "g", "kind": "pairwise", "instruction": "i", "response_a": "a", "response_b": "b", '
    '"label": "%s"}\n'
)


@pytest.mark.parametrize(
    "case,content,exclude,expected",
    [
        ("empty split", "", "[]", "items.jsonl: file is empty"),
        (
            "label outside the label space",
            ITEM % "C",
            "[]",
            "field 'label': item 'x1': label 'C' is not one of A, B, tie",
        ),
        ("nothing left after exclusion", ITEM % "tie", "[tie]", "field 'data.train': no training examples left"),
    ],
)
def test_bad_data_stops_before_training_with_one_message(
    tmp_path, tiny_model_dir, capsys, case, content, exclude, expected
):
    items = tmp_path / "items.jsonl"
    items.write_text(content)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"spec: helpfulness-pairwise\nbase_model: {tiny_model_dir}\noutput_dir: {tmp_path / 'run'}\n"
        f"data:\n  train: [{items}]\n  exclude_labels: {exclude}\nmax_steps: 2\n"
    )
    assert judgeloop.main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_unknown_target_module_stops_before_training(tmp_path, tiny_model_dir):
    cfg = tiny_config(tmp_path, tiny_model_dir, "--lora.target_modules=[qq_proj]", dev=False)
    with pytest.raises(ConfigError) as err:
        train(cfg, progress=QUIET)
    assert err.value.first.field == "lora.target_modules"
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_dev_split_without_labels_is_refused(tmp_path, tiny_model_dir):
    cfg = tiny_config(tmp_path, tiny_model_dir)
    dev = [it.model_copy(update={"label": "tie", "labels": []}) for it in pairwise_items(3, "d")]
    cfg.data.dev = [write_items(tmp_path / "dev.jsonl", dev)]
    with pytest.raises(DataError, match="no item with a human label"):
        train(cfg, progress=QUIET)
