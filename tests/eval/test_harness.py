"""The harness on real reference verdicts and on constructed judges whose biases are known."""

from __future__ import annotations

import json

import numpy as np
import pytest

import judgeloop
from data import dataset_registry as registry
from data.errors import DataError, JudgeloopError
from data.jsonl import write_jsonl
from data.schema import Item, JudgeRef, Verdict
from data.spec import load_spec
from eval.harness import evaluate
from eval.metrics import pearson, spearman
from eval.result import ValidationResult
from tests.eval.helpers import constant_judge, noisy_judge, pairwise_items
from workflows.validate import verdicts_for

PAIRWISE_SPEC = load_spec("helpfulness-pairwise")


@pytest.fixture(scope="module")
def pandalm(mirror):
    return list(registry.load_items("pandalm"))


@pytest.fixture(scope="module")
def gpt35(pandalm):
    refs = {name: list(registry.load_reference_verdicts("pandalm", name)) for name in ("pandalm-7b",)}
    verdicts = list(registry.load_reference_verdicts("pandalm", "gpt-3.5-turbo"))
    return evaluate(
        pandalm,
        verdicts,
        PAIRWISE_SPEC,
        dataset_info={"name": "pandalm", "split": "all"},
        reference_verdicts=refs,
        n_boot=300,
    )


def test_pandalm_gpt35_reproduces_the_published_figure(gpt35):
    """Tie rule: the human aggregate is the majority of the 3 annotators (no PandaLM item has a
    three-way split); a verdict the file cannot parse ("garbage", 25 items) counts as wrong.
    Over all 999 items with tie as a third class gpt-3.5 scores 697/999 = 69.8%; on the 894 items
    whose majority is A or B (a gpt-3.5 'Tie' there is wrong) it scores 692/894 = 77.4%."""
    m = gpt35.metrics
    assert gpt35.n_items == 999 and gpt35.n == 894
    assert m["accuracy_with_ties"].value == pytest.approx(697 / 999, abs=1e-6)
    assert round(m["accuracy_with_ties"].value, 3) == 0.698
    assert m["accuracy"].value == pytest.approx(692 / 894, abs=1e-6)
    assert m["accuracy"].ci_low < m["accuracy"].value < m["accuracy"].ci_high
    assert gpt35.errors.no_verdict == 25
    assert gpt35.reference_judges["pandalm-7b"].metrics["accuracy"].value == pytest.approx(0.7103, abs=1e-4)
    # PLATFORM.md: humans preferred the longer response in 67.5% of PandaLM's non-tie items
    assert gpt35.bias.human_longer_preferred_rate == pytest.approx(0.675, abs=0.001)
    assert gpt35.baselines["pick_longer"] == pytest.approx(0.676, abs=0.002)
    ceiling = gpt35.human_ceiling
    assert ceiling.annotators == 3
    assert ceiling.metrics["accuracy"].value > ceiling.judge["accuracy"].value
    assert ValidationResult.model_validate_json(gpt35.to_json()) == gpt35


def test_result_has_the_documented_schema(gpt35):
    for key in (
        "schema_version",
        "judge",
        "dataset",
        "n",
        "metrics",
        "human_ceiling",
        "bias",
        "calibration",
        "baselines",
        "length_control",
        "slices",
        "errors",
        "reference_judges",
        "comparison",
        "tie_policy",
    ):
        assert key in gpt35.model_fields_set
    assert gpt35.judge.model_fields_set >= {"name", "version", "fingerprint"}
    assert gpt35.dataset.model_fields_set >= {"name", "split", "sha256"}
    for name in ("accuracy", "cohen_kappa", "macro_f1", "krippendorff_alpha"):
        assert gpt35.metrics[name].model_fields_set == {"value", "ci_low", "ci_high"}
    assert gpt35.bias.model_fields_set >= {
        "swap_consistency",
        "first_position_rate",
        "longer_preferred_rate",
        "human_longer_preferred_rate",
    }
    assert gpt35.calibration.model_fields_set >= {"ece", "brier"}
    assert gpt35.length_control.model_fields_set >= {"acc_longer_preferred", "acc_shorter_preferred", "balanced"}


