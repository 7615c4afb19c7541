"""Label Studio for real: `judgeloop review push` and `judgeloop review pull` through ``label-studio-sdk``.

``push`` sends a review export (``judgeloop review export``'s directory; made first when the directory has
none) to a Label Studio project: it creates the project, with the labeling interface generated from the
judge spec (``workflows.review.labeling_config``, every value escaped), or reuses it, and imports each task
the project does not hold yet. Tasks are keyed by their ``data.review_id``: a rerun adds no duplicate. A
project whose labeling interface no longer matches the spec is updated only while nobody has annotated in
it; with annotations it is refused (the annotations may use labels the spec does not know).

``pull`` fetches the project's tasks with their annotations, writes them as a Label Studio JSON export
(``label-studio-pulled.json`` beside the manifest: the tasks of this export only) and reads that file with
``workflows.review.import_review``, the file import's own code: the same checks (each label in the spec's
label space, each problem located) and the same reviewed JSONL. The JSONL is written only when all is well:
an earlier pull's output is never lost to a bad one.

The server and token come from ``--url``/``--token`` or ``LABEL_STUDIO_URL``/``LABEL_STUDIO_API_KEY`` (the
names Label Studio's own tools read); the token is a personal access token or a legacy API token. Errors:
an unreachable server is ``ServerUnavailable`` (exit 3, as for the judge API); a refused token, a project
whose interface no longer matches the spec and labels outside the label space are user errors (exit 2).
``label_studio_sdk`` is imported only here, and only when a command runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from data.errors import ConfigError, DataError, ServerError, ServerUnavailable
from data.spec import load_spec
from serve.config import LiveConfig
from workflows.review import MANIFEST, export_review, import_review, label_studio_task, labeling_config

ENV_URL, ENV_TOKEN = "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"
LINK = "label-studio.json"  # beside the manifest: the server and project this export was pushed to
PULLED = "label-studio-pulled.json"  # the last pull's tasks, as a Label Studio JSON export
TITLE_MAX = 50  # Label Studio's limit on a project title (and at least 3 characters)
IMPORT_BATCH = 500


# --- the connection -----------------------------------------------------------------------------


def _detail(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("message") or ""
        errors = body.get("validation_errors")
        return f"{detail} {json.dumps(errors, ensure_ascii=False)}".strip() if errors else str(detail)
    return str(body or exc)[:200]


@contextlib.contextmanager
def _answers(url: str):
    """Label Studio's failures as located judgeloop errors (one line each; no traceback for the user's own)."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        yield
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ConfigError(
            f"not a Label Studio URL: {exc}", field="--url", hint=f"e.g. http://127.0.0.1:8080 ({ENV_URL})"
        )
    except httpx.TransportError as exc:  # refused, timed out, name not resolved: the server is not there now
        raise ServerUnavailable(
            f"Label Studio at {url} cannot be reached ({type(exc).__name__}: {exc})",
            field="--url",
            hint=f"is it running? the URL comes from --url or {ENV_URL}",
        )
    except ApiError as exc:
        if exc.status_code in (401, 403):
            raise ConfigError(
                f"Label Studio at {url} refused the token ({exc.status_code}: {_detail(exc)})",
                field="--token",
                hint=f"pass --token or set {ENV_TOKEN}: Label Studio's Account & Settings shows your access token",
            )
        raise ServerError(f"Label Studio at {url} answered {exc.status_code}: {_detail(exc)}", field="--url")
    except json.JSONDecodeError:
        raise ServerError(f"{url} does not answer as Label Studio's API (not JSON)", field="--url")


def connect(url: str | None = None, token: str | None = None):
    """(client, url): a ``label_studio_sdk.LabelStudio`` client, its token checked against the server."""
    url = (url or os.environ.get(ENV_URL) or "").strip().rstrip("/")
    token = (token or os.environ.get(ENV_TOKEN) or "").strip()
    if not url:
        raise ConfigError("no Label Studio URL", field="--url", hint=f"pass --url URL or set {ENV_URL}")
    if not token:
        raise ConfigError("no Label Studio token", field="--token", hint=f"pass --token TOKEN or set {ENV_TOKEN}")
    try:
        from label_studio_sdk import LabelStudio
    except ImportError:
        raise ConfigError("label-studio-sdk is not installed", hint="pip install 'judgeloop[integrations]'") from None
    with _answers(url):
        client = LabelStudio(base_url=url, api_key=token, timeout=60)
        client.users.whoami()  # a wrong token fails here, before anything is sent
    return client, url


# --- the project --------------------------------------------------------------------------------


def _canonical(config: str | None) -> str | None:
    try:
        return ET.canonicalize(xml_data=config or "", strip_text=True)
    except ET.ParseError:
        return None


