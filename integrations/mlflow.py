"""MLflow tracking: training runs, validations and model evaluations, logged from the directories judgeloop wrote.

Every judgeloop run directory already holds what a tracking server wants, so this module reads it rather than
hooking into training or scoring (nothing below ``integrations`` knows MLflow exists):

- a training run (``judge.json`` + ``card.json``): the config and the data's sha256 as params, the dev curve
  (``dev_agreement`` by step) and the loss curve (``train_loss``) as metric histories, speed and wall time,
  the judge card, ``judge.json`` and the spec as artifacts;
- a validation (``validation.json``): every figure with an interval as three metrics (``metrics.accuracy``,
  ``..._ci_low``, ``..._ci_high``), the gate's verdict as a tag and metric, the HTML/Markdown report and the
  JSON as artifacts;
- a model evaluation (``evaluation.json``): every estimate with its interval the same way, the report too.

Each MLflow run is tagged with the judge's name and fingerprint and the git commit; the run id is written to
``mlflow.json`` in the directory (a rerun logs nothing twice to the same store), and a registered judge version
with that fingerprint records it (``Registry.link``). The store is ``--mlflow-uri``, else
``$MLFLOW_TRACKING_URI``, else ``./mlruns`` (SQLite ``mlruns/mlflow.db``, artifacts beside it).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from data.errors import ConfigError, DataError
from data.paths import JUDGE_FILE
from judge.registry import Registry

EXPERIMENT = "judgeloop"
RECORD = "mlflow.json"  # the run id written into the logged directory
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
INSTALL = "pip install 'judgeloop[integrations]' (mlflow-skinny and alembic)"


def _mlflow():
    try:
        import mlflow  # deferred: only `--mlflow` and `judgeloop mlflow` need it (seconds to import)
    except ImportError:
        raise ConfigError("MLflow is not installed", field="--mlflow", hint=INSTALL) from None
    return mlflow


def tracking_uri(uri: str | None = None) -> str:
    """The store: ``uri``, else ``$MLFLOW_TRACKING_URI``, else SQLite in ./mlruns (artifacts in ./mlruns too)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    root = Path("mlruns").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def kind_of(directory: Path) -> str:
    """training, validation or evaluation: what judgeloop wrote in ``directory``."""
    if (directory / JUDGE_FILE).is_file() and (directory / "card.json").is_file():
        return "training"
    if (directory / "validation.json").is_file():
        return "validation"
    if (directory / "evaluation.json").is_file():
        return "evaluation"
    raise DataError(
        "is not a judgeloop run: no judge.json + card.json (train), validation.json (eval) or evaluation.json "
        "(evaluate) in it",
        path=str(directory),
        hint="pass the directory `judgeloop train`, `eval --out` or `evaluate --out` wrote",
    )


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot be read as JSON ({type(exc).__name__}: {exc})", path=str(path)) from None


def flatten(value, prefix: str = "") -> dict:
    """Nested JSON as ``a.b.c`` keys (lists by index)."""
    if isinstance(value, dict):
        out: dict = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}.{i}"))
        return out
    return {prefix: value}


def interval_metrics(value, prefix: str = "") -> dict[str, float]:
    """Every finite number in a result as a metric; an interval ``{value, ci_low, ci_high}`` (or ``low``/
    ``high``) becomes ``name``, ``name_ci_low`` and ``name_ci_high``."""
    out: dict[str, float] = {}
    for key, v in flatten(value).items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        name = key
        for end, suffix in ((".value", ""), (".ci_low", "_ci_low"), (".ci_high", "_ci_high"), (".low", "_ci_low")):
            if key.endswith(end):
                name = key[: -len(end)] + suffix
                break
        else:
            if key.endswith(".high"):
                name = key[: -len(".high")] + "_ci_high"
        out[_metric_name(f"{prefix}{name}")] = float(v)
    return out


def _metric_name(name: str) -> str:
    # MLflow keys: alphanumerics, _ - . space / ; anything else becomes _
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)[:250]


def _params(cfg: dict) -> dict[str, str]:
    out = {}
    for key, v in flatten(cfg).items():
        text = json.dumps(v) if not isinstance(v, str) else v
        out[_metric_name(key)] = text[:MAX_PARAM_CHARS]
    return out


