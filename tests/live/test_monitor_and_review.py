"""`judgeloop monitor` and `judgeloop review` on real traffic through a real judge API into real SQLite:
a drift injected into the traffic trips the monitor and a stable window does not; a Label Studio
export round-trips into canonical labelled items; the live agreement weights the random share."""

import csv
import json
import time
from datetime import datetime, timezone

import pytest

import judgeloop
from data.jsonl import read_jsonl, write_jsonl
from data.labels import LabelSpace
from data.schema import Item
from eval.gate import write_result
from eval.harness import evaluate
from serve.client import JudgeClient
from tests.live.conftest import KEY, live_api
from tests.serve.helpers import pairwise_items
from workflows.review import MANIFEST, live_agreement


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def labelled(items: list[dict]) -> list[Item]:
    return [Item.model_validate({**it, "labels": ["A", "A", "B"], "label": "A"}) for it in items]


def swapped(items: list[dict]) -> list[dict]:
    """The drift: the same kind of traffic, but the better response now comes second."""
    return [{**it, "response_a": it["response_b"], "response_b": it["response_a"]} for it in items]


@pytest.fixture(scope="module")
def traffic(live_serving, tmp_path_factory):
    """A validation baseline, then a stable window and a drifted window of live traffic through the API."""
    d = tmp_path_factory.mktemp("monitor")
    service = live_serving.services["tiny-helpfulness"]
    base_items = labelled(pairwise_items(60, "v"))
    verdicts = list(service.score_stream(base_items))
    write_jsonl(d / "baseline" / "verdicts.jsonl", verdicts)
    write_result(d / "baseline" / "validation.json", evaluate(base_items, verdicts, service.spec, n_boot=200))
    db = d / "verdicts.sqlite"
    with live_api(live_serving, db, "--shadow=false") as (server, live):
        with JudgeClient(server.url, api_key=KEY) as client:
            t0 = time.time()
            stable = pairwise_items(60, "s")
            for i in range(0, 60, 20):
                client.judge_batch(stable[i : i + 20], "tiny-helpfulness")
            live.flush()
            t1 = time.time()
            time.sleep(0.05)
            drifted = swapped(pairwise_items(60, "d"))
            for i in range(0, 60, 20):
                client.judge_batch(drifted[i : i + 20], "tiny-helpfulness")
            live.flush()
            t2 = time.time() + 0.01
    return {"dir": d, "db": db, "validation": d / "baseline" / "validation.json", "t0": t0, "t1": t1, "t2": t2}


def run_monitor(traffic, out, since, until, *extra):
    return judgeloop.main(
        [
            "monitor",
            f"--baseline={traffic['validation']}",
            f"--log={traffic['db']}",
            f"--until={iso(until)}",
            f"--window_hours={(until - since) / 3600}",
            "--min_n=30",
            f"--out={out}",
            *extra,
        ]
    )


def test_a_stable_window_does_not_trip_the_monitor(traffic, tmp_path, capsys):
    assert run_monitor(traffic, tmp_path, traffic["t0"] - 0.5, traffic["t1"]) == 0
    m = json.loads((tmp_path / "monitor.json").read_text())
    assert m["live"]["n"] == 60 and not m["alert"]
    assert m["drift"]["psi"] < 0.05 and m["drift"]["chi2"]["p_value"] > 0.1
    engine = {r["name"]: r for r in m["rules"]}["engine"]  # served and validated in the same engine and dtype
    assert engine["status"] == "PASS" and list(m["engine"]["live"]) == [m["engine"]["validated"]]
    assert "ALERT" not in capsys.readouterr().err
    prom = (tmp_path / "monitor.prom").read_text()
    assert 'judgeloop_monitor_alert{judge="tiny-helpfulness",rule="psi"} 0.0' in prom
    assert 'judgeloop_monitor_verdicts{judge="tiny-helpfulness"} 60.0' in prom


def test_a_drift_injected_into_traffic_trips_the_monitor(traffic, tmp_path, capsys):
    assert run_monitor(traffic, tmp_path, traffic["t1"], traffic["t2"]) == 1
    err = capsys.readouterr().err
    assert "judgeloop monitor: ALERT for tiny-helpfulness" in err and "psi" in err
    m = json.loads((tmp_path / "monitor.json").read_text())
    assert m["live"]["n"] == 60 and m["alert"]
    failed = {r["name"] for r in m["rules"] if r["status"] == "FAIL"}
    assert {"psi", "chi2_p"} <= failed
    prom = (tmp_path / "monitor.prom").read_text()
    assert 'judgeloop_monitor_alert{judge="tiny-helpfulness",rule="psi"} 1.0' in prom
    html = (tmp_path / "monitor.html").read_text()
    assert "Live monitor: ALERT" in html and html.count("data:image/png;base64,") == 3
    assert "| psi |" in (tmp_path / "monitor.md").read_text()