def test_a_length_tracking_judge_is_visible():
    items = pairwise_items(120, seed=1)
    longer = lambda it: "A" if len(it.response_a) >= len(it.response_b) else "B"  # noqa: E731
    result = evaluate(items, constant_judge(items, lambda it: (longer(it), longer(it))), PAIRWISE_SPEC, n_boot=100)
    lc, bias = result.length_control, result.bias
    assert lc.acc_longer_preferred == 1.0 and lc.acc_shorter_preferred == 0.0 and lc.balanced == 0.5
    assert bias.longer_preferred_rate == 1.0 and bias.agrees_with_longer_rule == 1.0
    assert result.metrics["accuracy"].value == pytest.approx(result.baselines["pick_longer"])


def _length_driven_items(n: int, seed: int) -> tuple[list[Item], np.ndarray]:
    """Humans prefer the longer response, and also a hidden quality: P(A) = sigmoid(1.5 log(len ratio) + quality)."""
    from data.labels import aggregate

    rng = np.random.default_rng(seed)
    items, quality = [], rng.normal(0, 1.5, n)
    for i in range(n):
        la, lb = (int(x) for x in rng.integers(10, 400, 2))
        p_a = 1 / (1 + np.exp(-(1.5 * np.log(la / lb) + quality[i])))
        label = "A" if rng.random() < p_a else "B"
        items.append(
            Item(
                id=f"it-{i}",
                group=f"g-{i // 3}",
                kind="pairwise",
                instruction=f"task {i // 3}",
                response_a="a" * la,
                response_b="b" * lb,
                labels=[label],
                label=aggregate("pairwise", [label]),
            )
        )
    return items, quality


def _odds_judge(items: list[Item], log_odds) -> list[Verdict]:
    from tests.eval.helpers import verdict

    out = []
    for it, z in zip(items, log_odds):
        pa = float(1 / (1 + np.exp(-z)))
        out.append(verdict(it.id, {"A": pa, "B": 1 - pa, "tie": 0.0}, {"A": pa, "B": 1 - pa, "tie": 0.0}))
    return out


def test_beyond_length_tells_a_length_detector_from_a_judge_that_knows_quality():
    items, quality = _length_driven_items(400, seed=3)
    ratio = np.array([np.log((len(it.response_a) + 1) / (len(it.response_b) + 1)) for it in items])
    detector = evaluate(items, _odds_judge(items, 3 * ratio), PAIRWISE_SPEC, n_boot=200)
    knows = evaluate(
        items,
        _odds_judge(items, quality + np.random.default_rng(4).normal(0, 1, len(items))),
        PAIRWISE_SPEC,
        n_boot=200,
    )
    d, k = detector.length_control.beyond_length, knows.length_control.beyond_length
    assert d.n == k.n > 300
    assert d.gain.value == pytest.approx(0, abs=1e-4) and d.gain.ci_low <= 0 and d.p_value > 0.5
    assert d.log_loss_length == pytest.approx(k.log_loss_length)  # the same length-only model
    assert k.gain.ci_low > 0.01 and k.p_value < 1e-6
    assert detector.metrics["accuracy"].value > 0.6  # the detector is no fool on these items, just no judge
    # judges without probabilities (a reference judge's bare labels) get no such test
    bare = [v.model_copy(update={"probs": None}) for v in _odds_judge(items, quality)]
    assert evaluate(items, bare, PAIRWISE_SPEC, n_boot=50).length_control.beyond_length is None


def test_a_first_position_judge_is_visible():
    items = pairwise_items(90, seed=2)
    # picks whatever is shown first: A in the "ab" pass, B in the "ba" pass (in item terms)
    result = evaluate(items, constant_judge(items, lambda it: ("A", "B")), PAIRWISE_SPEC, n_boot=100)
    assert result.bias.swap_consistency == 0.0
    assert result.bias.first_position_rate == 1.0
    assert result.bias.n_both_orders == 90


