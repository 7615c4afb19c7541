"""`judgeloop evaluate --prompts --endpoint` against a real OpenAI-compatible server: the session stack's
vLLM (two served model names of the tiny model as two systems), scored by a judge on the same server.
Resume is checked through the file and through vLLM's own request counter (/metrics)."""

from __future__ import annotations

import json
import re

import httpx
import pytest

import judgeloop
from tests.serve.helpers import free_port_run
from workflows.evaluate.result import Evaluation

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def chat_requests(url: str) -> float:
    """Chat-completion requests the server has answered (prometheus-fastapi-instrumentator's counter)."""
    text = httpx.get(url + "/metrics", timeout=30).text
    pat = re.compile(r'^http_requests_total\{[^}]*handler="/v1/chat/completions"[^}]*\}\s+([0-9.e+]+)', re.M)
    return sum(float(x) for x in pat.findall(text))


def _lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_generated_responses_resume_and_are_scored(stack, tiny_specs, tmp_path, capsys):
    url = next(s.url for s in stack.servers if "tiny-coherence" in httpx.get(s.url + "/v1/models").text)
    prompts = [{"prompt_id": f"q{i}", "instruction": f"Name a colour, {i}.", "input": "one word"} for i in range(5)]
    p3, p5 = tmp_path / "p3.jsonl", tmp_path / "p5.jsonl"
    p3.write_text("".join(json.dumps(p) + "\n" for p in prompts[:3]))
    p5.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(f"engine: vllm\nvllm:\n  endpoints: [{url}]\n  max_model_len: 2048\n")
    out = tmp_path / "out"
    base = ["evaluate", "--out", str(out), "--no-history", "--no-report", "--n-boot", "200"]
    base += ["--judge", str(tiny_specs["pointwise"]), "--serve-config", str(cfg)]
    systems = ["--endpoint", f"short={url}/v1,model=tiny-helpfulness,max_tokens=3"]
    systems += ["--endpoint", f"long={url},model=tiny-correctness,max_tokens=9,temperature=0.7"]
    responses = out / "responses.jsonl"

    # an unreachable endpoint beside two live ones: one clear line, exit 3, what arrived stays on disk
    dead = f"down=http://127.0.0.1:{free_port_run(1)}/v1,model=m"
    assert judgeloop.main([*base, "--prompts", str(p3), *systems, "--endpoint", dead]) == 3
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("judgeloop: error")]
    assert len(errors) == 1 and "cannot reach the endpoint of system 'down' at http://127.0.0.1:" in errors[0]
    kept = _lines(responses) if responses.exists() else []
    assert all(r["system"] in ("short", "long") for r in kept)

    # the rerun without it asks only for what is missing, then scores
    before = chat_requests(url)
    assert judgeloop.main([*base, "--prompts", str(p3), *systems]) == 0
    assert chat_requests(url) - before == 6 - len(kept)
    rows = _lines(responses)
    assert len(rows) == 6 and {(r["prompt_id"], r["system"]) for r in rows} == {
        (f"q{i}", s) for i in range(3) for s in ("short", "long")
    }
    assert {r["meta"]["model"] for r in rows} == {"tiny-helpfulness", "tiny-correctness"}
    assert all(r["input"] == "one word" and r["meta"]["finish_reason"] in ("length", "stop") for r in rows)

    # five prompts now: two new prompts x two systems = four requests
    before = chat_requests(url)
    assert judgeloop.main([*base, "--prompts", str(p5), *systems]) == 0
    assert chat_requests(url) - before == 4
    ev = Evaluation.read(out / "evaluation.json")
    assert ev.dataset.systems == ["short", "long"] and ev.dataset.n_common == 5
    (crit,) = ev.criteria
    assert [s.system for s in crit.systems] == ["short", "long"] and all(s.judge.n == 5 for s in crit.systems)

    # a run killed while writing its last line: the torn line is asked for again, and only it
    raw = responses.read_bytes()
    responses.write_bytes(raw[: raw.rstrip(b"\n").rfind(b"\n") + 1 + 20])
    before = chat_requests(url)
    assert judgeloop.main([*base, "--prompts", str(p5), *systems]) == 0
    assert chat_requests(url) - before == 1 and len(_lines(responses)) == 10

    # nothing missing: no request at all
    before = chat_requests(url)
    assert judgeloop.main([*base, "--prompts", str(p5), *systems]) == 0
    assert chat_requests(url) - before == 0
