"""`judgeloop evaluate --prompts --endpoint`: bad input fails before any request (the real endpoints are
exercised in tests/integration/test_evaluate_generate.py)."""

from __future__ import annotations

import json

import pytest

import judgeloop
from workflows.evaluate.generate import existing_responses, load_prompts, parse_endpoint


def _run(tmp_path, *args) -> int:
    return judgeloop.main(
        ["evaluate", "--out", str(tmp_path / "out"), "--no-history", "--judge", "summary-coherence", *args]
    )


def _errors(capsys) -> list[str]:
    return [x for x in capsys.readouterr().err.splitlines() if x.startswith("judgeloop: error")]


def _prompts(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


DEAD = "v1=http://127.0.0.1:9/v1,model=m"  # never contacted: the input is refused first


def test_a_malformed_prompts_row_names_file_line_and_field(tmp_path, capsys):
    p = _prompts(tmp_path / "p.jsonl", [{"prompt_id": "a", "instruction": "x"}, {"prompt_id": "b", "input": "y"}])
    assert _run(tmp_path, "--prompts", p, "--endpoint", DEAD) == 2
    (line,) = _errors(capsys)
    assert f"{p}:2: field 'instruction'" in line
    assert not (tmp_path / "out" / "responses.jsonl").exists()


def test_a_duplicate_prompt_id(tmp_path, capsys):
    p = _prompts(tmp_path / "p.jsonl", [{"prompt_id": 1, "instruction": "x"}, {"prompt_id": "1", "instruction": "z"}])
    assert _run(tmp_path, "--prompts", p, "--endpoint", DEAD) == 2
    (line,) = _errors(capsys)
    assert f"{p}:2: field 'prompt_id'" in line and "duplicate prompt_id '1' (first on line 1)" in line


@pytest.mark.parametrize(
    "endpoint, message",
    [
        ("v1", "is not NAME=URL"),
        ("v1=ftp://host/v1", "is not an http(s) URL"),
        ("v1=http://h/v1,modle=m", "'modle=m' is not one of model="),
        ("v1=http://h/v1,max_tokens=0", "max_tokens=0: must be at least 1"),
        ("v1=http://h/v1,key_env=JUDGELOOP_TEST_NO_SUCH_VAR", "JUDGELOOP_TEST_NO_SUCH_VAR (key_env) is not set"),
    ],
)
def test_a_bad_endpoint(tmp_path, capsys, endpoint, message):
    p = _prompts(tmp_path / "p.jsonl", [{"prompt_id": "a", "instruction": "x"}])
    assert _run(tmp_path, "--prompts", p, "--endpoint", endpoint) == 2
    (line,) = _errors(capsys)
    assert "field '--endpoint'" in line and message in line


def test_flags_that_do_not_go_together(tmp_path, capsys):
    p = _prompts(tmp_path / "p.jsonl", [{"prompt_id": "a", "instruction": "x"}])
    assert _run(tmp_path, "--prompts", p) == 2
    assert "field '--endpoint'" in _errors(capsys)[0]
    assert _run(tmp_path, "--endpoint", DEAD) == 2
    assert "field '--prompts'" in _errors(capsys)[0]
    assert _run(tmp_path, "--prompts", p, "--responses", p, "--endpoint", DEAD) == 2
    assert "not both" in _errors(capsys)[0]
    assert _run(tmp_path, "--endpoint", "v1=http://h:1/v1", "--endpoint", "v1=http://h:2/v1", "--prompts", p) == 2
    assert "system 'v1' is given twice" in _errors(capsys)[0]


def test_endpoint_urls_and_options():
    ep = parse_endpoint("v2=http://h:8000,model=m,max_tokens=7,temperature=0.5", max_tokens=512, temperature=0.0)
    assert (ep.system, ep.url, ep.model, ep.max_tokens, ep.temperature) == ("v2", "http://h:8000/v1", "m", 7, 0.5)
    assert parse_endpoint("v=https://h/api/v1/chat/completions", max_tokens=3, temperature=1).url == "https://h/api/v1"


def test_a_torn_last_line_is_dropped_and_a_changed_prompt_refused(tmp_path):
    prompts = {
        p.prompt_id: p for p in load_prompts(_prompts(tmp_path / "p.jsonl", [{"prompt_id": "a", "instruction": "x"}]))
    }
    f = tmp_path / "responses.jsonl"
    good = {"prompt_id": "a", "system": "v1", "response": "r", "instruction": "x"}
    f.write_text(json.dumps(good) + "\n" + '{"prompt_id": "a", "system": "v2", "resp')
    assert existing_responses(f, prompts) == {("a", "v1")}
    assert f.read_text() == json.dumps(good) + "\n"
    f.write_text(json.dumps({**good, "instruction": "changed"}) + "\n")
    with pytest.raises(Exception, match="field 'instruction'.*another instruction"):
        existing_responses(f, prompts)