def _choices(config: str | None) -> list[str] | None:
    try:
        root = ET.fromstring(config or "")
    except ET.ParseError:
        return None
    for node in root.iter("Choices"):
        if node.get("name") == "label":
            return [c.get("value", "") for c in node.iter("Choice")]
    return None


def config_mismatch(current: str | None, spec) -> str | None:
    """What differs between a project's labeling interface and the one generated from the spec (None: they match)."""
    wanted = labeling_config(spec.kind, spec.labels)
    if _canonical(current) is not None and _canonical(current) == _canonical(wanted):
        return None
    have = _choices(current)
    if have is not None and have != list(spec.labels):
        return f"its labels are {have}, the spec's {list(spec.labels)}"
    return f"its labeling interface is not the one generated from spec '{spec.name}' (kind {spec.kind})"


def _read_manifest(review_dir: Path) -> dict:
    path = review_dir / MANIFEST
    if not path.is_file():
        raise DataError(
            "no review export here (review-manifest.json is missing)",
            path=str(path),
            hint="--review-dir names the directory that judgeloop review export or push wrote",
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"not a review manifest: {exc}", path=str(path)) from None


def _write_json(path: Path, data) -> None:
    """Atomically (temp file then rename): a kill leaves the earlier file, never half of a new one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _link(review_dir: Path) -> dict:
    path = review_dir / LINK
    if not path.is_file():
        return {}
    try:
        link = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"not a Label Studio link file: {exc}", path=str(path)) from None
    return link if isinstance(link, dict) else {}


def default_title(judge: str) -> str:
    return f"judgeloop review: {judge}"[:TITLE_MAX]


def project_ref(url: str, review_dir: Path, project: str | None, judge: str) -> str:
    """Which project: ``--project`` (an id or a title), else the one this export was pushed to on this server,
    else the judge's default title (so each review of a judge lands in one project)."""
    if project:
        return project
    link = _link(review_dir)
    if link.get("url") == url and isinstance(link.get("project"), int):
        return str(link["project"])
    return default_title(judge)


def find_project(client, url: str, ref: str):
    """The project with that id or title, or None when no project has that title."""
    with _answers(url):
        if ref.isdigit():
            try:
                return client.projects.get(id=int(ref))
            except Exception as exc:  # the SDK's NotFoundError (an ApiError)
                if getattr(exc, "status_code", None) == 404:
                    raise ConfigError(
                        f"Label Studio at {url} has no project {ref}",
                        field="--project",
                        hint="name another with --project ID_OR_TITLE (push creates a project with a new title)",
                    ) from None
                raise
        found = [p for p in client.projects.list(title=ref) if p.title == ref]
        return client.projects.get(id=found[0].id) if found else None


def project_tasks(client, url: str, project_id: int) -> list[dict]:
    """Every task of the project with its annotations, in the shape of Label Studio's JSON export."""
    with _answers(url):
        return [
            {"id": t.id, "data": t.data, "annotations": list(t.annotations or [])}
            for t in client.tasks.list(project=project_id, fields="all")
        ]


def _review_id(task: dict) -> str | None:
    data = task.get("data")
    rid = data.get("review_id") if isinstance(data, dict) else None
    return rid if isinstance(rid, str) else None


# --- push and pull ------------------------------------------------------------------------------


def push(client, url: str, review_dir: Path, spec, project: str | None = None) -> dict:
    """Create or update the project and import the export's tasks it does not hold yet; returns a summary."""
    manifest = _read_manifest(review_dir)
    if manifest.get("spec") != spec.name:
        raise DataError(
            f"the review was exported for spec '{manifest.get('spec')}', not '{spec.name}'",
            path=str(review_dir / MANIFEST),
            field="spec",
        )
    config = labeling_config(spec.kind, spec.labels)
    ref = project_ref(url, review_dir, project, manifest["judge"])
    found = find_project(client, url, ref)
    title = ref
    existing: list[dict] = []
    with _answers(url):
        if found is None:
            if not 3 <= len(title) <= TITLE_MAX:
                raise ConfigError(f"a Label Studio project title has 3 to {TITLE_MAX} characters", field="--project")
            found = client.projects.create(
                title=title,
                label_config=config,
                description=f"judgeloop review of '{manifest['judge']}' (spec {spec.name})",
            )
            created = True
        else:
            created = False
            existing = project_tasks(client, url, found.id)
            differs = config_mismatch(found.label_config, spec)
            if differs:
                if any(t["annotations"] for t in existing):
                    raise ConfigError(
                        f"Label Studio project {found.id} '{found.title}' no longer matches spec '{spec.name}': "
                        f"{differs}; it holds annotations, so it is not changed",
                        field="--project",
                        hint="restore its labeling interface, or push to a new project (--project NEW_TITLE)",
                    )
                client.projects.update(id=found.id, label_config=config)
        have = {_review_id(t) for t in existing}
        tasks = [
            label_studio_task(rid, e["item"], spec.kind) for rid, e in manifest["items"].items() if rid not in have
        ]
        for start in range(0, len(tasks), IMPORT_BATCH):
            client.projects.import_tasks(id=found.id, request=tasks[start : start + IMPORT_BATCH])
    _write_json(review_dir / LINK, {"url": url, "project": found.id, "title": found.title, "spec": spec.name})
    return {
        "project": found.id,
        "title": found.title,
        "created": created,
        "added": len(tasks),
        "already": len(manifest["items"]) - len(tasks),
    }


