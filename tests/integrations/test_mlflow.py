"""MLflow tracking against a real local MLflow store (SQLite + artifacts in tmp): a training run through
`judgeloop train --mlflow`, a validation and its report through `judgeloop mlflow log`, read back with MLflow's
client."""

from __future__ import annotations

import json

import mlflow  # the integrations extra (make test installs it)
import pytest

import judgeloop
from data.jsonl import write_jsonl
from judge.registry import Registry
from tests.eval.helpers import noisy_judge, pairwise_items
from tests.train.helpers import SPEC, write_items
from tests.train.helpers import pairwise_items as fox_items

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


def run_of(uri: str, directory) -> mlflow.entities.Run:
    record = json.loads((directory / "mlflow.json").read_text())
    assert record["tracking_uri"] == uri
    return mlflow.MlflowClient(uri).get_run(record["run_id"])


def test_a_training_run_is_logged_with_config_data_hashes_dev_curve_and_card(tmp_path, tiny_model_dir, store, capsys):
    (tmp_path / "mlruns").mkdir()
    args = [
        "train",
        f"--spec={SPEC}",
        f"--base_model={tiny_model_dir}",
        f"--output_dir={tmp_path / 'run'}",
        f"--data.train={write_items(tmp_path / 'train.jsonl', fox_items(12, 't'))}",
        f"--data.dev={write_items(tmp_path / 'dev.jsonl', fox_items(4, 'd', seed=1))}",
        "--max_steps=4",
        "--eval.steps=2",
        "--batch_size=4",
        "--logging_steps=1",
        "--lora.rank=4",
        "--lora.alpha=8",
        "--mlflow",
        f"--mlflow-uri={store}",
    ]
    assert judgeloop.main(args) == 0
    (run_dir,) = [p.parent for p in (tmp_path / "run").rglob("card.json")]
    run = run_of(store, run_dir)
    card = json.loads((run_dir / "card.json").read_text())
    assert run.info.status == "FINISHED" and run.data.tags["judgeloop.kind"] == "training"
    assert run.data.tags["judgeloop.fingerprint"] == card["judge"]["fingerprint"]
    assert run.data.params["config.max_steps"] == "4" and run.data.params["config.lora.rank"] == "4"
    assert any(k.startswith("data.train.") and k.endswith(".sha256") for k in run.data.params)
    client = mlflow.MlflowClient(store)
    curve = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "dev_agreement")]
    assert curve == [(p["step"], p["agreement"]) for p in card["dev_curve"]] and len(curve) >= 2
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == len(card["loss_curve"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"card.json", "judge.json"} <= artifacts
    out = capsys.readouterr().out
    assert f"logged as run {run.info.run_id}" in out
    # a rerun logs nothing twice; registering the judge afterwards links the run; a wrong directory is refused
    assert judgeloop.main(["mlflow", "log", str(run_dir), f"--mlflow-uri={store}"]) == 0
    assert "already logged" in capsys.readouterr().out
    assert len(client.search_runs([run.info.experiment_id])) == 1
    fp, reg = card["judge"]["fingerprint"], tmp_path / "registry"
    register = ["registry", "register", "fox", "1", f"--model={run_dir}", f"--fingerprint={fp}", f"--registry={reg}"]
    assert judgeloop.main([*register, f"--card={run_dir / 'card.json'}"]) == 0
    assert Registry(reg).resolve("fox", "1")["links"] == {"mlflow_run_id": run.info.run_id}
    # a version registered before the run was logged gets the id when it is logged
    Registry(reg).register("fox", "2", fp, str(run_dir))
    from integrations.mlflow import link_registered

    assert link_registered(fp, run.info.run_id, reg)["links"] == {"mlflow_run_id": run.info.run_id}
    assert judgeloop.main(["mlflow", "log", str(tmp_path), f"--mlflow-uri={store}"]) == 2
    assert "is not a judgeloop run" in capsys.readouterr().err


def test_a_validation_is_logged_with_every_interval_the_gate_and_the_report(tmp_path, store, monkeypatch):
    monkeypatch.chdir(tmp_path)
    items = pairwise_items(40, seed=3)
    write_jsonl("test.jsonl", items)
    write_jsonl("judge.jsonl", noisy_judge(items, skill=1.2, seed=1, name="helpful"))
    argv = ["eval", "--verdicts=judge.jsonl", "--items=test.jsonl", f"--spec={SPEC}", "--n-boot=50", "--out=eval"]
    assert judgeloop.main(argv) == 0
    assert judgeloop.main(["report", "eval/validation.json", "--out=eval"]) == 0
    assert judgeloop.main(["mlflow", "log", "eval", f"--mlflow-uri={store}"]) == 0
    run = run_of(store, tmp_path / "eval")
    result = json.loads((tmp_path / "eval" / "validation.json").read_text())
    accuracy = result["metrics"]["accuracy"]
    m = run.data.metrics
    assert m["metrics.accuracy"] == pytest.approx(accuracy["value"])
    assert m["metrics.accuracy_ci_low"] == pytest.approx(accuracy["ci_low"])
    assert m["metrics.accuracy_ci_high"] == pytest.approx(accuracy["ci_high"])
    assert run.data.tags["judgeloop.kind"] == "validation" and run.data.params["spec"] == SPEC
    artifacts = {a.path for a in mlflow.MlflowClient(store).list_artifacts(run.info.run_id)}
    assert "validation.json" in artifacts and any(a.endswith(".html") for a in artifacts)


def test_a_missing_mlflow_store_directory_or_bad_uri_is_one_clear_line(tmp_path, capsys):
    assert judgeloop.main(["mlflow", "log", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_an_evaluation_is_logged_per_system_with_judge_only_and_corrected_intervals(tmp_path, store):
    from tests.workflows.evaluate.helpers import FakeJudge, human_labels_for, write_responses
    from workflows.evaluate.run import RunOptions, evaluate_run

    responses = write_responses(tmp_path / "r.jsonl", systems=("v1", "v2"), n_prompts=30)
    labels = human_labels_for(tmp_path / "labels.jsonl", responses, frac=0.4, criterion="helpfulness-pairwise")
    judges = [FakeJudge("helpfulness-pairwise", bias=0.8).handle()]
    out = tmp_path / "evaluation"
    ev, _ = evaluate_run(responses, judges, out, RunOptions(baseline="v1", labels=str(labels), n_boot=100))
    assert judgeloop.main(["mlflow", "log", str(out), f"--mlflow-uri={store}"]) == 0
    run = run_of(store, out)
    (crit,) = ev.criteria
    (win,) = crit.win_rates
    name = f"{crit.criterion}.win_rate.{win.system}_vs_{win.opponent}"
    m = run.data.metrics
    assert m[name] == pytest.approx(win.judge.estimate) and m[f"{name}_ci_low"] == pytest.approx(win.judge.lo)
    assert m[f"{name}.corrected"] == pytest.approx(win.correction.corrected.estimate)
    assert run.data.tags["judgeloop.corrected"] == "true" and run.data.params["systems"] == "v1,v2"