def test_too_little_traffic_skips_the_drift_rules(traffic, tmp_path):
    assert run_monitor(traffic, tmp_path, traffic["t0"] - 0.5, traffic["t1"], "--min_n=1000") == 0
    m = json.loads((tmp_path / "monitor.json").read_text())
    assert {r["name"]: r["status"] for r in m["rules"]}["psi"] == "SKIP"


def test_a_bad_monitor_config_names_every_problem(tmp_path, capsys):
    assert judgeloop.main(["monitor", "--baseline=nope.json", "--max_psi=-1", "--window_hours=0"]) == 2
    err = capsys.readouterr().err
    assert (
        "field 'baseline': file 'nope.json' not found" in err
        and "field 'max_psi'" in err
        and "field 'window_hours'" in err
    )


def label_studio_export(tasks: list[dict], labels_per_task) -> list[dict]:
    """What Label Studio's JSON export gives for the imported tasks after annotation (two annotators each)."""
    out = []
    for k, (task, labels) in enumerate(zip(tasks, labels_per_task), 1):
        annotations = [
            {
                "id": 100 * k + j,
                "completed_by": j,
                "was_cancelled": False,
                "lead_time": 3.2,
                "result": [
                    {
                        "id": f"r{k}{j}",
                        "from_name": "label",
                        "to_name": "instruction",
                        "type": "choices",
                        "origin": "manual",
                        "value": {"choices": [lab]},
                    }
                ],
            }
            for j, lab in enumerate(labels, 1)
        ]
        annotations.append({"id": 100 * k + 9, "completed_by": 9, "was_cancelled": True, "result": []})
        out.append({"id": k, "data": task["data"], "annotations": annotations, "predictions": [], "project": 1})
    return out


