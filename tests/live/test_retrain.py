"""`judgeloop retrain` on the tiny model: original + reviewed labels -> a registered, gated candidate;
promoted only with --promote and a passing gate (a gate loosened against the default gate only with
`judgeloop promote --override-loosened-gate --reason`, logged)."""

import json

import yaml

import judgeloop
from data.jsonl import write_jsonl
from judge.registry import Registry
from tests.train.helpers import pairwise_items
from workflows import promotion


def write_configs(tmp_path, spec, model_dir, gates: dict, version: str) -> tuple:
    write_jsonl(tmp_path / "train.jsonl", pairwise_items(12, "t"))
    reviewed = [
        it.model_copy(
            update={"meta": {"review": {"export": "e1", "stratum": "random", "stratum_size": 50, "verdict": "A"}}}
        )
        for it in pairwise_items(8, "r", seed=5)
    ]
    write_jsonl(tmp_path / "reviewed.jsonl", reviewed)
    held_out = [
        it.model_copy(update={"instruction": "Held out: which response is about a fox?"})
        for it in pairwise_items(10, "e", seed=2)
    ]
    write_jsonl(tmp_path / "eval.jsonl", held_out)
    (tmp_path / "train.yaml").write_text(
        yaml.safe_dump(
            {
                "spec": str(spec),
                "base_model": str(model_dir),
                "data": {"train": [str(tmp_path / "train.jsonl")]},
                "max_steps": 2,
                "eval": {"steps": 2},
                "batch_size": 4,
                "learning_rate": 5e-3,
                "logging_steps": 1,
                "lora": {"rank": 4, "alpha": 8},
            }
        )
    )
    (tmp_path / "gates.yaml").write_text(yaml.safe_dump(gates))
    (tmp_path / "retrain.yaml").write_text(
        yaml.safe_dump(
            {
                "train": str(tmp_path / "train.yaml"),
                "reviewed": [str(tmp_path / "reviewed.jsonl")],
                "eval_items": str(tmp_path / "eval.jsonl"),
                "gates": str(tmp_path / "gates.yaml"),
                "engine": "transformers",
                "registry": str(tmp_path.parent / "registry"),
                "out": str(tmp_path / "out"),
                "n_boot": 200,
                "version": version,
            }
        )
    )
    return tmp_path / "retrain.yaml"


OPEN_GATE = {
    "min_n": 1,
    "min_margin_over_baseline": None,
    "min_ci_low": None,
    "min_ceiling_fraction": None,
    "max_incumbent_drop": None,
    "min_swap_consistency": None,
    "min_beyond_length": None,
    "max_ece": None,
    "max_errors": 0,
}


def test_retrain_registers_a_gated_candidate_and_promotes_only_on_a_pass(tiny_specs, serve_model_dir, tmp_path, capsys):
    registry = Registry(tmp_path / "registry")
    (tmp_path / "one").mkdir()
    first = write_configs(tmp_path / "one", tiny_specs["pairwise"], serve_model_dir, OPEN_GATE, "1")
    # ten items pass only a gate with its rules off: registered, but not promoted without a logged override
    assert judgeloop.main(["retrain", str(first), "--promote"]) == 2
    err = capsys.readouterr().err
    assert "refusing to promote tiny-helpfulness 1: its gate was loosened against configs/gates/default.yaml" in err
    candidate = registry.resolve("tiny-helpfulness", "1")
    assert candidate["status"] == "candidate" and promotion.passing_gate(registry, candidate) is None
    promote = ["promote", "tiny-helpfulness", "1", "--registry", str(registry.root), "--override-loosened-gate"]
    assert judgeloop.main([*promote, "--reason", "tiny model: ten held-out items"]) == 0
    assert "is now production" in capsys.readouterr().out
    entry = registry.resolve("tiny-helpfulness", "production")
    assert entry["version"] == "1" and entry["history"][-1]["reason"] == "tiny model: ten held-out items"
    card = json.loads((tmp_path / "one" / "out" / "train" / "card.json").read_text())
    assert "reviewed.jsonl" in json.dumps(card)  # the reviewed labels were trained on
    validation = json.loads((tmp_path / "one" / "out" / "validation.json").read_text())
    assert validation["gate"]["passed"] and validation["judge"]["fingerprint"] == entry["fingerprint"]
    assert validation["n_items"] == 10 and validation["comparison"] is None

    # a second candidate under the default gate (min_n 200 and more): registered and gated, not promoted
    (tmp_path / "two").mkdir()
    strict = {"min_n": 200}
    second = write_configs(tmp_path / "two", tiny_specs["pairwise"], serve_model_dir, strict, "2")
    assert judgeloop.main(["retrain", str(second), "--promote", "--train_overrides.seed=1"]) == 1
    out = capsys.readouterr().out
    assert "not promoted: the gate failed (min_n" in out
    record = registry.load("tiny-helpfulness")
    assert record["production"] == "1" and record["versions"]["2"]["status"] == "candidate"
    two = record["versions"]["2"]
    assert two["validations"][-1]["gate_passed"] is False and promotion.passing_gate(registry, two) is None
    validation = json.loads((tmp_path / "two" / "out" / "validation.json").read_text())
    assert validation["comparison"]["incumbent"]["version"] == "1"  # production was the incumbent
    assert two["fingerprint"] != entry["fingerprint"]


def test_reviewed_items_that_leak_into_validation_are_refused(tiny_specs, serve_model_dir, tmp_path, capsys):
    config = write_configs(tmp_path, tiny_specs["pairwise"], serve_model_dir, OPEN_GATE, "1")
    write_jsonl(tmp_path / "eval.jsonl", pairwise_items(8, "r", seed=5))  # the reviewed items themselves
    assert judgeloop.main(["retrain", str(config)]) == 2
    assert "8 reviewed item(s) are also in eval_items" in capsys.readouterr().err
