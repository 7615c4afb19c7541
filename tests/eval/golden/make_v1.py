"""How the files in this folder were made: validation results written by the code *before* the result
became a typed model (commit b678963), kept so that tests/eval/test_golden.py can check that files
written then still load, round-trip, gate and report as they did.

The files were made by running this script on the old code:

    git worktree add --detach /tmp/old b678963
    cp tests/eval/golden/make_v1.py /tmp/old/make_v1.py
    cd "$(mktemp -d)" && JUDGELOOP_REGISTRY=$PWD/registry PYTHONPATH=/tmp/old python /tmp/old/make_v1.py OUT_DIR

It runs on the current code too (the only difference it bridges: the gate record is a dict in the old
code and a model in the new), and test_golden.py runs it there to check that the current code writes
the same results, gates and reports as the old code did.

Writes into OUT_DIR:
- validation-pairwise-v1.json: `judgeloop eval` (verdicts with probabilities in both orders, three
  annotators, a reference judge, an incumbent) then `judgeloop gate` with configs/gates/default.yaml;
  report-pairwise-v1.md: `judgeloop report` of it (Markdown); summary-pairwise-v1.json: the report's
  sentences;
- validation-binary-v1.json: `eval.harness.evaluate` on binary items with one annotator and verdicts
  without probabilities (no human ceiling, bias {}, no length control, calibration with a note),
  with an injection section from `eval.injection.measure` and a scripted scorer; not gated;
  report-binary-v1.md, summary-binary-v1.json likewise; gate-binary-v1.json: what `eval.gate.check`
  with the default GateConfig made of it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import judgeloop
from data.jsonl import write_jsonl
from data.paths import CONFIGS_DIR
from data.schema import Item, JudgeRef, Verdict
from data.spec import load_spec
from eval.gate import GateConfig, check, read_result, write_result
from eval.harness import evaluate
from eval.injection import measure
from eval.report import render_markdown, summary
from tests.eval.helpers import noisy_judge, pairwise_items


def pairwise(out: Path) -> None:
    items = pairwise_items(40, seed=3)
    write_jsonl("test.jsonl", items)
    Path("manifest.json").write_text(json.dumps({"dataset": "constructed"}))
    shutil.copy(CONFIGS_DIR / "gates" / "default.yaml", "gates.yaml")
    write_jsonl("judge.jsonl", noisy_judge(items, skill=1.2, seed=1, name="helpful"))
    write_jsonl("ref.jsonl", noisy_judge(items, skill=0.8, seed=2, fingerprint="e" * 64, name="ref"))
    write_jsonl("incumbent.jsonl", noisy_judge(items, skill=1.0, seed=3, fingerprint="0" * 64, name="helpful"))
    argv = [
        "eval",
        "--verdicts=judge.jsonl",
        "--items=test.jsonl",
        "--spec=helpfulness-pairwise",
        "--reference=ref=ref.jsonl",
        "--incumbent=incumbent.jsonl",
        "--judge-version=2",
        "--n-boot=50",
        "--out=eval",
    ]
    assert judgeloop.main(argv) == 0
    assert judgeloop.main(["gate", "eval/validation.json", "--gates=gates.yaml", "--min_n=20"]) in (0, 1)
    shutil.copy("eval/validation.json", out / "validation-pairwise-v1.json")
    result = read_result("eval/validation.json")
    (out / "report-pairwise-v1.md").write_text(render_markdown(result), encoding="utf-8")
    (out / "summary-pairwise-v1.json").write_text(json.dumps(summary(result), indent=2) + "\n", encoding="utf-8")


def binary(out: Path) -> None:
    spec = load_spec("answer-correctness")
    judge = JudgeRef(name="correct", fingerprint="b" * 64)
    items = [
        Item(
            id=f"q{i}",
            group=f"g{i // 2}",
            kind="binary",
            instruction=f"question {i // 2}",
            response="r" * (10 + 7 * i),
            labels=["yes" if i % 3 else "no"],
            label="yes" if i % 3 else "no",
            meta={"source": ["forum", "exam"][i % 2]},
        )
        for i in range(24)
    ]
    verdicts = [
        Verdict(id=it.id, verdict="no" if i % 4 == 0 else "yes", judge=judge)
        if i != 5
        else Verdict(id=it.id, error="timeout: no answer in 30 s", judge=judge)
        for i, it in enumerate(items)
    ]

    def scorer(batch: list[Item]) -> list[Verdict]:  # a scripted judge: some injected variants flip it
        return [Verdict(id=it.id, verdict="no" if k % 3 == 0 else "yes", judge=judge) for k, it in enumerate(batch)]

    injection = measure(items[:4], verdicts[:4], scorer, spec)
    result = evaluate(
        items,
        verdicts,
        spec,
        judge_info={"version": "1"},
        dataset_info={"name": "constructed", "split": "test", "sha256": "d" * 64},
        n_boot=50,
        injection=injection,
    )
    write_result(out / "validation-binary-v1.json", result)  # no command recorded: provenance.commands absent
    result = read_result(out / "validation-binary-v1.json")
    (out / "report-binary-v1.md").write_text(render_markdown(result), encoding="utf-8")
    (out / "summary-binary-v1.json").write_text(json.dumps(summary(result), indent=2) + "\n", encoding="utf-8")
    gate = check(result, GateConfig())
    gate = gate if isinstance(gate, dict) else gate.model_dump(mode="json", by_alias=True)
    (out / "gate-binary-v1.json").write_text(json.dumps(gate, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    target = Path(sys.argv[1]).resolve()
    target.mkdir(parents=True, exist_ok=True)
    pairwise(target)
    binary(target)