def test_human_ceiling_by_hand():
    def item(i, labels):
        return Item(
            id=str(i),
            group=str(i),
            kind="pairwise",
            instruction="q",
            response_a="a",
            response_b="bb",
            labels=labels,
            label=None,
        )

    items = [item(0, ["A", "A", "A"]), item(1, ["A", "A", "B"]), item(2, ["B", "B", "B"])]
    result = evaluate(items, constant_judge(items, lambda it: ("A", "A")), PAIRWISE_SPEC, n_boot=50)
    ceiling = result.human_ceiling
    # item 0: 3 pairs, target A, all agree. item 1: slots 0,1 target split A/B = tie (left out of accuracy);
    # slot 2 target A, annotator says B. item 2: 3 pairs, target B, all agree. -> humans 6/7, judge (A) 4/7
    assert ceiling.n_pairs == 7
    assert ceiling.metrics["accuracy"].value == pytest.approx(6 / 7, abs=1e-6)
    assert ceiling.judge["accuracy"].value == pytest.approx(4 / 7, abs=1e-6)
    assert ceiling.judge_to_ceiling == pytest.approx(4 / 6, abs=1e-6)
    # with ties: 9 pairs; humans: item 1 slots 0,1 say A vs target tie -> 6/9; judge: 4/9
    assert ceiling.metrics["accuracy_with_ties"].value == pytest.approx(6 / 9, abs=1e-6)


def test_single_annotator_data_has_no_ceiling():
    items = pairwise_items(30, seed=4, annotators=1)
    result = evaluate(items, noisy_judge(items), PAIRWISE_SPEC, n_boot=50)
    assert result.human_ceiling is None


def test_incumbent_comparison_is_paired():
    items = pairwise_items(150, seed=5)
    cand = noisy_judge(items, skill=2.5, seed=1)
    same = evaluate(items, cand, PAIRWISE_SPEC, incumbent_verdicts=cand, n_boot=200).comparison
    assert same.diff.model_dump() == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert same.mcnemar.p_value == 1.0
    worse = noisy_judge(items, skill=0.0, seed=2, fingerprint="0" * 64, name="old")
    comp = evaluate(items, cand, PAIRWISE_SPEC, incumbent_verdicts=worse, n_boot=200).comparison
    assert comp.incumbent.fingerprint == "0" * 64
    assert comp.diff.ci_low > 0 and comp.mcnemar.p_value < 0.01


