"""`judgeloop monitor` names live verdicts computed in another engine/dtype than the validated one (a
failed `engine` rule, exit 1, the drift figures marked) instead of comparing them silently; rows logged
before the verdict log recorded engines are unknown, not a mismatch. Real SQLite, real files, the CLI."""

import json
import sqlite3

import pytest

import judgeloop
from data.jsonl import write_jsonl
from data.schema import Verdict
from data.spec import load_spec
from eval.gate import write_result
from eval.harness import evaluate
from serve.verdict_log import VerdictLog
from tests.eval.helpers import noisy_judge, pairwise_items
from tests.live.test_verdict_log import OLD_SCHEMA

VALIDATED = "vllm/float32"
MESSAGE = (
    "live verdicts were scored by vllm/bfloat16, the baseline was validated on vllm/float32: not the validated verdicts"
)


def stamped(verdicts: list[Verdict], engine: str | None) -> list[Verdict]:
    return [v.model_copy(update={"judge": v.judge.model_copy(update={"engine": engine})}) for v in verdicts]


@pytest.fixture
def baseline(tmp_path):
    """A validation baseline computed in vllm/float32: validation.json and verdicts.jsonl beside it."""
    items = pairwise_items(60, seed=1)
    verdicts = stamped(noisy_judge(items, seed=2), VALIDATED)
    write_jsonl(tmp_path / "baseline" / "verdicts.jsonl", verdicts)
    result = evaluate(items, verdicts, load_spec("helpfulness-pairwise"), n_boot=50)
    assert result.judge.engine == VALIDATED
    write_result(tmp_path / "baseline" / "validation.json", result)
    return {"items": items, "verdicts": verdicts, "validation": tmp_path / "baseline" / "validation.json"}


def serve_log(db, baseline, engine: str | None, role: str = "production", judge_key: str | None = None):
    """The baseline's items logged as live verdicts computed in ``engine`` (the same verdicts: no real drift)."""
    log = VerdictLog(f"sqlite:///{db}")
    for item, v in zip(baseline["items"], stamped(baseline["verdicts"], engine)):
        log.log(item, v, role=role, judge_key=judge_key, pair_id=f"p-{item.id}")
    log.flush()
    log.close()


def run_monitor(baseline, db, out, *extra) -> int:
    args = [f"--baseline={baseline['validation']}", f"--log={db}", "--min_n=10", f"--out={out}", *extra]
    return judgeloop.main(["monitor", *args])


def rules(out) -> dict:
    m = json.loads((out / "monitor.json").read_text())
    return m, {r["name"]: r for r in m["rules"]}


def test_live_verdicts_in_another_dtype_are_named_not_compared_silently(baseline, tmp_path, capsys):
    db = tmp_path / "verdicts.sqlite"
    serve_log(db, baseline, "vllm/bfloat16")
    assert run_monitor(baseline, db, tmp_path / "out") == 1
    captured = capsys.readouterr()
    assert f"judgeloop monitor: ALERT for judge: engine: {MESSAGE}" in captured.err
    (line,) = [ln for ln in captured.out.splitlines() if ln.startswith("FAIL  engine")]
    assert MESSAGE in line
    m, by_name = rules(tmp_path / "out")
    assert m["alert"] and m["engine"]["mismatch"] and m["engine"]["message"] == MESSAGE
    assert m["engine"]["live"] == {"vllm/bfloat16": 60} and m["engine"]["validated"] == VALIDATED
    assert by_name["engine"]["status"] == "FAIL" and by_name["engine"]["figure"] == 1.0
    # the drift figures are still computed (the same verdicts: no drift), and marked
    assert m["drift"]["across_engines"] and m["drift"]["psi"] == pytest.approx(0.0)
    for name in ("psi", "chi2_p", "ks", "swap_inconsistency"):
        assert by_name[name]["status"] == "PASS" and "across engines" in by_name[name]["note"]
    prom = (tmp_path / "out" / "monitor.prom").read_text()
    assert 'judgeloop_monitor_alert{judge="judge",rule="engine"} 1.0' in prom
    assert 'judgeloop_monitor_verdicts_by_engine{engine="vllm/bfloat16",judge="judge"} 60.0' in prom
    assert MESSAGE in (tmp_path / "out" / "monitor.md").read_text()
    assert MESSAGE in (tmp_path / "out" / "monitor.html").read_text()


def test_the_validated_engine_passes(baseline, tmp_path, capsys):
    db = tmp_path / "verdicts.sqlite"
    serve_log(db, baseline, VALIDATED)
    assert run_monitor(baseline, db, tmp_path / "out") == 0
    assert "ALERT" not in capsys.readouterr().err
    m, by_name = rules(tmp_path / "out")
    assert by_name["engine"]["status"] == "PASS" and by_name["engine"]["figure"] == 0.0
    assert not m["engine"]["mismatch"] and not m["drift"]["across_engines"]
    assert "across engines" not in by_name["psi"]["note"]


