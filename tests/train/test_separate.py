"""pairwise_mode: separate: each response judged alone (yes/no), the two scores compared (Bradley-Terry).

The spec is validated; the served verdict cannot depend on the order of the responses; the training loss is
exactly the NLL of the probabilities the scoring core serves; training on the tiny model learns the pairs."""

import math

import pytest
import torch

from data.errors import ConfigError
from data.labels import LabelSpace
from data.spec import load_spec
from judge.hf_backend import HFBackend
from judge.loading import load_judge
from judge.scoring import score_items, separate_probs
from tests.train.helpers import pairwise_items, tiny_config
from train.trainer import pair_loss, prepare_run, train

QUIET = lambda *a, **k: None  # noqa: E731
SPEC = "helpfulness-separate"


def test_the_shipped_separate_spec_is_valid_and_answers_yes_or_no():
    spec = load_spec(SPEC)
    assert spec.separate and spec.response_spec().labels == ["yes", "no"] and spec.response_spec().kind == "binary"


@pytest.mark.parametrize(
    "override,field",
    [
        ("--template=Which is better: {{ response_a }} or {{ response_b }}?", "template"),
        ("--tie_margin=-1", "tie_margin"),
    ],
)
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
        assert (
            sum(p.values()) == pytest.approx(1.0)
            and p["A"] == pytest.approx(q["B"])
            and p["tie"] == pytest.approx(q["tie"])
        )
        assert separate_probs(without, sa, sb)["A"] == pytest.approx(1 / (1 + math.exp(-(sa - sb))))
    assert separate_probs(with_tie, 1.0, 1.0, 0.0)["tie"] == pytest.approx(0.0)


def _cfg(tmp_path, model_dir, *overrides, **kw):
    return tiny_config(tmp_path, model_dir, f"--spec={SPEC}", *overrides, **kw)