def test_pointwise_and_binary_kinds():
    spec = load_spec("summary-coherence")
    rng = np.random.default_rng(0)
    items, verdicts = [], []
    for i in range(80):
        ratings = [int(x) for x in np.clip(rng.integers(1, 6) + rng.integers(-1, 2, 3), 1, 5)]
        items.append(
            Item(
                id=str(i),
                group=str(i // 2),
                kind="pointwise",
                instruction="summarise",
                response="s" * (i + 1),
                labels=ratings,
                label=round(float(np.mean(ratings)), 6),
            )
        )
        guess = int(np.clip(round(np.mean(ratings) + rng.normal(0, 0.8)), 1, 5))
        probs = {str(k): (0.6 if k == guess else 0.1) for k in range(1, 6)}
        verdicts.append(
            Verdict(
                id=str(i),
                verdict=str(guess),
                probs=probs,
                score=sum(k * probs[str(k)] for k in range(1, 6)),
                confidence=0.6,
                judge=JudgeRef(name="coh", fingerprint="c" * 64),
            )
        )
    result = evaluate(items, verdicts, spec, n_boot=100)
    m = result.metrics
    assert set(m) == {"accuracy", "weighted_kappa", "spearman", "kendall", "pearson", "krippendorff_alpha"}
    scores = [v.score for v in verdicts]
    means = [it.label for it in items]
    assert m["spearman"].value == pytest.approx(spearman(scores, means), abs=1e-6)
    assert m["pearson"].value == pytest.approx(pearson(scores, means), abs=1e-6)
    assert result.human_ceiling.annotators == 3 and "weighted_kappa" in result.human_ceiling.metrics
    assert result.calibration.n == 80
    result.to_json()  # allow_nan=False: no NaN anywhere

    binary = load_spec("answer-correctness")
    items = [
        Item(
            id=str(i),
            group=str(i),
            kind="binary",
            instruction="q",
            response="r",
            labels=["yes" if i % 3 else "no"] * 2,
            label="yes" if i % 3 else "no",
        )
        for i in range(30)
    ]
    verdicts = [Verdict(id=str(i), verdict="yes", judge=JudgeRef(name="b", fingerprint="b" * 64)) for i in range(30)]
    result = evaluate(items, verdicts, binary, n_boot=50)
    assert result.metrics["accuracy"].value == pytest.approx(result.baselines["always_yes"])
    assert result.bias.model_dump(exclude_unset=True) == {} and result.length_control is None


# --- bad input --------------------------------------------------------------------------------------


def test_verdicts_must_match_items():
    items = pairwise_items(10)
    verdicts = noisy_judge(items)
    with pytest.raises(DataError, match="1 of 10 items have no verdict: 'it-9'"):
        evaluate(items, verdicts[:-1], PAIRWISE_SPEC, n_boot=10)
    stray = verdicts + [Verdict(id="nope", verdict="A", judge=verdicts[0].judge)]
    with pytest.raises(DataError, match="ids that are not items: 'nope'"):
        evaluate(items, stray, PAIRWISE_SPEC, n_boot=10)
    with pytest.raises(DataError, match="not binary"):
        evaluate(items, verdicts, load_spec("answer-correctness"), n_boot=10)


def test_cli_reports_bad_files_with_location(tmp_path, capsys):
    items = pairwise_items(6)
    write_jsonl(tmp_path / "test.jsonl", items)
    good = noisy_judge(items)
    write_jsonl(tmp_path / "short.jsonl", good[:-1])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join(json.dumps(v.model_dump(mode="json", exclude_none=True)) for v in good[:2])
        + '\n{"id": "it-2", "verdict": "A"}\n'
    )
    base = [
        "eval",
        "--items",
        str(tmp_path / "test.jsonl"),
        "--spec",
        "helpfulness-pairwise",
        "--out",
        str(tmp_path / "o"),
    ]
    assert judgeloop.main(base + ["--verdicts", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3: field 'judge': is missing" in err
    assert judgeloop.main(base + ["--verdicts", str(tmp_path / "short.jsonl")]) == 2
    assert "short.jsonl: field 'id': 1 of 6 items have no verdict: 'it-5'" in capsys.readouterr().err
    assert judgeloop.main(base + ["--verdicts", str(tmp_path / "short.jsonl"), "--reference", "nonsense"]) == 2


def test_eval_scores_a_judge_directory_through_the_scoring_core(tmp_path, pandalm, capsys):
    from judge.fingerprint import fingerprint
    from tests.tiny_model import save_tiny_model

    judge_dir = save_tiny_model(tmp_path / "judge")
    spec = PAIRWISE_SPEC
    (judge_dir / "judge.json").write_text(
        json.dumps(
            {
                "name": spec.name,
                "version": "tiny",
                "spec": spec.to_dict(),
                "base_model": ".",
                "adapter": None,
                "fingerprint": fingerprint(spec, judge_dir),
            }
        )
    )
    subset = pandalm[:12]
    write_jsonl(tmp_path / "test.jsonl", subset)
    verdicts = verdicts_for(str(judge_dir), subset, spec, engine="transformers")
    assert [v.id for v in verdicts] == [i.id for i in subset] and all(v.verdict in spec.labels for v in verdicts)
    out = tmp_path / "o"
    assert (
        judgeloop.main(
            [
                "eval",
                "--judge",
                str(judge_dir),
                "--engine",
                "transformers",
                "--items",
                str(tmp_path / "test.jsonl"),
                "--spec",
                spec.name,
                "--out",
                str(out),
                "--n-boot",
                "50",
            ]
        )
        == 0
    )
    result = json.loads((out / "validation.json").read_text())
    assert result["judge"]["fingerprint"] == verdicts[0].judge.fingerprint and result["n_items"] == 12
    # the scored verdicts are kept beside the result: re-evaluating them gives the same metrics without the model
    assert result["inputs"]["verdicts"]["path"] == str(out / "verdicts.jsonl")
    assert (
        judgeloop.main(
            [
                "eval",
                "--verdicts",
                str(out / "verdicts.jsonl"),
                "--items",
                str(tmp_path / "test.jsonl"),
                "--spec",
                spec.name,
                "--out",
                str(tmp_path / "again"),
                "--n-boot",
                "50",
            ]
        )
        == 0
    )
    again = json.loads((tmp_path / "again" / "validation.json").read_text())
    assert again["metrics"] == result["metrics"]
    before = (out / "verdicts.jsonl").read_text()  # an incumbent where this run keeps its verdicts: refused first
    assert (
        judgeloop.main(
            [
                "eval",
                "--judge",
                str(judge_dir),
                "--engine",
                "transformers",
                "--items",
                str(tmp_path / "test.jsonl"),
                "--spec",
                spec.name,
                "--out",
                str(out),
                "--incumbent",
                str(out / "verdicts.jsonl"),
            ]
        )
        == 2
    )
    assert "field '--incumbent'" in capsys.readouterr().err and (out / "verdicts.jsonl").read_text() == before
    with pytest.raises(JudgeloopError, match="answers spec 'helpfulness-pairwise', not 'answer-correctness'"):
        verdicts_for(str(judge_dir), subset, load_spec("answer-correctness"), engine="transformers")


def test_cli_eval_with_a_registered_reference(tmp_path, pandalm, capsys):
    subset = pandalm[:120]
    write_jsonl(tmp_path / "test.jsonl", subset)
    write_jsonl(tmp_path / "v.jsonl", noisy_judge(subset, skill=2.0))
    (tmp_path / "manifest.json").write_text(json.dumps({"dataset": "pandalm"}))
    rc = judgeloop.main(
        [
            "eval",
            "--verdicts",
            str(tmp_path / "v.jsonl"),
            "--items",
            str(tmp_path / "test.jsonl"),
            "--spec",
            "helpfulness-pairwise",
            "--reference",
            "pandalm:gpt-3.5-turbo",
            "--out",
            str(tmp_path / "out"),
            "--n-boot",
            "100",
            "--registry",
            str(tmp_path / "reg"),
        ]
    )
    assert rc == 0
    result = json.loads((tmp_path / "out" / "validation.json").read_text())
    assert result["dataset"]["name"] == "pandalm" and result["dataset"]["split"] == "test"
    assert len(result["dataset"]["sha256"]) == 64
    assert result["reference_judges"]["gpt-3.5-turbo"]["n_items"] == 120
    assert result["provenance"]["commands"][0].startswith("judgeloop eval --verdicts")
    assert "Accuracy" in capsys.readouterr().out


def test_a_reference_judge_is_measured_on_the_judges_slices_where_it_has_verdicts():
    """Where within the data the judge beats a reference (pick-the-longer, another judge), not only overall: the
    reference's accuracy per slice value, over the main items it covers."""
    from eval.report import plot_slices

    items = [it for it in pairwise_items(120, group_size=2) if it.label in ("A", "B")]
    flip = {"A": "B", "B": "A"}
    judge = JudgeRef(name="j", fingerprint="f" * 64)
    # the judge is right on 'alpha' and wrong on 'beta'; the reference judges only 'beta', always right
    mine = [
        Verdict(id=it.id, verdict=it.label if it.meta["source"] == "alpha" else flip[it.label], judge=judge)
        for it in items
    ]
    ref = [Verdict(id=it.id, verdict=it.label, judge=judge) for it in items if it.meta["source"] == "beta"]
    result = ValidationResult.model_validate(
        evaluate(items, mine, PAIRWISE_SPEC, reference_verdicts={"other": ref}, n_boot=100)
    )
    assert result.slices["source"]["alpha"].accuracy.value == 1.0
    assert result.slices["source"]["beta"].accuracy.value == 0.0
    by_source = result.reference_judges["other"].slices["source"]
    assert set(by_source) == {"beta"}  # no verdict on 'alpha': no row, not a zero
    assert by_source["beta"].accuracy.value == 1.0
    assert by_source["beta"].n == sum(it.meta["source"] == "beta" for it in items)
    assert by_source["beta"].swap_consistency is None  # one order only
    assert sum(r.n for r in result.reference_judges["other"].slices["length"].values()) == by_source["beta"].n
    assert plot_slices(result)  # the judge's bars with the reference's markers