def pull(client, url: str, review_dir: Path, spec, out: str | Path, project: str | None = None) -> dict:
    """The project's annotations of this export -> the reviewed JSONL (``import_review``); returns a summary."""
    manifest = _read_manifest(review_dir)
    ref = project_ref(url, review_dir, project, manifest["judge"])
    found = find_project(client, url, ref)
    if found is None:
        raise ConfigError(
            f"no Label Studio project '{ref}' at {url} for the export in {review_dir}",
            field="--project",
            hint="push it first (judgeloop review push), or name the project with --project ID_OR_TITLE",
        )
    differs = config_mismatch(found.label_config, spec)
    if differs:
        raise ConfigError(
            f"Label Studio project {found.id} '{found.title}' no longer matches spec '{spec.name}': {differs}",
            field="--project",
            hint="restore the project's labeling interface (judgeloop review push regenerates it while nobody "
            "has annotated), or pull with the spec it was pushed with",
        )
    tasks = project_tasks(client, url, found.id)
    ours = [t for t in tasks if _review_id(t) in manifest["items"]]
    pulled = review_dir / PULLED
    _write_json(pulled, ours)
    try:
        n, unlabelled = import_review(pulled, spec, out, review_dir / MANIFEST)
    except DataError as exc:  # name the Label Studio task each problem is in: it is fixed there
        ids = {_review_id(t): t["id"] for t in ours}
        for problem in exc.problems:
            rid = (problem.hint or "").removeprefix("task ")
            if rid in ids:
                problem.hint = (
                    f"review {rid}: Label Studio task {ids[rid]} of project {found.id}; fix it there, pull again"
                )
        raise
    return {
        "project": found.id,
        "title": found.title,
        "written": n,
        "unlabelled": unlabelled,
        "other": len(tasks) - len(ours),
        "missing": len(manifest["items"]) - len({_review_id(t) for t in ours}),
        "pulled": str(pulled),
    }


# --- the commands -------------------------------------------------------------------------------


def cmd_push(args) -> int:
    """`judgeloop review push` (its flags: integrations/cli.py)."""
    review_dir = Path(args.review_dir)
    if not (review_dir / MANIFEST).is_file():
        if not args.judge or args.n is None:
            raise DataError(
                "no review export here to push",
                path=str(review_dir / MANIFEST),
                hint="pass --judge NAME --n N to export one first, with the flags of judgeloop review export",
            )
        if args.n < 1:
            raise DataError("must be at least 1", field="--n")
        if not 0 <= args.random_share <= 1:
            raise DataError("must be between 0 and 1", field="--random-share")
        since = time.time() - args.window_hours * 3600 if args.window_hours else None
        spec = load_spec(args.spec or args.judge)
        log = args.log or LiveConfig().url(None)
        export_review(
            log, args.judge, spec, args.n, review_dir, since=since, random_share=args.random_share, seed=args.seed
        )
        print(f"exported {len(_read_manifest(review_dir)['items'])} items to review to {review_dir}")
    manifest = _read_manifest(review_dir)
    spec = load_spec(args.spec or manifest["spec"])
    client, url = connect(args.url, args.token)
    s = push(client, url, review_dir, spec, args.project)
    verb = "created" if s["created"] else "updated"
    print(
        f"Label Studio project {s['project']} '{s['title']}' {verb} at {url}: {s['added']} tasks added, "
        f"{s['already']} already there"
    )
    print(f"then: judgeloop review pull --review-dir {review_dir} --out {review_dir / 'reviewed.jsonl'}")
    return 0


def cmd_pull(args) -> int:
    """`judgeloop review pull` (its flags: integrations/cli.py)."""
    review_dir = Path(args.review_dir)
    manifest = _read_manifest(review_dir)
    spec = load_spec(args.spec or manifest["spec"])
    client, url = connect(args.url, args.token)
    s = pull(client, url, review_dir, spec, args.out, args.project)
    notes = [f"{s['unlabelled']} tasks had no label yet"] if s["unlabelled"] else []
    if s["missing"]:
        notes.append(f"{s['missing']} tasks of the export are not in the project")
    if s["other"]:
        notes.append(f"{s['other']} tasks of other exports left out")
    print(
        f"wrote {s['written']} reviewed items to {args.out} from Label Studio project {s['project']}"
        + (f" ({'; '.join(notes)})" if notes else "")
    )
    return 0
