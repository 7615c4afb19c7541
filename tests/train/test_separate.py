"""pairwise_mode: separate: each response judged alone (yes/no), the two scores compared (Bradley-Terry).

The spec is validated; the served verdict cannot depend on the order of the responses; the training loss is
exactly the NLL of the probabilities the scoring core serves; training on the tiny model learns the pairs."""
import math

import pytest
import torch

from data.errors import ConfigError
from data.labels import LabelSpace
from data.spec import load_spec
from serve.hf_backend import HFBackend
from serve.judge import load_judge
from serve.scoring import score_items, separate_probs
from data.schema import JudgeRef
from train.trainer import pair_loss, prepare_run, train
from tests.train.helpers import pairwise_items, tiny_config, write_items

QUIET = lambda *a, **k: None  # noqa: E731
SPEC = "helpfulness-separate"


def test_the_shipped_separate_spec_is_valid_and_answers_yes_or_no():
    spec = load_spec(SPEC)
    assert spec.separate and spec.response_spec().labels == ["yes", "no"] and spec.response_spec().kind == "binary"


@pytest.mark.parametrize("override,field", [
    ("--template=Which is better: {{ response_a }} or {{ response_b }}?", "template"),
    ("--tie_margin=-1", "tie_margin"),
])
def test_separate_spec_errors_name_the_field(override, field):
    with pytest.raises(ConfigError) as exc:
        load_spec(SPEC, [override])
    assert any(p.field == field for p in exc.value.problems), exc.value


def test_separate_mode_is_for_pairwise_judges_only():
    with pytest.raises(ConfigError) as exc:
        load_spec("answer-correctness", ["--pairwise_mode=separate"])
    assert exc.value.first.field == "pairwise_mode"


def test_rao_kupper_probabilities_sum_to_one_and_swap_with_the_responses():
    with_tie, without = LabelSpace("pairwise", ["A", "B", "tie"]), LabelSpace("pairwise", ["A", "B"])
    for sa, sb, m in [(2.0, -1.0, 0.0), (0.3, 0.1, 0.5), (-40.0, 40.0, 1.0)]:
        p = separate_probs(with_tie, sa, sb, m)
        q = separate_probs(with_tie, sb, sa, m)
        assert sum(p.values()) == pytest.approx(1.0) and p["A"] == pytest.approx(q["B"]) and p["tie"] == pytest.approx(q["tie"])
        assert separate_probs(without, sa, sb)["A"] == pytest.approx(1 / (1 + math.exp(-(sa - sb))))
    assert separate_probs(with_tie, 1.0, 1.0, 0.0)["tie"] == pytest.approx(0.0)


def _cfg(tmp_path, model_dir, *overrides, **kw):
    return tiny_config(tmp_path, model_dir, f"--spec={SPEC}", *overrides, **kw)


def test_pair_loss_is_the_nll_of_the_served_probabilities(tmp_path, tiny_model_dir):
    run = prepare_run(_cfg(tmp_path, tiny_model_dir, "--lora.dropout=0", "--data.target=distribution"), progress=QUIET)
    batch = next(iter(run.trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 2 * batch["target_probs"].shape[0]  # two prompts per pair
    model = run.trainer.model.eval()
    with torch.no_grad():
        loss = run.trainer.compute_loss(model, dict(batch)).item()
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    yes, no = run.trainer.label_ids
    rows = torch.arange(len(batch["answer_pos"]))
    score = (logits[rows, batch["answer_pos"], yes] - logits[rows, batch["answer_pos"], no]).tolist()
    space = run.spec.label_space
    nll = []
    for i, t in enumerate(batch["target_probs"].tolist()):
        p = separate_probs(space, score[2 * i], score[2 * i + 1], run.spec.tie_margin)
        target = dict(zip(run.spec.labels, t))
        p_a = target["A"] + 0.5 * target["tie"]  # no tie margin: a tie vote is half a win
        nll.append(-(p_a * math.log(p["A"]) + (1 - p_a) * math.log(p["B"])))
    assert loss == pytest.approx(sum(nll) / len(nll), rel=1e-4)


def test_rao_kupper_loss_with_a_tie_margin_counts_tie_votes():
    inputs = {"answer_pos": torch.tensor([1, 1]), "input_ids": torch.zeros(2, 2, dtype=torch.long),
              "attention_mask": torch.ones(2, 2, dtype=torch.long), "target_probs": torch.tensor([[0.0, 0.0, 1.0]])}

    class Fixed(torch.nn.Module):  # score(a) = score(b): the likeliest verdict is a tie
        def forward(self, input_ids, attention_mask, logits_to_keep, use_cache):
            return type("Out", (), {"logits": torch.tensor([[[2.0, 0.0]], [[2.0, 0.0]]])})()

    loss, n = pair_loss(Fixed(), inputs, [0, 1], ["A", "B", "tie"], tie_margin=1.0)
    p_tie = 1 - 2 / (1 + math.exp(1.0))
    assert n == 1 and loss.item() == pytest.approx(-math.log(p_tie), rel=1e-5)


def test_separate_judge_learns_the_pairs_and_cannot_depend_on_the_order(tmp_path, learnable_model_dir):
    cfg = _cfg(tmp_path, learnable_model_dir, "--max_steps=30", "--learning_rate=2e-2", "--lr_scheduler=constant",
               "--warmup=0", "--lora.dropout=0", "--batch_size=8", n_train=16, dev=False)
    result = train(cfg, progress=QUIET)
    judge = load_judge(result.run_dir)
    assert judge.spec.separate
    backend = HFBackend.load(judge.model_path, judge.adapter_path)
    items = pairwise_items(12, "x", seed=3)
    verdicts = list(score_items(items, judge.spec, backend, backend.tokenizer, judge.ref))
    swapped = list(score_items([i.swapped() for i in items], judge.spec, backend, backend.tokenizer, judge.ref))
    assert sum(v.verdict == i.label for v, i in zip(verdicts, items)) >= 11  # fox beats dog, whichever slot
    for v, s in zip(verdicts, swapped):
        assert v.consistent and v.probs["A"] == pytest.approx(s.probs["B"], abs=1e-6)
        assert v.order_probs["ab"] == v.order_probs["ba"] == v.probs


def test_joint_specs_keep_the_fingerprint_they_had_before_separate_mode_existed():
    import hashlib
    import json

    from data.spec import spec_hash
    spec = load_spec("helpfulness-pairwise")
    old = {k: v for k, v in spec.to_dict().items() if k not in ("pairwise_mode", "tie_margin")}
    assert spec_hash(spec) == hashlib.sha256(json.dumps(old, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    assert spec_hash(load_spec(SPEC)) != spec_hash(load_spec(SPEC, ["--tie_margin=0.5"]))