def test_review_export_and_a_label_studio_export_round_trips(traffic, tiny_specs, tmp_path, capsys):
    from data.spec import load_spec
    from workflows.review import import_review

    spec = load_spec(tiny_specs["pairwise"])
    out = tmp_path / "review"
    assert (
        judgeloop.main(
            [
                "review",
                "export",
                "--judge=tiny-helpfulness",
                f"--spec={tiny_specs['pairwise']}",
                "--n=12",
                "--random-share=0.5",
                "--seed=1",
                f"--log={traffic['db']}",
                f"--out={out}",
            ]
        )
        == 0
    )
    assert "12 items to review (6 targeted, 6 uniform random) of 120 distinct items" in capsys.readouterr().out
    paths = {
        k: out / v
        for k, v in (
            ("manifest", MANIFEST),
            ("tasks", "review-tasks.json"),
            ("csv", "review.csv"),
            ("config", "labeling-config.xml"),
        )
    }
    manifest = json.loads(paths["manifest"].read_text())
    assert len(manifest["items"]) == 12 and manifest["population"] == 120
    strata = [e["stratum"] for e in manifest["items"].values()]
    assert strata.count("random") == 6 and strata.count("targeted") == 6
    assert manifest["strata"] == {"targeted": 6, "random": 114}
    targeted_conf = [e["confidence"] for e in manifest["items"].values() if e["stratum"] == "targeted"]
    random_conf = [e["confidence"] for e in manifest["items"].values() if e["stratum"] == "random"]
    inconsistent = [e for e in manifest["items"].values() if e["consistent"] is False]
    assert max(targeted_conf) <= min(random_conf) or inconsistent  # hardest first
    assert '<Choice value="tie"/>' in paths["config"].read_text()
    tasks = json.loads(paths["tasks"].read_text())
    assert all("verdict" not in t["data"] for t in tasks)  # reviewers never see the judge's verdict

    labels = [["A", "B"] if i % 3 else ["B", "B"] for i in range(len(tasks))]
    export_file = tmp_path / "project-1-at-2026-11-29.json"
    export_file.write_text(json.dumps(label_studio_export(tasks, labels), indent=2))
    n, unlabelled = import_review(export_file, spec, tmp_path / "reviewed.jsonl", paths["manifest"])
    assert (n, unlabelled) == (12, 0)
    reviewed = {it.id: it for it in read_jsonl(tmp_path / "reviewed.jsonl", Item)}
    for task, labs in zip(tasks, labels):
        rid = task["data"]["review_id"]
        it, entry = reviewed[rid], manifest["items"][rid]
        assert it.labels == labs and it.label == ("tie" if labs == ["A", "B"] else "B")
        assert (it.instruction, it.response_a, it.response_b) == (
            entry["item"]["instruction"],
            entry["item"]["response_a"],
            entry["item"]["response_b"],
        )
        assert it.meta["review"]["stratum"] == entry["stratum"] and it.meta["review"]["verdict"] == entry["verdict"]

    # the CLI, and the same labels through the CSV, with one bad cell
    def import_csv(rows: list[dict]) -> int:
        with open(paths["csv"], "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        spec_arg, out_arg = f"--spec={tiny_specs['pairwise']}", f"--out={tmp_path / 'from-csv.jsonl'}"
        return judgeloop.main(["review", "import", str(paths["csv"]), spec_arg, out_arg])

    rows = list(csv.DictReader(open(paths["csv"], encoding="utf-8")))
    for i, row in enumerate(rows):
        row["label"] = "maybe" if i == 2 else "A"
    assert import_csv(rows) == 2
    assert f"{paths['csv']}:4: field 'label': label 'maybe' is not one of A, B, tie" in capsys.readouterr().err
    assert not (tmp_path / "from-csv.jsonl").exists()  # nothing half-written
    rows[2]["label"] = "tie"
    assert import_csv(rows) == 0
    assert len(list(read_jsonl(tmp_path / "from-csv.jsonl", Item))) == 12

    # a bad label in the Label Studio export names the file, line and task
    bad = label_studio_export(tasks, [["A", "C"]] + labels[1:])
    export_file.write_text(json.dumps(bad, indent=2))
    assert (
        judgeloop.main(
            [
                "review",
                "import",
                str(export_file),
                f"--spec={tiny_specs['pairwise']}",
                f"--manifest={paths['manifest']}",
                f"--out={tmp_path / 'x.jsonl'}",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"{export_file}:" in err and "field '[0].annotations[1].result': label 'C' is not one of A, B, tie" in err

    # the live agreement goes into the monitoring page
    assert (
        run_monitor(
            traffic,
            tmp_path / "page",
            traffic["t0"] - 0.5,
            traffic["t2"],
            f"--reviews=[{tmp_path / 'reviewed.jsonl'}]",
            "--max_psi=null",
            "--min_chi2_p=null",
        )
        == 0
    )
    m = json.loads((tmp_path / "page" / "monitor.json").read_text())
    assert m["review"]["n_reviewed"] == 12  # an A/B split aggregates to tie, a label the judge could give
    assert 0 <= m["review"]["agreement"]["value"] <= 1
    assert "Live agreement with reviewers" in (tmp_path / "page" / "monitor.html").read_text()


def reviewed_item(i: int, stratum: str, size: int, judge: str, human: str) -> Item:
    return Item(
        id=f"r{i}",
        group=f"r{i}",
        kind="pairwise",
        instruction="q",
        response_a="a",
        response_b="b",
        labels=[human],
        label=human,
        meta={"review": {"export": "e1", "stratum": stratum, "stratum_size": size, "verdict": judge}},
    )


def test_live_agreement_weights_the_random_share_by_what_it_stands_for():
    # 10 targeted items (all wrong) out of 10 hard ones; 10 random items (all right) standing for 990 others
    items = [reviewed_item(i, "targeted", 10, "A", "B") for i in range(10)]
    items += [reviewed_item(10 + i, "random", 990, "A", "A") for i in range(10)]
    result = live_agreement(items, LabelSpace("pairwise", ["A", "B", "tie"]), n_boot=200)
    assert result["agreement"]["value"] == pytest.approx(0.99)  # not the raw 0.5 of the reviewed items
    assert result["random_share_agreement"]["value"] == 1.0
    assert result["strata"]["targeted"] == {"size": 10, "n_reviewed": 10, "agreement": 0.0}
    # one disagreement in the random share moves the estimate by 990/1000 * 1/10
    items[-1] = reviewed_item(19, "random", 990, "A", "B")
    result = live_agreement(items, LabelSpace("pairwise", ["A", "B", "tie"]), n_boot=200)
    assert result["agreement"]["value"] == pytest.approx(0.891)
    assert result["agreement"]["ci_low"] < 0.891 < result["agreement"]["ci_high"]