def test_pair_loss_is_the_nll_of_the_served_probabilities(tmp_path, tiny_model_dir):
    run = prepare_run(_cfg(tmp_path, tiny_model_dir, "--lora.dropout=0", "--data.target=distribution"), progress=QUIET)
    batch = next(iter(run.trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 2 * batch["target_probs"].shape[0]  # one group per pair: two prompts
    # batches are grouped by their padded width: the longest prompt of each example
    assert run.trainer._get_train_sampler().lengths == [max(e.segments) for e in run.examples]
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
        p = separate_probs(space, score[batch["pair_a"][i]], score[batch["pair_b"][i]], run.spec.tie_margin)
        target = dict(zip(run.spec.labels, t))
        p_a = target["A"] + 0.5 * target["tie"]  # no tie margin: a tie vote is half a win
        nll.append(-(p_a * math.log(p["A"]) + (1 - p_a) * math.log(p["B"])))
    assert loss == pytest.approx(sum(nll) / len(nll), rel=1e-4)


def test_rao_kupper_loss_with_a_tie_margin_counts_tie_votes():
    inputs = {
        "answer_pos": torch.tensor([1, 1]),
        "input_ids": torch.zeros(2, 2, dtype=torch.long),
        "attention_mask": torch.ones(2, 2, dtype=torch.long),
        "target_probs": torch.tensor([[0.0, 0.0, 1.0]]),
        "pair_a": torch.tensor([0]),
        "pair_b": torch.tensor([1]),
    }

    class Fixed(torch.nn.Module):  # score(a) = score(b): the likeliest verdict is a tie
        def forward(self, input_ids, attention_mask, logits_to_keep, use_cache):
            return type("Out", (), {"logits": torch.tensor([[[2.0, 0.0]], [[2.0, 0.0]]])})()

    loss, n = pair_loss(Fixed(), inputs, [0, 1], ["A", "B", "tie"], tie_margin=1.0)
    p_tie = 1 - 2 / (1 + math.exp(1.0))
    assert n == 1 and loss.item() == pytest.approx(-math.log(p_tie), rel=1e-5)


def test_separate_judge_learns_the_pairs_and_cannot_depend_on_the_order(tmp_path, learnable_model_dir):
    cfg = _cfg(
        tmp_path,
        learnable_model_dir,
        "--max_steps=30",
        "--learning_rate=2e-2",
        "--lr_scheduler=constant",
        "--warmup=0",
        "--lora.dropout=0",
        "--batch_size=8",
        n_train=16,
        dev=False,
    )
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
    old = {k: v for k, v in spec.to_dict().items() if k not in ("pairwise_mode", "tie_margin", "prompt_format")}
    assert spec_hash(spec) == hashlib.sha256(json.dumps(old, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    assert spec_hash(load_spec(SPEC)) != spec_hash(load_spec(SPEC, ["--tie_margin=0.5"]))


def _round_robin(group: str, responses: list[str], start: int = 0) -> list:
    """Every pair of the responses of one instruction, the earlier one labelled the winner."""
    from data.schema import Item

    pairs = [(i, j) for i in range(len(responses)) for j in range(i + 1, len(responses))]
    return [
        Item(
            id=f"{group}-{start + k}",
            group=group,
            kind="pairwise",
            instruction=f"Say something ({group}).",
            response_a=responses[i],
            response_b=responses[j],
            labels=["A", "A", "B"],
            label="A",
        )
        for k, (i, j) in enumerate(pairs)
    ]


def test_each_distinct_response_of_a_group_is_one_prompt_and_groups_split_at_the_cap(tokenizer):
    from pathlib import Path

    from train.config import DataOptions
    from train.data import Source, build_examples

    items = _round_robin("g1", ["one", "two", "three", "four"]) + _round_robin("g2", ["five", "six"])
    spec = load_spec(SPEC)
    build = lambda cap: build_examples(
        Source("t", "train", Path("t.jsonl"), "0" * 64, items),
        spec,
        tokenizer,  # noqa: E731
        DataOptions(max_group_responses=cap),
        10_000,
    )[0]
    grouped = build(8)
    assert [len(e.segments) for e in grouped] == [4, 2] and [len(e.pairs) for e in grouped] == [6, 1]
    for e in grouped:  # every segment is a distinct prompt, and the pairs index them as the items say
        prompts = [tuple(e.input_ids[sum(e.segments[:k]) : sum(e.segments[: k + 1])]) for k in range(len(e.segments))]
        assert len(set(prompts)) == len(prompts) and sum(e.segments) == len(e.input_ids)
    assert grouped[0].pairs == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    split = build(3)
    assert all(len(e.segments) <= 3 for e in split) and sum(len(e.pairs) for e in split) == 7
    assert [len(e.segments) for e in build(2)] == [2] * 7


def test_grouping_changes_the_cost_not_the_loss(tmp_path, tiny_model_dir, tokenizer):
    """The loss of a batch of groups equals the loss of the same pairs each in its own example: a shared prompt is
    scored once and compared in every pair it is in."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    from train.config import DataOptions
    from train.data import Source, build_examples, label_first_ids
    from train.trainer import JudgeCollator, to_dataset

    items = _round_robin("g1", ["one", "two", "three", "four"]) + _round_robin("g2", ["five", "six", "seven"])
    spec = load_spec(SPEC)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    collate = JudgeCollator(tokenizer.pad_token_id)
    losses, rows = [], []
    for cap in (8, 2):
        examples, _ = build_examples(
            Source("t", "train", Path("t.jsonl"), "0" * 64, items),
            spec,
            tokenizer,
            DataOptions(max_group_responses=cap, target="distribution"),
            10_000,
        )
        batch = collate(list(to_dataset(examples)))
        with torch.no_grad():
            loss, n = pair_loss(model, batch, label_first_ids(tokenizer, spec), spec.labels)
        losses.append(loss.item())
        rows.append(batch["input_ids"].shape[0])
        assert n == 9
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert rows == [7, 18]  # 7 distinct responses, against two prompts for each of the 9 pairs


def test_length_balance_by_weight_keeps_every_pair_and_evens_the_sides(tokenizer):
    from pathlib import Path

    from train.config import DataOptions
    from train.data import Source, build_examples, length_weights, select_items

    long_, short = "a long and detailed answer " * 4, "short"
    from data.schema import Item

    items = [
        Item(
            id=f"i{k}",
            group=f"g{k}",
            kind="pairwise",
            instruction="Q?",
            response_a=long_,
            response_b=short,
            labels=[lab],
            label=lab,
        )
        for k, lab in enumerate("AAAAAAB")
    ]  # the longer wins 6 of 7
    opts = DataOptions(balance_method="weight")
    selected, _ = select_items(items, load_spec(SPEC), opts, "t.jsonl")
    weights = length_weights(selected)
    assert weights[:6] == [pytest.approx(7 / 12)] * 6 and weights[6] == pytest.approx(3.5)
    assert sum(weights) == pytest.approx(7)
    src = Source("t", "train", Path("t.jsonl"), "0" * 64, items)
    examples, report = build_examples(src, load_spec(SPEC), tokenizer, opts, 10_000, balance_length=True)
    assert report.used == 7 and [w for e in examples for w in e.pair_weights] == pytest.approx(weights)
    dropped, _ = build_examples(src, load_spec(SPEC), tokenizer, DataOptions(), 10_000, balance_length=True)
    assert len(dropped) == 2  # drop keeps one pair of each side
    with pytest.raises(ConfigError) as exc:  # joint mode trains tokens, not weighted pairs
        build_examples(src, load_spec("helpfulness-pairwise"), tokenizer, opts, 10_000, balance_length=True)
    assert exc.value.first.field == "data.balance_method"


def test_pair_weights_scale_each_pair_loss():
    inputs = {
        "answer_pos": torch.tensor([1, 1, 1]),
        "input_ids": torch.zeros(3, 2, dtype=torch.long),
        "attention_mask": torch.ones(3, 2, dtype=torch.long),
        "target_probs": torch.tensor([[1.0, 0.0], [1.0, 0.0]]),
        "pair_a": torch.tensor([0, 2]),
        "pair_b": torch.tensor([1, 1]),
    }

    class Fixed(torch.nn.Module):  # scores 1, 0, -1
        def forward(self, input_ids, attention_mask, logits_to_keep, use_cache):
            return type("Out", (), {"logits": torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 1.0]]])})()

    nll = [-math.log(1 / (1 + math.exp(-1.0))), -math.log(1 / (1 + math.exp(1.0)))]
    plain, _ = pair_loss(Fixed(), inputs, [0, 1], ["A", "B"])
    weighted, _ = pair_loss(Fixed(), {**inputs, "pair_weight": torch.tensor([1.5, 0.5])}, [0, 1], ["A", "B"])
    assert plain.item() == pytest.approx(sum(nll) / 2, rel=1e-5)
    assert weighted.item() == pytest.approx((1.5 * nll[0] + 0.5 * nll[1]) / 2, rel=1e-5)


def test_the_data_report_says_how_separate_mode_trains_and_what_the_weights_make_of_length(tokenizer):
    from pathlib import Path

    from data.schema import Item
    from train.config import DataOptions
    from train.data import Source, build_examples, report_table

    items = [
        Item(
            id=f"i{k}",
            group=f"g{k}",
            kind="pairwise",
            instruction="Q?",
            response_a="a long answer " * 4,
            response_b="short",
            labels=[lab],
            label=lab,
        )
        for k, lab in enumerate("AAAB")
    ]
    opts = DataOptions(balance_method="weight")
    _, report = build_examples(
        Source("t", "train", Path("t.jsonl"), "0" * 64, items),
        load_spec(SPEC),
        tokenizer,
        opts,
        10_000,
        balance_length=True,
    )
    assert report.longer_preferred == pytest.approx(0.75) and report.longer_weight == pytest.approx(0.5)
    table = report_table([report], load_spec(SPEC), opts)
    assert "each response judged alone" in table and "both orders" not in table and "75% (weighted 50%)" in table


def test_length_bins_balance_each_size_of_length_gap(tokenizer):
    # globally balanced (the longer wins 4 of 8), but the longer wins 1 of 4 near-equal pairs and 3 of 4 unequal ones:
    # one bin leaves 'a large gap means the longer wins' to learn, two bins take it away
    from data.config import load_config
    from data.schema import Item
    from train.config import DataOptions, TrainConfig
    from train.data import balance_by_length, length_gap_bins, length_weights, select_items

    def pair(k, a, b, label):
        return Item(
            id=f"i{k}",
            group=f"g{k}",
            kind="pairwise",
            instruction="Q?",
            response_a=a,
            response_b=b,
            labels=[label],
            label=label,
        )

    near = [pair(k, "x" * 11, "x" * 10, lab) for k, lab in enumerate("ABBB")]  # A (longer) wins once
    far = [pair(4 + k, "x" * 100, "x" * 10, lab) for k, lab in enumerate("AAAB")]  # A wins three times
    tie = pair(8, "x" * 50, "x" * 5, "tie")
    selected, _ = select_items(near + far + [tie], load_spec(SPEC), DataOptions(), "t.jsonl")
    assert length_gap_bins(selected, 2) == [0] * 4 + [1] * 4 + [None]
    assert length_weights(selected) == [1.0] * 9
    weights = length_weights(selected, bins=2)
    assert weights == pytest.approx([2, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 2, 1])
    # each bin keeps its total weight, and its longer-won side weighs as much as its shorter-won side
    assert sum(weights[:4]) == pytest.approx(4) and sum(weights[4:8]) == pytest.approx(4)
    assert weights[0] == pytest.approx(sum(weights[1:4])) and weights[7] == pytest.approx(sum(weights[4:7]))
    kept, dropped = balance_by_length(selected, bins=2)
    assert dropped == 4 and sorted(item.label for item, _, _ in kept) == ["A", "A", "B", "B", "tie"]
    assert balance_by_length(selected)[1] == 0
    with pytest.raises(ConfigError) as exc:
        load_config(
            TrainConfig, None, ["--spec=helpfulness-separate", "--data.length_bins=0", "--data.train=[pandalm]"]
        )
    assert "data.length_bins" in str(exc.value)


def test_separate_mode_reports_truncated_prompts_not_groups(tokenizer):
    from pathlib import Path

    from data.schema import Item
    from train.config import DataOptions
    from train.data import Source, build_examples

    spec = load_spec(SPEC)
    spec.max_prompt_tokens = 300
    long_ = "The quick brown fox jumps over the lazy dog. " * 60
    # one instruction, three responses, two of them too long: one group, two truncated prompts
    items = [
        Item(
            id=f"i{k}",
            group="g",
            kind="pairwise",
            instruction="Q?",
            response_a=a,
            response_b=b,
            labels=["A"],
            label="A",
        )
        for k, (a, b) in enumerate([(long_, "short"), (long_ + "!", "short")])
    ]
    examples, report = build_examples(
        Source("t", "train", Path("t.jsonl"), "0" * 64, items), spec, tokenizer, DataOptions(), 10_000
    )
    assert len(examples) == 1 and len(examples[0].segments) == 3
    assert report.truncated == 2 and report.tokens_cut > 0


def test_languages_and_max_items_pick_a_fixed_part_of_a_source(tokenizer):
    from pathlib import Path

    from data.config import load_config
    from data.schema import Item
    from train.config import DataOptions, TrainConfig
    from train.data import Source, build_examples

    items = [
        Item(
            id=f"i{k}",
            group=f"g{k // 2}",
            kind="pairwise",
            instruction=f"Q{k // 2}?",
            response_a=f"a{k}",
            response_b=f"bb{k}",
            labels=["A"],
            label="A",
            meta={"language": "en" if k < 16 else "zh"},
        )
        for k in range(20)
    ]  # 10 groups of 2; the last 2 groups are not English
    opts = DataOptions(languages=["en"], max_items={"mix": 7})
    src = lambda split: Source("mix", split, Path("t.jsonl"), "0" * 64, items)  # noqa: E731
    _, report = build_examples(src("train"), load_spec(SPEC), tokenizer, opts, 10_000)
    assert report.skipped == {"language zh": 4, "over max_items (7)": 10} and report.used == 6  # 3 whole groups
    again, _ = build_examples(src("train"), load_spec(SPEC), tokenizer, opts, 10_000)
    first, _ = build_examples(src("train"), load_spec(SPEC), tokenizer, opts, 10_000)
    assert [e.item_id for e in again] == [e.item_id for e in first]
    _, dev = build_examples(src("dev"), load_spec(SPEC), tokenizer, opts, 10_000)  # the cap is for training only
    assert dev.used == 16 and dev.skipped == {"language zh": 4}
    with pytest.raises(ConfigError) as exc:
        load_config(
            TrainConfig,
            None,
            ["--spec=helpfulness-separate", "--data.train=[pandalm]", "--data.max_items={llmeval2: 0}"],
        )
    assert {p.field for p in exc.value.problems} == {"data.max_items.llmeval2"}


def test_score_length_correlation_is_taken_within_each_instruction():
    from train.trainer import score_length_correlation

    log_chars = torch.tensor([1.0, 2.0, 3.0, 5.0, 6.0])
    group = torch.tensor([0, 0, 0, 1, 1])
    # within each group the score rises with length, though group 1's scores are all lower than group 0's
    assert score_length_correlation(
        torch.tensor([0.0, 1.0, 2.0, -9.0, -8.0]), group, log_chars
    ).item() == pytest.approx(1.0)
    assert score_length_correlation(
        torch.tensor([2.0, 1.0, 0.0, -8.0, -9.0]), group, log_chars
    ).item() == pytest.approx(-1.0)
    assert score_length_correlation(torch.tensor([1.0, 1.0, 1.0, 4.0, 4.0]), group, log_chars).item() == 0.0


def test_length_penalty_adds_the_squared_correlation_and_is_logged(tmp_path, tiny_model_dir):
    inputs = {
        "answer_pos": torch.tensor([1, 1, 1]),
        "input_ids": torch.zeros(3, 2, dtype=torch.long),
        "attention_mask": torch.ones(3, 2, dtype=torch.long),
        "target_probs": torch.tensor([[1.0, 0.0], [1.0, 0.0]]),
        "pair_a": torch.tensor([0, 1]),
        "pair_b": torch.tensor([1, 2]),
        "row_group": torch.tensor([0, 0, 0]),
        "row_log_chars": torch.tensor([3.0, 2.0, 1.0]),
    }

    class Fixed(torch.nn.Module):  # scores 1, 0, -1: the longest response scores highest
        def forward(self, input_ids, attention_mask, logits_to_keep, use_cache):
            return type("Out", (), {"logits": torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 1.0]]])})()

    stats: dict = {}
    plain, _ = pair_loss(Fixed(), inputs, [0, 1], ["A", "B"], stats=stats)
    penalised, _ = pair_loss(Fixed(), inputs, [0, 1], ["A", "B"], length_penalty=0.5)
    assert stats["score_length_corr"] == pytest.approx(1.0)
    assert penalised.item() == pytest.approx(plain.item() + 0.5, rel=1e-5)
    # the run logs the correlation beside the loss; a joint-mode spec cannot take the penalty
    result = train(
        _cfg(tmp_path, tiny_model_dir, "--max_steps=2", "--logging_steps=1", "--data.length_penalty=1", dev=False),
        progress=QUIET,
    )
    import json

    logged = [json.loads(line) for line in (result.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert any("score_length_corr" in row for row in logged)
    card = json.loads((result.run_dir / "card.json").read_text())  # the card says how much scores follow length
    assert -1 <= card["training"]["score_length_corr"] <= 1
    assert "scores follow response length: r = " in (result.run_dir / "card.md").read_text()
    with pytest.raises(ConfigError) as exc:
        tiny_config(tmp_path, tiny_model_dir, "--spec=helpfulness-pairwise", "--data.length_penalty=1")
    assert exc.value.first.field == "data.length_penalty"