def test_rows_of_unknown_engine_are_unknown_not_a_mismatch(baseline, tmp_path, capsys):
    """A log from before the engine column: its rows are unknown (SKIP); once the server has migrated it, new
    rows in the validated engine pass and new rows in another fail, the old ones still counted as unknown."""
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript(OLD_SCHEMA)  # one row, of judge 't': not this judge's
        conn.executemany(
            "INSERT INTO verdicts (ts, judge, judge_key, role, fingerprint, item_id, item_hash, verdict, confidence)"
            " VALUES (strftime('%s', 'now'), 'judge', 'judge', 'production', ?, ?, ?, ?, ?)",
            [(v.judge.fingerprint, v.id, f"h{v.id}", v.verdict, v.confidence) for v in baseline["verdicts"]],
        )
    conn.close()
    assert run_monitor(baseline, db, tmp_path / "old") == 0
    m, by_name = rules(tmp_path / "old")
    assert by_name["engine"]["status"] == "SKIP" and not m["engine"]["mismatch"]
    assert m["engine"]["live"] == {"unknown": 60}
    assert "60 of 60 live verdicts name no engine" in by_name["engine"]["note"]
    assert 'engine="unknown"' in (tmp_path / "old" / "monitor.prom").read_text()

    serve_log(db, baseline, VALIDATED)
    assert run_monitor(baseline, db, tmp_path / "same") == 0
    m, by_name = rules(tmp_path / "same")
    assert by_name["engine"]["status"] == "PASS" and m["engine"]["live"] == {"unknown": 60, VALIDATED: 60}
    assert "60 of 120 live verdicts name no engine" in by_name["engine"]["note"]

    serve_log(db, baseline, "vllm/bfloat16")
    assert run_monitor(baseline, db, tmp_path / "mixed") == 1
    m, by_name = rules(tmp_path / "mixed")
    assert by_name["engine"]["figure"] == 0.5  # of the 120 of known engine
    assert m["engine"]["message"] == (
        "live verdicts were scored by vllm/bfloat16 (60 of 180), the baseline was validated on vllm/float32: "
        "not the validated verdicts"
    )
    assert "60 of 180 live verdicts name no engine" in by_name["engine"]["note"]
    capsys.readouterr()


def test_a_baseline_verdicts_file_in_another_dtype_is_named(baseline, tmp_path, capsys):
    other = tmp_path / "bf16-verdicts.jsonl"
    write_jsonl(other, stamped(baseline["verdicts"], "vllm/bfloat16"))
    db = tmp_path / "verdicts.sqlite"
    serve_log(db, baseline, VALIDATED)
    assert run_monitor(baseline, db, tmp_path / "out", f"--baseline_verdicts={other}") == 1
    m, by_name = rules(tmp_path / "out")
    assert by_name["engine"]["status"] == "FAIL" and by_name["engine"]["figure"] == 0.0  # live is the validated one
    assert m["engine"]["message"] == (
        f"the baseline verdicts ({other}) were scored by vllm/bfloat16, the baseline was validated on "
        "vllm/float32: not the validated verdicts"
    )
    assert f"engine: the baseline verdicts ({other})" in capsys.readouterr().err


def test_a_baseline_validated_before_verdicts_named_their_engine_skips_the_rule(tmp_path):
    items = pairwise_items(60, seed=1)
    verdicts = noisy_judge(items, seed=2)
    write_jsonl(tmp_path / "baseline" / "verdicts.jsonl", verdicts)
    write_result(
        tmp_path / "baseline" / "validation.json",
        evaluate(items, verdicts, load_spec("helpfulness-pairwise"), n_boot=50),
    )
    baseline = {"items": items, "verdicts": verdicts, "validation": tmp_path / "baseline" / "validation.json"}
    db = tmp_path / "verdicts.sqlite"
    serve_log(db, baseline, "vllm/bfloat16")
    assert run_monitor(baseline, db, tmp_path / "out") == 0
    m, by_name = rules(tmp_path / "out")
    assert by_name["engine"]["status"] == "SKIP" and m["engine"]["validated"] is None
    assert "the baseline names no engine" in by_name["engine"]["note"]


def test_a_shadow_candidate_in_another_engine_is_named_by_compare_not_by_production_rules(baseline, tmp_path, capsys):
    db = tmp_path / "verdicts.sqlite"
    serve_log(db, baseline, VALIDATED)
    serve_log(db, baseline, "transformers/bfloat16", role="shadow", judge_key="judge@2")
    assert run_monitor(baseline, db, tmp_path / "out", "--compare", "judge@2") == 0
    out = capsys.readouterr().out
    m, by_name = rules(tmp_path / "out")
    assert by_name["engine"]["status"] == "PASS" and m["engine"]["live"] == {VALIDATED: 60}  # production only
    c = m["compare"]
    assert c["engines_differ"] and c["n_pairs"] == 60 and c["agreement"]["value"] == 1.0
    assert c["candidate_engines"] == {"transformers/bfloat16": 60} and c["production_engines"] == {VALIDATED: 60}
    assert (
        "note: shadow judge@2 verdicts were scored by transformers/bfloat16, production's by vllm/float32: "
        "the agreement measures the engine change too"
    ) in out