def _already_logged(directory: Path, uri: str) -> str | None:
    record = directory / RECORD
    if record.is_file():
        data = _read(record)
        if data.get("tracking_uri") == uri:
            return data.get("run_id")
    return None


def log_directory(directory: str | Path, uri: str | None = None, experiment: str = EXPERIMENT) -> tuple[str, bool]:
    """Logs one judgeloop directory to MLflow; returns (run id, whether it was logged now: False when it was
    already logged to this store)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError("is not a directory", path=str(directory), hint="pass a run directory judgeloop wrote")
    kind = kind_of(directory)
    uri = tracking_uri(uri)
    done = _already_logged(directory, uri)
    if done:
        return done, False
    mlflow = _mlflow()
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        artifacts = None
        if uri.startswith("sqlite:///"):
            artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
        exp_id = client.create_experiment(experiment, artifact_location=artifacts)
    else:
        exp_id = exp.experiment_id
    logger = {"training": _training, "validation": _validation, "evaluation": _evaluation}[kind]
    params, metrics, histories, tags, artifacts = logger(directory)
    run = client.create_run(exp_id, run_name=f"{kind}: {directory.name}", tags={"judgeloop.kind": kind, **tags})
    run_id = run.info.run_id
    try:
        from mlflow.entities import Metric, Param

        batch_params = [Param(k, v) for k, v in params.items()]
        stamp = int(run.info.start_time)
        batch_metrics = [Metric(k, v, stamp, 0) for k, v in metrics.items()]
        for name, points in histories.items():
            batch_metrics += [Metric(name, v, stamp, step) for step, v in points]
        for i in range(0, max(len(batch_params), len(batch_metrics)), 100):  # MLflow's batch limits
            client.log_batch(run_id, metrics=batch_metrics[i : i + 100], params=batch_params[i : i + 100])
        for path in artifacts:
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id)
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    (directory / RECORD).write_text(json.dumps({"tracking_uri": uri, "run_id": run_id, "kind": kind}, indent=2))
    fingerprint = tags.get("judgeloop.fingerprint")
    if fingerprint and kind == "training":
        link_registered(fingerprint, run_id)
    return run_id, True


def link_registered(fingerprint: str, run_id: str, registry: str | Path | None = None) -> dict | None:
    """Records the MLflow run id on the registered version with this fingerprint (if any)."""
    reg = Registry(registry)
    entry = reg.find_fingerprint(fingerprint)
    if entry is None:
        return None
    return reg.link(entry["name"], entry["version"], mlflow_run_id=run_id)


def _common_tags(judge: dict, card: dict | None = None) -> dict[str, str]:
    tags = {"judgeloop.judge": str(judge.get("name")), "judgeloop.fingerprint": str(judge.get("fingerprint"))}
    if card and card.get("git_commit"):
        tags["judgeloop.git_commit"] = str(card["git_commit"])
    return {k: v for k, v in tags.items() if v not in ("None", "")}


def _training(directory: Path):
    judge, card = _read(directory / JUDGE_FILE), _read(directory / "card.json")
    params = _params({"config": card.get("config", {})})
    for split in ("train", "dev"):
        for i, source in enumerate(card.get("data", {}).get(split) or []):
            if isinstance(source, dict) and source.get("sha256"):
                params[f"data.{split}.{i}.{source.get('name', i)}.sha256"] = str(source["sha256"])
    training = card.get("training", {})
    metrics = {
        k: float(v)
        for k, v in {
            "tokens_per_s": training.get("tokens_per_s"),
            "wall_s": training.get("wall_s"),
            "steps": training.get("steps"),
            "training_examples": card.get("data", {}).get("training_examples"),
        }.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    histories = {
        "dev_agreement": _curve(card.get("dev_curve"), ("agreement", "dev_agreement", "value")),
        "train_loss": _curve(card.get("loss_curve"), ("loss", "train_loss", "value")),
    }
    names = ("card.json", "card.md", JUDGE_FILE, "training.json")
    artifacts = [directory / n for n in names if (directory / n).is_file()]
    return params, metrics, {k: v for k, v in histories.items() if v}, _common_tags(judge, card), artifacts


def _curve(points, keys) -> list[tuple[int, float]]:
    """(step, value) pairs of a card curve: a list of {step, <value key>} or a {step: value} map."""
    out = []
    if isinstance(points, dict):
        points = [{"step": k, "value": v} for k, v in points.items()]
    for p in points or []:
        if not isinstance(p, dict):
            continue
        value = next((p[k] for k in keys if isinstance(p.get(k), (int, float))), None)
        step = p.get("step")
        if value is not None and step is not None and math.isfinite(value):
            out.append((int(float(step)), float(value)))
    return out


def _validation(directory: Path):
    result = _read(directory / "validation.json")
    judge = result.get("judge") or {}
    metrics = interval_metrics({k: result[k] for k in result if k not in ("provenance", "inputs", "interval")})
    gate = result.get("gate") or {}
    tags = _common_tags(judge)
    if "passed" in gate:
        tags["judgeloop.gate"] = "passed" if gate["passed"] else "failed"
        metrics["gate_passed"] = float(bool(gate["passed"]))
    if judge.get("engine"):
        tags["judgeloop.engine"] = str(judge["engine"])
    params = {
        k: str(v)
        for k, v in {
            "spec": (result.get("spec") or {}).get("name"),
            "dataset": (result.get("dataset") or {}).get("name"),
            "split": (result.get("dataset") or {}).get("split"),
            "dataset_sha256": (result.get("dataset") or {}).get("sha256"),
            "n_items": result.get("n_items"),
        }.items()
        if v is not None
    }
    reports = [*sorted(directory.glob("report*.html")), *sorted(directory.glob("report*.md"))]
    artifacts = [directory / "validation.json", *reports]
    return params, metrics, {}, tags, artifacts


def _interval(prefix: str, iv: dict | None) -> dict[str, float]:
    """An evaluate Interval ``{estimate, lo, hi}`` as three metrics."""
    if not isinstance(iv, dict):
        return {}
    pairs = ((prefix, iv.get("estimate")), (f"{prefix}_ci_low", iv.get("lo")), (f"{prefix}_ci_high", iv.get("hi")))
    return {_metric_name(k): float(v) for k, v in pairs if isinstance(v, (int, float)) and math.isfinite(v)}


def _estimates(name: str, row: dict) -> dict[str, float]:
    """A system's score or win rate: the judge's, and the corrected and human-only ones when people labelled."""
    corr = row.get("correction") or {}
    return (
        _interval(name, row.get("judge"))
        | _interval(f"{name}.corrected", corr.get("corrected"))
        | _interval(f"{name}.human", corr.get("human"))
    )


def _evaluation(directory: Path):
    """Per criterion: each system's score or pass rate, each win rate, each Bradley-Terry strength and rank, with
    their intervals (judge-only, and corrected/human-only where people labelled a sample)."""
    ev = _read(directory / "evaluation.json")
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {"judgeloop.corrected": str(bool(ev.get("corrected"))).lower()}
    for crit in ev.get("criteria") or []:
        c = crit.get("criterion", "criterion")
        judge = crit.get("judge") or {}
        tags[f"judgeloop.judge.{_metric_name(c)}"] = f"{judge.get('name')} {judge.get('fingerprint')}"
        for row in crit.get("systems") or []:
            metrics |= _estimates(f"{c}.{crit.get('metric', 'score')}.{row.get('system')}", row)
        for row in crit.get("win_rates") or []:
            metrics |= _estimates(f"{c}.win_rate.{row.get('system')}_vs_{row.get('opponent')}", row)
        for row in crit.get("ranking") or []:
            metrics |= _interval(f"{c}.strength.{row.get('system')}", row.get("strength"))
            if isinstance(row.get("rank"), int):
                metrics[_metric_name(f"{c}.rank.{row.get('system')}")] = float(row["rank"])
    dataset = ev.get("dataset") or {}
    params = {
        k: str(v)[:MAX_PARAM_CHARS]
        for k, v in {
            "systems": ",".join(dataset.get("systems") or []),
            "dataset_sha256": dataset.get("sha256"),
            "n_common_prompts": dataset.get("n_common"),
            "baseline": ev.get("baseline"),
            "evaluation_run_id": ev.get("run_id"),
        }.items()
        if v not in (None, "")
    }
    artifacts = [directory / "evaluation.json", *sorted(directory.glob("*.html")), *sorted(directory.glob("*.md"))]
    return params, metrics, {}, tags, artifacts
