"""Batch scoring on the in-process engine: append-only output, resume, summary, the CLI."""

import json

import pytest

from data.errors import DataError, ServerError
from data.schema import Item, JudgeRef
from judgeloop import main
from serve.batch import score_file
from tests.serve.helpers import pairwise_items, write_jsonl

REF = JudgeRef(name="t", fingerprint="f")


def ids(path):
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def fake_scorer(calls):
    from data.schema import Verdict

    def score(batch: list[Item]):
        calls.append([i.id for i in batch])
        return [Verdict(id=i.id, verdict="A", probs={"A": 0.6, "B": 0.4}, judge=REF) for i in batch]

    return score


def test_resume_skips_done_ids_and_drops_a_torn_line(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", pairwise_items(10))
    out = tmp_path / "out.jsonl"
    # an earlier run wrote p0, p1 and was killed in the middle of p2's line
    out.write_text(
        '{"id":"p0","verdict":"A","judge":{"name":"t","fingerprint":"f"}}\n'
        '{"id":"p1","verdict":"B","judge":{"name":"t","fingerprint":"f"}}\n{"id":"p2","verd'
    )
    calls = []
    summary = score_file(src, out, fake_scorer(calls), REF, batch_size=3, progress=False)
    assert ids(out) == [f"p{i}" for i in range(10)]
    assert calls == [["p2", "p3", "p4"], ["p5", "p6", "p7"], ["p8", "p9"]]
    assert (summary.scored, summary.skipped, summary.total, summary.errors) == (8, 2, 10, 0)
    assert summary.labels == {"A": 9, "B": 1}
    assert "10 verdict(s), 0 error(s)" in summary.text() and str(out) in summary.text()
    calls.clear()
    again = score_file(src, out, fake_scorer(calls), REF, progress=False)
    assert calls == [] and again.skipped == 10 and ids(out) == [f"p{i}" for i in range(10)]


def test_a_failing_batch_becomes_error_verdicts(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", pairwise_items(5))

    def broken(batch):
        raise ServerError("vLLM is down")

    summary = score_file(src, tmp_path / "out.jsonl", broken, REF, batch_size=2, progress=False)
    assert summary.errors == 5 and summary.error_reasons == {"backend: vLLM is down": 5}
    assert "error x5: backend: vLLM is down" in summary.text()


def test_bad_input_line_is_a_located_error(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(pairwise_items(1)[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=":2"):
        score_file(src, tmp_path / "out.jsonl", fake_scorer([]), REF, progress=False)


def test_cli_scores_with_the_in_process_engine(tmp_path, tiny_specs, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", pairwise_items(7))
    out = tmp_path / "out.jsonl"
    argv = [
        "score",
        "--judge",
        str(tiny_specs["pairwise"]),
        "--in",
        str(src),
        "--out",
        str(out),
        "--engine=transformers",
        "--batch-size",
        "3",
        "-q",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "scored 7 item(s)" in printed and "7 verdict(s), 0 error(s)" in printed and "labels:" in printed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [f"p{i}" for i in range(7)]
    assert all(r["judge"]["name"] == "tiny-helpfulness" and abs(sum(r["probs"].values()) - 1) < 1e-9 for r in records)
    assert main(argv) == 0 and "7 already in the output were skipped" in capsys.readouterr().out


def test_cli_needs_a_judge_or_endpoint(tmp_path, capsys):
    assert main(["score", "--in", "x", "--out", "y"]) == 2
    assert "give --judge" in capsys.readouterr().err
    assert (
        main(["score", "--judge", "helpfulness-pairwise", "--in", str(tmp_path / "missing.jsonl"), "--out", "y"]) == 2
    )
    assert "file not found" in capsys.readouterr().err


# --- one judge per output, one run per output, checked before any model loads ---------------------


def score_argv(judge, src, out):
    return ["-q", "score", "--judge", str(judge), "--in", str(src), "--out", str(out), "--engine=transformers"]


@pytest.fixture
def no_model_loads(monkeypatch):
    """`judgeloop score` must fail before it starts the judge (which loads the model)."""
    import serve.service

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(serve.service, "start_judges", refuse)


def test_resuming_into_another_judges_output_is_refused_before_any_model_loads(
    tmp_path, tiny_specs, no_model_loads, capsys
):
    from judge.loading import load_judge

    src = write_jsonl(tmp_path / "in.jsonl", pairwise_items(3))
    out = tmp_path / "out.jsonl"
    other = '{"id":"p0","verdict":"A","judge":{"name":"tiny-helpfulness","fingerprint":"' + "0" * 64 + '"}}\n'
    out.write_text(other)
    assert main(score_argv(tiny_specs["pairwise"], src, out)) == 2
    this = load_judge(tiny_specs["pairwise"]).fingerprint
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert f"{out}:1: field 'judge.fingerprint'" in line and "0" * 16 in line and this[:16] in line
    assert "pass another --out" in line
    assert out.read_text() == other  # nothing appended, nothing skipped


def test_score_file_refuses_another_judges_output_too(tmp_path):
    """The library call (demo, benchmarks) is guarded the same way."""
    src = write_jsonl(tmp_path / "in.jsonl", pairwise_items(3))
    out = tmp_path / "out.jsonl"
    score_file(src, out, fake_scorer([]), REF, progress=False)
    with pytest.raises(DataError, match="holds verdicts of judge 't'"):
        score_file(src, out, fake_scorer([]), JudgeRef(name="t", fingerprint="g"), progress=False)
    assert len(ids(out)) == 3


def test_out_that_is_a_directory_fails_before_any_model_loads(tmp_path, tiny_specs, no_model_loads, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", pairwise_items(3))
    (tmp_path / "out").mkdir()
    assert main(score_argv(tiny_specs["pairwise"], src, tmp_path / "out")) == 2
    assert "is a directory" in capsys.readouterr().err


def test_a_second_concurrent_run_on_the_same_output_is_refused(tmp_path, tiny_specs, no_model_loads, capsys):
    import subprocess
    import sys

    from tests.conftest import REPO

    src = write_jsonl(tmp_path / "in.jsonl", pairwise_items(3))
    out = tmp_path / "out.jsonl"
    holder = subprocess.Popen(  # another process claims the output, as a running `judgeloop score` does
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom serve.batch import claim_output\n"
            f"with claim_output({str(out)!r}):\n    print('held', flush=True)\n    sys.stdin.read()\n",
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(score_argv(tiny_specs["pairwise"], src, out)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert str(out) in err[0] and "another run is writing this output" in err[0]
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert not out.exists()
    # the lock ends with its holder: a run now gets past it (and, here, to the judge)
    with pytest.raises(AssertionError, match="model was loaded"):
        main(score_argv(tiny_specs["pairwise"], src, out))


def test_the_cli_turns_the_refusals_into_one_line_and_exit_2(tmp_path, tiny_specs, no_model_loads, capsys):
    import judgeloop

    src = write_jsonl(tmp_path / "in.jsonl", pairwise_items(3))
    (tmp_path / "out").mkdir()
    assert judgeloop.main(score_argv(tiny_specs["pairwise"], src, tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a directory" in err[0] and "Traceback" not in err[0]
