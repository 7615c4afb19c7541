"""Label Studio for real: push a review export into a Label Studio project, pull the annotations back.

`judgeloop review export` writes the review tasks, the labeling interface and the manifest into a folder;
``push`` creates (or finds) the project for that export in a running Label Studio, with the labeling interface
generated from the judge spec (every value escaped), and imports the tasks that are not in it yet (a rerun
adds no duplicate: tasks are keyed by their ``review_id``). ``pull`` fetches the project's JSON export into
the folder (``labelstudio-export.json``, written atomically: what was pulled is never lost) and turns it into
reviewed items with the same code as `judgeloop review import` of a downloaded file.

The project's id is kept in the folder (``labelstudio.json``). URL and token come from flags or
``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY`` (Label Studio's own names). A token is either a legacy API token
(``Authorization: Token ...``) or a personal access token (a JWT, exchanged at ``/api/token/refresh`` for an
access token). This talks to Label Studio's REST API with httpx rather than ``label-studio-sdk``: the SDK pins
numpy < 2.3 and opencv, which would downgrade what vLLM runs on (measured with ``pip install --dry-run``).

Bad input: Label Studio unreachable (exit 3), a wrong token, a project whose labeling interface no longer
matches the spec, annotations with labels outside the label space (exit 2, each named).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from data.errors import ConfigError, DataError, ServerUnavailable
from workflows.review import LABEL_CONFIG, MANIFEST, TASKS, import_review, labeling_config

PROJECT_FILE = "labelstudio.json"  # the project this export was pushed to
EXPORT_FILE = "labelstudio-export.json"  # the last pull, as Label Studio exported it


class LabelStudio:
    """A small client for the Label Studio REST endpoints judgeloop needs."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout_s: float = 60.0):
        self.url = (url or os.environ.get("LABEL_STUDIO_URL") or "").rstrip("/")
        token = token or os.environ.get("LABEL_STUDIO_API_KEY")
        if not self.url:
            raise ConfigError("no Label Studio URL", field="--url", hint="pass --url or set LABEL_STUDIO_URL")
        if not token:
            raise ConfigError("no Label Studio token", field="--token", hint="pass --token or set LABEL_STUDIO_API_KEY")
        self.client = httpx.Client(base_url=self.url, timeout=timeout_s)
        self.client.headers["Authorization"] = self._authorization(token)

    def _authorization(self, token: str) -> str:
        if token.count(".") != 2:  # a legacy API token
            return f"Token {token}"
        resp = self._send("POST", "/api/token/refresh", json={"refresh": token}, auth=False)
        return f"Bearer {resp.json()['access']}"

    def _send(self, method: str, path: str, *, auth: bool = True, **kw) -> httpx.Response:
        try:
            resp = self.client.request(method, path, **kw) if auth else httpx.request(method, self.url + path, **kw)
        except httpx.TransportError as exc:
            raise ServerUnavailable(
                f"Label Studio at {self.url} cannot be reached ({type(exc).__name__}: {exc})",
                field="--url",
                hint="is Label Studio running there? (label-studio start)",
            ) from None
        if resp.status_code in (401, 403):
            raise ConfigError(
                f"Label Studio at {self.url} refused the token (HTTP {resp.status_code}: {_detail(resp)})",
                field="--token",
                hint="use the access token from Label Studio's Account & Settings page",
            )
        if resp.status_code >= 400:
            raise DataError(f"Label Studio answered HTTP {resp.status_code} to {method} {path}: {_detail(resp)}")
        return resp

    def create_project(self, title: str, label_config: str) -> dict:
        return self._send("POST", "/api/projects", json={"title": title, "label_config": label_config}).json()

    def project(self, project_id: int) -> dict:
        return self._send("GET", f"/api/projects/{project_id}").json()

    def import_tasks(self, project_id: int, tasks: list[dict]) -> None:
        if tasks:
            self._send("POST", f"/api/projects/{project_id}/import", json=tasks)

    def tasks(self, project_id: int) -> list[dict]:
        out, page = [], 1
        while True:
            resp = self._send("GET", "/api/tasks", params={"project": project_id, "page": page, "page_size": 500})
            body = resp.json()
            batch = body.get("tasks", body) if isinstance(body, dict) else body
            out += batch
            if len(batch) < 500 or (isinstance(body, dict) and len(out) >= body.get("total", len(out))):
                return out
            page += 1

    def export(self, project_id: int) -> bytes:
        params = {"exportType": "JSON", "download_all_tasks": "true"}  # unlabelled tasks too: counted, not lost
        return self._send("GET", f"/api/projects/{project_id}/export", params=params).content

    def annotate(self, task_id: int, choice: str, from_name: str = "label", to_name: str = "instruction") -> dict:
        """What a person's click does (used by the integration test)."""
        result = [{"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [choice]}}]
        return self._send("POST", f"/api/tasks/{task_id}/annotations", json={"result": result}).json()

    def close(self) -> None:
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict):
        errors = body.get("validation_errors")
        return (f"{body.get('detail')}: {errors}" if errors else str(body.get("detail") or body))[:400]
    return str(body)[:300]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            "is missing", path=str(path), hint="push a folder that `judgeloop review export` wrote"
        ) from None
    except ValueError as exc:
        raise DataError(f"is not valid JSON ({exc})", path=str(path)) from None


