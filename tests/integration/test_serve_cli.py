"""`judgeloop serve configs/serve/cpu.yaml` end to end on the embedded SmolLM2-135M: a verdict per judge
over HTTP, agreement with the in-process backend, and SIGTERM leaves no process behind."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from data.schema import Item
from judge.hf_backend import HFBackend
from judge.loading import load_judge
from judge.scoring import score_items
from tests.serve.helpers import POEM, binary_items, free_port, pairwise_items, pointwise_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
KEY = "cli-test-key-0123456789abcdef"
# fp32 in both engines on the real model
HF_TOLERANCE = 1e-3
ITEMS = {
    "helpfulness-pairwise": pairwise_items(4),
    "harmlessness-pairwise": pairwise_items(4),
    "answer-correctness": binary_items(4),
    "summary-coherence": pointwise_items(4),
}


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def running(pid: int) -> bool:
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def served(smollm2_dir, tmp_path_factory):
    logs = tmp_path_factory.mktemp("serve-cli")
    api_port = free_port()
    log = open(logs / "serve.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "judgeloop.py",
            "serve",
            "configs/serve/cpu.yaml",
            f"--vllm.port={free_port()}",
            f"--api.port={api_port}",
            "--vllm.enforce_eager=true",
            "--vllm.cpu_kvcache_space_gib=1",
            f"--log_dir={logs}",
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "JUDGELOOP_API_KEY": KEY},
    )
    url = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + 400
    while True:
        assert proc.poll() is None, (logs / "serve.log").read_text()[-3000:]
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, (logs / "serve.log").read_text()[-3000:]
        time.sleep(1)
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("name", list(ITEMS))
def test_curl_an_item_get_a_verdict_with_probs_and_fingerprint(served, name):
    _, url = served
    item = next(r for r in ITEMS[name] if POEM in str(r))
    resp = httpx.post(
        url + "/v1/judge", json={"judge": name, "item": item}, headers={"Authorization": f"Bearer {KEY}"}, timeout=120
    )
    assert resp.status_code == 200, resp.text
    (v,) = resp.json()["verdicts"]
    labels = load_judge(name).spec.labels
    assert v["error"] is None and v["verdict"] in labels and list(v["probs"]) == labels
    assert abs(sum(v["probs"].values()) - 1) < 1e-9
    assert v["judge"] == {"name": name, "fingerprint": load_judge(name).fingerprint, "engine": "vllm/float32"}


def test_in_process_backend_agrees_with_served_vllm(served, smollm2_dir):
    _, url = served
    hf = HFBackend.load(str(smollm2_dir), dtype="float32")
    worst = 0.0
    for name, records in ITEMS.items():
        records = records[:2]  # the first carries the prompt injection; the HF pass is the slow part
        judge = load_judge(name)
        local = list(score_items([Item(**r) for r in records], judge.spec, hf, judge.tokenizer(), judge.ref))
        resp = httpx.post(
            url + "/v1/judge",
            json={"judge": name, "items": records},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=120,
        )
        remote = resp.json()["verdicts"]
        for a, b in zip(local, remote):
            worst = max(worst, *(abs(a.probs[k] - b["probs"][k]) for k in a.probs))
            assert a.verdict == b["verdict"] or abs(a.probs[a.verdict] - a.probs[b["verdict"]]) < HF_TOLERANCE
    print(f"max |p_hf - p_vllm| on SmolLM2 (fp32): {worst:.2e}")
    assert worst < HF_TOLERANCE


def test_sigterm_stops_the_api_and_vllm_with_no_orphan(served):
    proc, url = served
    family = descendants(proc.pid)
    assert family, "vLLM is not a child of judgeloop serve"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=90) == 0
    deadline = time.monotonic() + 30
    while any(running(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in family if running(p)], "processes outlived judgeloop serve"
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/health", timeout=2)
