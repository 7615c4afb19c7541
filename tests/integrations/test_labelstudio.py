"""Label Studio for real: a Label Studio server (the `label-studio` package in .venv-labelstudio, SQLite,
127.0.0.1) gets a review export pushed into a project, its tasks are annotated through its API as a person
would, and `judgeloop review pull` writes the same reviewed items as the file import; a rerun of push adds no
task; an unreachable server, a wrong token, a changed labeling interface and an out-of-space label are each one
clear line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import httpx
import pytest

import judgeloop
from data.jsonl import read_jsonl
from data.schema import Item, JudgeRef, Verdict
from integrations.labelstudio import PROJECT_FILE, LabelStudio
from serve.child import free_port
from serve.verdict_log import VerdictLog, as_url
from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SERVER = REPO / ".venv-labelstudio" / "bin" / "label-studio"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
SPEC = "helpfulness-pairwise"
N = 6


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    assert SERVER.exists(), f"{SERVER} is missing: `make setup` (scripts/setup_env.sh) installs Label Studio"
    data, port = tmp_path_factory.mktemp("label-studio"), free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LABEL_STUDIO_USERNAME": "reviewer@example.com",
        "LABEL_STUDIO_PASSWORD": "a-long-test-password",
        "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
    }
    log = open(data / "server.log", "w")
    proc = subprocess.Popen(
        [str(SERVER), "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)],
        cwd=data,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (data / "server.log").read_text()[-3000:]
        time.sleep(1)
    else:
        raise AssertionError("Label Studio did not start in 300 s: " + (data / "server.log").read_text()[-3000:])
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    log.close()


@pytest.fixture
def export_dir(tmp_path):
    db = tmp_path / "verdicts.sqlite"
    vlog = VerdictLog(as_url(db))
    judge = JudgeRef(name=SPEC, fingerprint="f" * 64)
    for i in range(N):
        item = Item(
            id=f"i{i}",
            group=f"g{i}",
            kind="pairwise",
            instruction=f"Question {i} <b>&amp;</b>?",
            response_a=f"Answer A{i}",
            response_b=f'Answer B{i} </Text><Choice value="x"/>',
        )
        vlog.log(
            item, Verdict(id=item.id, verdict="A", probs={"A": 0.6, "B": 0.3, "tie": 0.1}, confidence=0.6, judge=judge)
        )
    vlog.flush()
    vlog.close()
    out = tmp_path / "review"
    assert judgeloop.main(["review", "export", f"--judge={SPEC}", f"--n={N}", f"--log={db}", f"--out={out}"]) == 0
    return out


def flags(url, token=TOKEN):
    return [f"--url={url}", f"--token={token}"]


def test_push_annotate_pull_round_trip_without_loss_or_duplicates(label_studio, export_dir, tmp_path, capsys):
    assert judgeloop.main(["review", "push", str(export_dir), *flags(label_studio)]) == 0
    assert f"{N} tasks added, 0 already there" in capsys.readouterr().out
    project = json.loads((export_dir / PROJECT_FILE).read_text())["project"]
    with LabelStudio(label_studio, TOKEN) as ls:
        tasks = ls.tasks(project)
        assert len(tasks) == N and "&amp;" in tasks[0]["data"]["instruction"]  # the text as exported
        config = ls.project(project)["label_config"]
        assert config.count("<Choice ") == 3  # the injected </Text><Choice .../> stayed data
        # a person labels all but one task
        chosen = {}
        for task, label in zip(tasks[:-1], ["A", "B", "tie", "A", "B"]):
            ls.annotate(task["id"], label)
            chosen[task["data"]["review_id"]] = label
    # a rerun of push adds nothing
    assert judgeloop.main(["review", "push", str(export_dir), *flags(label_studio)]) == 0
    assert f"0 tasks added, {N} already there" in capsys.readouterr().out
    with LabelStudio(label_studio, TOKEN) as ls:
        assert len(ls.tasks(project)) == N
    out = tmp_path / "reviewed.jsonl"
    assert (
        judgeloop.main(["review", "pull", str(export_dir), *flags(label_studio), f"--spec={SPEC}", f"--out={out}"]) == 0
    )
    assert "(1 tasks have no label yet)" in capsys.readouterr().out
    items = list(read_jsonl(out, Item))
    assert {i.id: i.label for i in items} == chosen
    # the same file through the file import gives the same items
    again = tmp_path / "again.jsonl"
    assert (
        judgeloop.main(
            ["review", "import", str(export_dir / "labelstudio-export.json"), f"--spec={SPEC}", f"--out={again}"]
        )
        == 0
    )
    assert again.read_text() == out.read_text()


def test_bad_server_token_interface_and_labels_are_one_clear_line(label_studio, export_dir, tmp_path, capsys):
    port = free_port()
    assert judgeloop.main(["review", "push", str(export_dir), *flags(f"http://127.0.0.1:{port}")]) == 3
    assert "cannot be reached" in capsys.readouterr().err
    assert judgeloop.main(["review", "push", str(export_dir), *flags(label_studio, "wrong-token-0000")]) == 2
    err = capsys.readouterr().err
    assert "refused the token" in err and "field '--token'" in err and "Traceback" not in err
    assert judgeloop.main(["review", "push", str(export_dir), *flags(label_studio)]) == 0
    project = json.loads((export_dir / PROJECT_FILE).read_text())["project"]
    with LabelStudio(label_studio, TOKEN) as ls:
        (task, *_) = ls.tasks(project)
        ls.annotate(task["id"], "maybe")  # outside the label space (Label Studio stores what it is sent)
    out = tmp_path / "reviewed.jsonl"
    pull = ["review", "pull", str(export_dir), *flags(label_studio), f"--spec={SPEC}", f"--out={out}"]
    assert judgeloop.main(pull) == 2
    err = capsys.readouterr().err
    assert "maybe" in err and "labelstudio-export.json" in err and not out.exists()
    assert (export_dir / "labelstudio-export.json").exists()  # what was pulled is kept
    # the project's interface edited away from the spec: push refuses to add to it
    with LabelStudio(label_studio, TOKEN) as ls:
        ls._send(
            "PATCH",
            f"/api/projects/{project}",
            json={"label_config": ls.project(project)["label_config"].replace('<Choice value="tie"/>', "")},
        )
    assert judgeloop.main(["review", "push", str(export_dir), *flags(label_studio)]) == 2
    assert "no longer matches the spec" in capsys.readouterr().err