def push(export_dir: str | Path, ls: LabelStudio, title: str | None = None) -> dict:
    """Create or update the export's project; returns {"project", "url", "added", "already"}."""
    folder = Path(export_dir)
    manifest = _read_json(folder / MANIFEST)
    tasks = _read_json(folder / TASKS)
    config = labeling_config(manifest["kind"], manifest["labels"])
    record_path = folder / PROJECT_FILE
    record = _read_json(record_path) if record_path.exists() else None
    if record and record.get("url") == ls.url:
        project = ls.project(record["project"])
        if _normalised(project.get("label_config", "")) != _normalised(config):
            raise DataError(
                f"Label Studio project {record['project']}'s labeling interface no longer matches the spec "
                f"'{manifest['spec']}' (labels {', '.join(manifest['labels'])})",
                path=str(record_path),
                field="label_config",
                hint="export the review again for the current spec, or restore the project's interface",
            )
    else:
        name = title or f"judgeloop review: {manifest['judge']} {manifest['export']}"
        project = ls.create_project(name[:50], config)
        record = {"url": ls.url, "project": project["id"], "title": project.get("title", name)}
        tmp = record_path.with_name(record_path.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        tmp.replace(record_path)
    present = {t.get("data", {}).get("review_id") for t in ls.tasks(record["project"])}
    new = [t for t in tasks if t["data"]["review_id"] not in present]
    ls.import_tasks(record["project"], new)
    return {
        "project": record["project"],
        "url": f"{ls.url}/projects/{record['project']}",
        "added": len(new),
        "already": len(tasks) - len(new),
    }


def _normalised(xml: str) -> str:
    return "".join(xml.split())


def pull(export_dir: str | Path, ls: LabelStudio, spec, out: str | Path) -> tuple[int, int]:
    """Fetch the project's annotations and write reviewed items (as `judgeloop review import`)."""
    folder = Path(export_dir)
    record = _read_json(folder / PROJECT_FILE)
    data = ls.export(record["project"])
    path = folder / EXPORT_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # what was pulled is kept before anything is checked
    return import_review(path, spec, out, folder / MANIFEST)


def cmd_push(args) -> int:
    with LabelStudio(args.url, args.token) as ls:
        done = push(args.dir, ls, args.title)
    print(
        f"Label Studio project {done['project']}: {done['added']} tasks added, {done['already']} already there; "
        f"label them at {done['url']}"
    )
    print(f"then: judgeloop review pull {args.dir} --spec SPEC --out reviewed.jsonl")
    return 0


def cmd_pull(args) -> int:
    from data.spec import load_spec

    spec = load_spec(args.spec)
    with LabelStudio(args.url, args.token) as ls:
        n, unlabelled = pull(args.dir, ls, spec, args.out)
    print(
        f"wrote {n} reviewed items to {args.out}"
        + (f" ({unlabelled} tasks have no label yet)" if unlabelled else "")
        + f"; Label Studio's export is in {Path(args.dir) / EXPORT_FILE}"
    )
    return 0


__all__ = ["LabelStudio", "push", "pull", "LABEL_CONFIG"]
