"""`judgeloop review push` / `pull` against a real Label Studio server (the `label-studio` package in its own
venv, .venv-labelstudio, made by scripts/setup_env.sh; SQLite in a temporary data dir, 127.0.0.1, a free port,
a user and an API token created by `label-studio start` itself).

Tasks are pushed, annotated through Label Studio's API as a person's browser does (POST an annotation per
task), pulled back and compared with what was annotated and with `judgeloop review import` of Label Studio's
own JSON export; a second push adds no duplicate. Bad input: an unreachable server (exit 3), a wrong token, a
project whose labeling interface no longer matches the spec, a label outside the label space (exit 2); each
one line, and the reviewed JSONL an earlier pull wrote is left as it was.

The server starts once per session (~25 s on an idle 2-core box; its start time is printed with -s).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

import judgeloop
from data.jsonl import read_jsonl
from data.schema import Item, JudgeRef, Verdict
from data.spec import load_spec
from serve.child import free_port
from serve.verdict_log import VerdictLog, as_url
from workflows.review import MANIFEST, labeling_config


def live(test):
    """A test against the real server (started once per session)."""
    return pytest.mark.integration(pytest.mark.slow(test))


REPO = Path(__file__).resolve().parents[2]
LS_VENV = Path(os.environ.get("JUDGELOOP_LABEL_STUDIO_VENV", REPO / ".venv-labelstudio"))
SPEC = "helpfulness-pairwise"
START_TIMEOUT_S = 300
TEXTS = [
    "plain text",
    '<script>alert("x")</script> & <b>bold</b>',
    "$instruction and ${response_a}",
    "a line\nand another, with 'quotes' and \"doubles\"",
    "unicode: Grüße, 日本語, emoji 🙂",
    "=1+1 and @SUM(A1)",
]


# --- the server ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A real Label Studio on loopback: SQLite in a temporary data dir, one user, a legacy API token."""
    exe = LS_VENV / "bin" / "label-studio"
    if not exe.exists():
        pytest.fail(
            f"{exe} is missing: the Label Studio server is installed in its own venv by scripts/setup_env.sh "
            "(make setup); these tests never skip"
        )
    data = tmp_path_factory.mktemp("label-studio")
    port, token = free_port(), secrets.token_hex(20)
    env = {
        **os.environ,
        "LATEST_VERSION_CHECK": "false",  # no call to PyPI at start
        "COLLECT_ANALYTICS": "false",
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "DJANGO_DB": "sqlite",
    }
    log = open(data / "server.log", "w")
    start = time.monotonic()
    proc = subprocess.Popen(
        [
            str(exe),
            "start",
            "--no-browser",
            "--data-dir",
            str(data),
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(port),
            "--username",
            "reviewer@example.com",
            "--password",
            secrets.token_hex(12),
            "--user-token",
            token,
            "--enable-legacy-api-token",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"label-studio exited with {proc.returncode}:\n{(data / 'server.log').read_text()[-3000:]}")
            if time.monotonic() - start > START_TIMEOUT_S:
                pytest.fail(f"label-studio not up in {START_TIMEOUT_S} s:\n{(data / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        startup = time.monotonic() - start
        print(f"\nlabel-studio up in {startup:.1f} s at {url}", file=sys.stderr)
        yield SimpleNamespace(url=url, token=token, startup_s=startup, data=data)
    finally:
        with_group = os.getpgid(proc.pid) if proc.poll() is None else None
        if with_group is not None:
            os.killpg(with_group, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(with_group, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture(scope="session")
def sdk(label_studio):
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=label_studio.url, api_key=label_studio.token)


# --- helpers ------------------------------------------------------------------------------------


def verdict_log(path: Path, n: int, spec: str = SPEC) -> Path:
    """A verdict log of ``n`` production verdicts whose texts carry markup, $variables and formula starts."""
    vlog = VerdictLog(as_url(path))
    judge = JudgeRef(name=spec, fingerprint="f" * 64)
    for i in range(n):
        item = Item(
            id=f"i{i}",
            group=f"g{i}",
            kind="pairwise",
            instruction=f"{TEXTS[i % len(TEXTS)]} #{i}",
            response_a=TEXTS[(i + 1) % len(TEXTS)],
            response_b=TEXTS[(i + 2) % len(TEXTS)],
        )
        conf = 0.4 + 0.05 * i
        verdict = Verdict(
            id=item.id, verdict="A", probs={"A": conf, "B": 1 - conf, "tie": 0.0}, confidence=conf, judge=judge
        )
        vlog.log(item, verdict)
    vlog.flush()
    vlog.close()
    return path


def run(args: list[str], capsys) -> tuple[int, str, list[str]]:
    code = judgeloop.main(args)
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def connection(ls, token: str | None = None, url: str | None = None) -> list[str]:
    return [f"--url={url or ls.url}", f"--token={token or ls.token}"]


def tasks_of(sdk, project: int) -> list:
    return list(sdk.tasks.list(project=project, fields="all"))


def annotate(sdk, task, label: str, cancelled: bool = False) -> None:
    """What Label Studio's editor sends when a person picks a choice and submits (or skips)."""
    result = [{"from_name": "label", "to_name": "instruction", "type": "choices", "value": {"choices": [label]}}]
    sdk.annotations.create(id=task.id, result=[] if cancelled else result, was_cancelled=cancelled)


def project_id(review_dir: Path) -> int:
    return json.loads((review_dir / "label-studio.json").read_text())["project"]


@pytest.fixture(autouse=True)
def no_label_studio_env(monkeypatch):
    """The URL and token come from the flags here (the environment's would hide a missing one)."""
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)


# --- the loop -----------------------------------------------------------------------------------


@live
def test_push_annotate_pull_matches_the_file_import_and_a_rerun_adds_nothing(label_studio, sdk, tmp_path, capsys):
    log = verdict_log(tmp_path / "verdicts.sqlite", 6)
    review = tmp_path / "review"
    push = ["review", "push", f"--judge={SPEC}", "--n=6", f"--log={log}", f"--review-dir={review}"]
    code, out, err = run([*push, *connection(label_studio), "--project=loop test"], capsys)
    assert code == 0, err
    assert "6 tasks added, 0 already there" in out
    pid = project_id(review)
    project = sdk.projects.get(id=pid)
    assert project.title == "loop test"
    assert project.label_config.strip() == labeling_config("pairwise", load_spec(SPEC).labels).strip()
    manifest = json.loads((review / MANIFEST).read_text())
    tasks = tasks_of(sdk, pid)
    assert sorted(t.data["review_id"] for t in tasks) == sorted(manifest["items"])
    for t in tasks:  # the texts arrive as they were logged (markup, $variables, newlines, unicode)
        item = manifest["items"][t.data["review_id"]]["item"]
        assert {f: t.data[f] for f in ("instruction", "response_a", "response_b")} == {
            f: item[f] for f in ("instruction", "response_a", "response_b")
        }

    # a person labels four tasks, a second reviewer one of them, skips one, leaves one untouched
    by_id = {t.data["review_id"]: t for t in tasks}
    rids = sorted(by_id)
    wanted = {rids[0]: ["A"], rids[1]: ["B"], rids[2]: ["tie"], rids[3]: ["A", "B"]}
    for rid, labels in wanted.items():
        for label in labels:
            annotate(sdk, by_id[rid], label)
    annotate(sdk, by_id[rids[4]], "", cancelled=True)

    # a rerun of push (no --judge: the export is there) adds no duplicate; this time with a personal access
    # token (a JWT refresh token, what Label Studio's Account & Settings hands out) instead of the legacy one
    pat = sdk.tokens.create().token
    code, out, err = run(["review", "push", f"--review-dir={review}", *connection(label_studio, token=pat)], capsys)
    assert code == 0, err
    assert "0 tasks added, 6 already there" in out
    assert len(tasks_of(sdk, pid)) == 6

    reviewed = tmp_path / "reviewed.jsonl"
    code, out, err = run(
        ["review", "pull", f"--review-dir={review}", f"--out={reviewed}", *connection(label_studio)], capsys
    )
    assert code == 0, err
    assert "wrote 4 reviewed items" in out and "2 tasks had no label yet" in out
    items = list(read_jsonl(reviewed, Item))
    assert sorted(it.id for it in items) == sorted(wanted)  # nothing lost, nothing duplicated
    assert {it.id: sorted(it.labels) for it in items} == {rid: sorted(labs) for rid, labs in wanted.items()}
    for it in items:
        assert it.meta["review"]["verdict"] == "A" and it.instruction == manifest["items"][it.id]["item"]["instruction"]

    # the same JSONL as `judgeloop review import` of Label Studio's own JSON export
    export = tmp_path / "ls-export.json"
    export.write_bytes(b"".join(sdk.projects.exports.download_sync(id=pid, export_type="JSON")))
    via_file = tmp_path / "via-file.jsonl"
    manifest_flag = f"--manifest={review / MANIFEST}"
    assert judgeloop.main(["review", "import", str(export), f"--spec={SPEC}", manifest_flag, f"--out={via_file}"]) == 0
    assert sorted(reviewed.read_text().splitlines()) == sorted(via_file.read_text().splitlines())

    # a second pull of the same annotations writes the same file
    before = reviewed.read_bytes()
    assert (
        run(["review", "pull", f"--review-dir={review}", f"--out={reviewed}", *connection(label_studio)], capsys)[0]
        == 0
    )
    assert reviewed.read_bytes() == before


@live
def test_a_pointwise_judge_round_trips(label_studio, sdk, tmp_path, capsys):
    spec = "dialogue-quality"
    vlog = VerdictLog(as_url(tmp_path / "verdicts.sqlite"))
    judge = JudgeRef(name=spec, fingerprint="e" * 64)
    for i in range(3):
        item = Item(id=f"s{i}", group=f"s{i}", kind="pointwise", instruction=TEXTS[i], response=TEXTS[i + 1])
        vlog.log(item, Verdict(id=item.id, verdict="4", probs={"4": 0.5, "5": 0.5}, confidence=0.5, judge=judge))
    vlog.flush()
    vlog.close()
    review, reviewed = tmp_path / "review", tmp_path / "reviewed.jsonl"
    push = ["review", "push", f"--judge={spec}", "--n=3", f"--log={tmp_path / 'verdicts.sqlite'}"]
    code, out, err = run([*push, f"--review-dir={review}", "--project=pointwise", *connection(label_studio)], capsys)
    assert code == 0, err
    tasks = sorted(tasks_of(sdk, project_id(review)), key=lambda t: t.id)
    for task, score in zip(tasks, ["1", "5", "3"]):
        annotate(sdk, task, score)
    code, out, err = run(
        ["review", "pull", f"--review-dir={review}", f"--out={reviewed}", *connection(label_studio)], capsys
    )
    assert code == 0, err
    got = {it.id: it.labels for it in read_jsonl(reviewed, Item)}
    assert got == {t.data["review_id"]: [float(s)] for t, s in zip(tasks, ["1", "5", "3"])}


@pytest.mark.parametrize("kind", ["pairwise", "pointwise", "binary"])
def test_every_value_of_the_labeling_interface_is_escaped(kind):
    """Label spaces are fixed today (A/B/tie, yes/no, numbers), but the interface never trusts them: any text
    reads back as written through Label Studio's own config parser (label_studio_sdk's LabelInterface)."""
    from label_studio_sdk.label_interface import LabelInterface

    labels = ["A", 'B "<b>&amp;</b>', "l'autre", "$instruction", "x\ny\tz", "]]>", "Grüße 🙂"]
    interface = LabelInterface(labeling_config(kind, labels))
    assert interface.get_control("label").labels == labels


# --- bad input ----------------------------------------------------------------------------------


@live
def test_bad_input_is_one_line_and_loses_nothing_already_pulled(label_studio, sdk, tmp_path, capsys):
    log = verdict_log(tmp_path / "verdicts.sqlite", 3)
    review, reviewed = tmp_path / "review", tmp_path / "reviewed.jsonl"
    push = ["review", "push", f"--judge={SPEC}", "--n=3", f"--log={log}", f"--review-dir={review}", "--project=bad in"]
    pull = ["review", "pull", f"--review-dir={review}", f"--out={reviewed}"]
    assert run([*push, *connection(label_studio)], capsys)[0] == 0
    pid = project_id(review)
    tasks = sorted(tasks_of(sdk, pid), key=lambda t: t.id)
    annotate(sdk, tasks[0], "B")
    assert run([*pull, *connection(label_studio)], capsys)[0] == 0
    pulled = reviewed.read_bytes()
    assert len(pulled.splitlines()) == 1

    # Label Studio unreachable: exit 3 (ServerUnavailable, as for the judge API), one line
    down = f"http://127.0.0.1:{free_port()}"
    code, _, err = run([*pull, *connection(label_studio, url=down)], capsys)
    assert code == 3 and len(err) == 1 and "cannot be reached" in err[0] and down in err[0], err
    assert run([*push, *connection(label_studio, url=down)], capsys)[0] == 3

    # a wrong token, and none at all
    code, _, err = run([*pull, *connection(label_studio, token="not-the-token-0123456789")], capsys)
    assert code == 2 and len(err) == 1 and "refused the token" in err[0] and "--token" in err[0], err
    assert run([*push, *connection(label_studio, token="not-the-token-0123456789")], capsys)[0] == 2
    code, _, err = run([*pull, f"--url={label_studio.url}", "--token="], capsys)
    assert code == 2 and len(err) == 1 and "no Label Studio token" in err[0], err

    # a label outside the label space: located in the pulled file, naming the Label Studio task
    annotate(sdk, tasks[1], "maybe")
    code, _, err = run([*pull, *connection(label_studio)], capsys)
    assert code == 2 and len(err) == 1, err
    assert (
        "label-studio-pulled.json:" in err[0] and "'maybe'" in err[0] and f"Label Studio task {tasks[1].id}" in err[0]
    )
    assert reviewed.read_bytes() == pulled
    for ann in next(t for t in tasks_of(sdk, pid) if t.id == tasks[1].id).annotations:
        sdk.annotations.delete(id=ann["id"])

    # the project's labeling interface changed in Label Studio (a label added): pull and push refuse it
    config = labeling_config("pairwise", load_spec(SPEC).labels)
    sdk.projects.update(
        id=pid, label_config=config.replace('<Choice value="tie"/>', '<Choice value="tie"/><Choice value="C"/>')
    )
    code, _, err = run([*pull, *connection(label_studio)], capsys)
    assert code == 2 and len(err) == 1 and "no longer matches spec" in err[0] and "'C'" in err[0], err
    code, _, err = run([*push, *connection(label_studio)], capsys)
    assert code == 2 and len(err) == 1 and "holds annotations, so it is not changed" in err[0], err
    assert reviewed.read_bytes() == pulled
    assert len(tasks_of(sdk, pid)) == 3

    # with no annotation in it, push brings the project back to the spec's interface
    review2 = tmp_path / "review2"
    push2 = [
        "review",
        "push",
        f"--judge={SPEC}",
        "--n=2",
        f"--log={log}",
        f"--review-dir={review2}",
        "--project=bad in 2",
    ]
    assert run([*push2, *connection(label_studio)], capsys)[0] == 0
    pid2 = project_id(review2)
    sdk.projects.update(id=pid2, label_config=config.replace('<Choice value="tie"/>', ""))
    code, out, err = run([*push2, *connection(label_studio)], capsys)
    assert code == 0 and "updated" in out and "0 tasks added, 2 already there" in out, err
    assert sdk.projects.get(id=pid2).label_config.strip() == config.strip()
