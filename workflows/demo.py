"""`judgeloop demo`: the whole loop on the embedded default model, on a 2-core CPU box.

fetch the recipe's base model (Gemma-3-270M by default) -> prepare PandaLM (grouped splits) -> fine-tune a LoRA
judge on PandaLM's training split and the recipe's other sources, less every instruction of the demo's test
split -> merge it ->
validate the untuned base (incumbent) and the candidate on the held-out test split through
vLLM -> rank the nine systems of vicuna80-human with the candidate on the same vLLM, corrected with a
seeded 20% of the human votes, beside the ranking by all votes -> gate -> register, promote only on a
passing gate -> serve production through vLLM and the judge API -> score the test items through the API ->
check the served verdicts equal the validated ones -> report. Everything lands in ``runs/demo``; a rerun
reuses what is done (the served verdicts too: it starts no server when nothing changed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from data import embedded_model
from data.config import to_dict
from data.dataset_registry import get_dataset, load_reference_verdicts, resolve_file
from data.jsonl import JsonlAppender, read_jsonl, write_jsonl
from data.paths import CONFIGS_DIR
from data.prepare import prepare
from data.provenance import git_commit, sha256_file
from data.schema import Item, Verdict
from eval.gate import check, load_gates, write_result
from eval.harness import evaluate
from eval.report import failed_rules, summary, write_report
from eval.result import ValidationResult
from judge.loading import load_judge
from judge.registry import Registry
from serve.child import free_port, judge_api_child
from serve.client import JudgeClient
from train.config import load_train_config, recipe_base_model
from workflows import promotion, steps
from workflows.evaluate.run import judge_handle
from workflows.evaluate.votes_check import RESULT_FILE, check_against_votes, summary_lines

DATASET = "pandalm"
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)  # ~200 test pairs, grouped by instruction
REFERENCES = ("gpt-3.5-turbo", "pandalm-7b")
DEFAULT_RECIPE = "gemma3-cpu-mix.yaml"  # chosen by leave-one-source-out and cross-validation (docs/results.md)
SERVED_FILE, SERVED_RECORD = "served_verdicts.jsonl", "served.json"  # verdicts through the API, and their speed
PROB_TOLERANCE = 1e-4  # served vs validated probabilities (same engine, same dtype)
log = logging.getLogger("judgeloop")


class Stages:
    """Numbered stage banners with timings; the timings go into summary.json."""

    def __init__(self, total: int):
        self.total, self.done, self.seconds = total, 0, {}

    @contextlib.contextmanager
    def stage(self, name: str, what: str):
        self.done += 1
        log.info(f"\n[{self.done}/{self.total}] {what}")
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 1)
        log.info(f"[{self.done}/{self.total}] {name}: done in {self.seconds[name]:.0f} s")


def _fetch(ref: str | None) -> None:
    """Fetch an embedded model (once; its terms of use named); any other model is the recipe's to load."""
    model = embedded_model.find(ref) if ref else None
    if model is None:
        log.info(f"  {ref}: not an embedded model; training loads it from where the recipe says")
        return
    log.info(f"  {embedded_model.fetch(model.name, progress=log.info)}")
    terms = embedded_model.terms(model.name)
    if terms:
        log.info(f"  using {model.name} means accepting {terms[0]}; a copy lies at {terms[1]}")


def _prepare_data(out: Path, limit: int | None = None) -> Path:
    """Grouped splits of the demo dataset (reused when the sources and split are unchanged).

    ``limit`` (a reduced demo, as the test runs it) keeps the first N items of each split.
    """

    data_dir = out / "data"
    manifest = data_dir / "manifest.json"
    ds = get_dataset(DATASET)
    sources = {k: sha256_file(resolve_file(ds, k)) for k in ds.files}
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if (
            old.get("fractions") == list(SPLIT_FRACTIONS)
            and old.get("demo_limit") == limit
            and {k: v["sha256"] for k, v in old["source_files"].items()} == sources
        ):
            log.info(f"reusing {data_dir} (same source files and split)")
            return data_dir
    info = prepare(DATASET, data_dir, seed=0, fractions=SPLIT_FRACTIONS, progress=log.info)
    for split, s in info["splits"].items():
        log.info(f"  {split:>5}: {s['items']:>4} items in {s['groups']:>3} instruction groups")
    if limit:
        for split in info["splits"]:
            path = data_dir / f"{split}.jsonl"
            write_jsonl(path, list(read_jsonl(path, Item))[:limit])
        log.info(f"  reduced demo: the first {limit} items of each split")
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "demo_limit": limit}, indent=2) + "\n")
    return data_dir


def _train(out: Path, data_dir: Path, train_config: Path, train_overrides: Sequence[str] = ()) -> Path:
    """Train unless a finished run with the same resolved config and data hashes is there."""
    overrides = train_args(out, data_dir, train_config, train_overrides)
    hashes = {split: sha256_file(data_dir / f"{split}.jsonl") for split in ("train", "dev")}
    return steps.train_in_child(train_config, overrides, hashes)


def train_args(out: Path, data_dir: Path, train_config: Path, train_overrides: Sequence[str] = ()) -> list[str]:
    """The recipe's `judgeloop train` overrides for the demo's splits."""
    # the demo's PandaLM split replaces the recipe's pandalm; other sources it mixes in stay, less every item
    # sharing an instruction with the demo's test split (tulu1-human shares 169 with PandaLM)
    data = load_train_config(train_config, list(train_overrides)).data
    mixed = [s for s in data.train if s != DATASET]
    held = [*data.exclude_instructions_of, str(data_dir / "test.jsonl")] if mixed else []
    overrides = [
        f"--output_dir={out / 'train'}",
        f"--data.train=[{','.join([str(data_dir / 'train.jsonl'), *mixed])}]",
        f"--data.dev=[{data_dir / 'dev.jsonl'}]",
        *([f"--data.exclude_instructions_of=[{','.join(held)}]"] if held else []),
        *train_overrides,
    ]
    if data.mix:  # the recipe's share for pandalm goes to the split that replaces it
        mix = {str(data_dir / "train.jsonl") if k == DATASET else k: v for k, v in data.mix.items()}
        overrides.append(f"--data.mix={json.dumps(mix)}")
    return overrides


def _validate(name: str, items, verdicts, spec, out_dir: Path, incumbent=None, references=None) -> ValidationResult:

    result = evaluate(
        items,
        verdicts,
        spec,
        judge_info={"version": name},
        dataset_info={"name": DATASET, "split": "test", "sha256": sha256_file(out_dir.parent / "data" / "test.jsonl")},
        reference_verdicts=references or {},
        incumbent_verdicts=incumbent,
        incumbent_info={"version": "base"} if incumbent else None,
        seed=0,
        n_boot=1000,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_result(out_dir / "validation.json", result)
    for line in summary(result):
        log.info("  " + line)
    return result


def _register(registry, name: str, version: str, fingerprint: str, model: str, spec: str, validation: Path) -> str:
    """Register (or on a rerun find) this exact judge; versions are immutable, so the name carries the fingerprint."""
    version = f"{version}-{fingerprint[:8]}"
    if name in registry.names() and version in registry.load(name)["versions"]:
        promotion.attach(registry, name, version, validation)
    else:
        promotion.register(registry, name, version, fingerprint, model, spec=spec, validation=validation)
    return version


@contextlib.contextmanager
def _judge_api(production: str, serve_config: Path, log_path: Path, registry_root: Path):
    """`judgeloop serve` as a child process (vLLM + the judge API); stopped, with its vLLM, on exit."""

    api_port, vllm_port = free_port(), free_port()
    key = secrets.token_urlsafe(24)
    cfg_path = log_path.with_name("serve.yaml")
    cfg = steps.serve_config_for(serve_config, [production], [f"--api.port={api_port}", f"--vllm.port={vllm_port}"])
    cfg_path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    env = {"JUDGELOOP_API_KEY": key, "JUDGELOOP_REGISTRY": str(Path(registry_root).resolve())}
    with judge_api_child([str(cfg_path)], api_port, log_path, env, cfg.vllm.startup_timeout_s + 60) as url:
        yield url, key


def _served_before(out: Path, fingerprint: str, items: list[Item]) -> tuple[list[Verdict] | None, float | None]:
    """An earlier run's verdicts through the API, complete and by the judge production serves now, with their
    speed; (None, None) when there are none."""
    record = json.loads((out / SERVED_RECORD).read_text()) if (out / SERVED_RECORD).exists() else {}
    if record.get("fingerprint") != fingerprint:
        return None, None
    served = steps.finished_verdicts(out / SERVED_FILE, items, lambda: fingerprint)
    if served is None:
        return None, None
    log.info(f"reusing {out / SERVED_FILE}")
    return served, record["judgments_per_s"]


def _score_through_api(
    url: str, key: str, judge_name: str, items: list[Item], out_path: Path
) -> tuple[list[Verdict], float]:

    if out_path.exists():
        out_path.unlink()
    start = time.perf_counter()
    with JudgeClient(url, api_key=key) as client, JsonlAppender(out_path) as sink:
        for i in range(0, len(items), 32):
            for v in client.judge_batch(items[i : i + 32], judge_name, both_orders=True):
                sink.write(v)
    seconds = time.perf_counter() - start
    return list(read_jsonl(out_path, Verdict)), seconds


def _engines(verdicts: list[Verdict]) -> str:
    return ", ".join(sorted({v.judge.engine or "unknown" for v in verdicts}))


def _same_verdicts(served: list[Verdict], validated: list[Verdict]) -> tuple[bool, str]:
    by_id = {v.id: v for v in validated}
    problems = []
    served_on, validated_on = _engines(served), _engines(validated)
    if served_on != validated_on:  # another dtype flips near ties: named once, then the verdicts it flipped
        problems.append(f"served by {served_on}, validated on {validated_on}: not the validated verdicts")
    for v in served:
        w = by_id.get(v.id)
        if w is None:
            problems.append(f"{v.id}: not validated")
        elif v.judge.fingerprint != w.judge.fingerprint:
            problems.append(f"{v.id}: fingerprint {v.judge.fingerprint[:12]} != {w.judge.fingerprint[:12]}")
        elif v.verdict != w.verdict or v.error or w.error:
            problems.append(f"{v.id}: served {v.verdict} vs validated {w.verdict}")
        # across engines every probability moves a little: the engine line names that, only flips are listed
        elif v.judge.engine == w.judge.engine and max(abs(v.probs[k] - w.probs[k]) for k in w.probs) > PROB_TOLERANCE:
            problems.append(f"{v.id}: probabilities differ by more than {PROB_TOLERANCE}")
    if len(served) != len(validated):
        problems.append(f"{len(served)} served vs {len(validated)} validated")
    return not problems, "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")


def _figures(result: ValidationResult) -> dict:
    m = result.metrics["accuracy"]
    lc = result.length_control
    return {
        "accuracy": m.value,
        "accuracy_ci": [m.ci_low, m.ci_high],
        "swap_consistency": result.bias.swap_consistency,
        "acc_shorter_preferred": lc.acc_shorter_preferred if lc else None,
        "acc_longer_preferred": lc.acc_longer_preferred if lc else None,
    }


def run_demo(
    out: Path,
    train_config: Path,
    serve_config: Path,
    gates: Path,
    *,
    limit: int | None = None,
    train_overrides: Sequence[str] = (),
) -> dict:
    """The whole loop; ``limit`` and ``train_overrides`` make the reduced demo (few items, few steps)."""

    out.mkdir(parents=True, exist_ok=True)
    stages = Stages(10)
    start = time.perf_counter()
    base_model = recipe_base_model(train_config, list(train_overrides))
    with stages.stage("model", f"fetch the recipe's base model ({base_model})"):
        _fetch(base_model)
    with stages.stage("data", f"prepare {DATASET} with splits grouped by instruction"):
        data_dir = _prepare_data(out, limit)
    test_items = list(read_jsonl(data_dir / "test.jsonl", Item))
    with stages.stage("train", f"fine-tune a LoRA judge ({train_config})"):
        run_dir = _train(out, data_dir, train_config, train_overrides)
    with stages.stage("merge", "merge the adapter for serving on CPU"):
        merged = steps.merged(run_dir)
    candidate = load_judge(merged)
    spec = candidate.spec
    base_ref = spec.name  # a spec name = its untuned base model
    with stages.stage("validate_base", "validate the untuned base model (the incumbent) through vLLM"):
        base_verdicts = steps.score_with_vllm(base_ref, test_items, out / "base" / "verdicts.jsonl", serve_config)
        base = _validate("base", test_items, base_verdicts, spec, out / "base")
    with steps.LazyVllm(str(merged), serve_config) as candidate_vllm:  # one vLLM start for the next two stages
        with stages.stage("validate_candidate", "validate the fine-tuned candidate through vLLM"):
            test_ids = {i.id for i in test_items}
            references = {
                name: [v for v in load_reference_verdicts(DATASET, name) if v.id in test_ids] for name in REFERENCES
            }
            cand_verdicts = steps.score_with_vllm(
                str(merged), test_items, out / "candidate" / "verdicts.jsonl", serve_config, candidate_vllm
            )
            cand = _validate(
                candidate.version,
                test_items,
                cand_verdicts,
                spec,
                out / "candidate",
                incumbent=base_verdicts,
                references=references,
            )
        with stages.stage(
            "evaluate", "rank vicuna80-human's nine systems with the candidate, corrected by 20% of the votes"
        ):
            votes = _rank_vicuna80(candidate_vllm, candidate.fingerprint, out / "evaluate", limit)
            for line in summary_lines(votes):
                log.info("  " + line)
    with stages.stage("gate", f"gate the candidate ({gates}), register it, promote only on a pass"):
        cand.gate = check(cand, load_gates(gates), config_path=str(gates))
        write_result(out / "candidate" / "validation.json", cand)
        for rule in cand.gate.rules:
            log.info(f"  {rule.status:<4} {rule.name:<22} {rule.figure!s:<24} {rule.op} {rule.threshold}")
        registry = Registry(out / "registry")
        name = spec.name
        base_version = _register(
            registry,
            name,
            "base",
            base.judge.fingerprint,
            load_judge(base_ref).model_path,
            spec.name,
            out / "base" / "validation.json",
        )
        cand_version = _register(
            registry,
            name,
            candidate.version,
            candidate.fingerprint,
            str(merged),
            spec.name,
            out / "candidate" / "validation.json",
        )
        passed = cand.gate.passed
        if passed:
            promotion.promote(registry, name, cand_version)
        production_entry = registry.resolve(name, "production") if passed else None
        production = f"registry:{name}" if passed else base_ref  # serving resolves production through the registry
        validated = cand_verdicts if passed else base_verdicts
        production_fingerprint = (cand if passed else base).judge.fingerprint
        log.info(
            f"  gate {'PASSED: promoted ' + candidate.version if passed else 'FAILED: the candidate is not promoted'}; "
            f"production serves {'the candidate' if passed else 'the untuned base (incumbent)'}"
        )
    with stages.stage("serve", "serve production with vLLM + the judge API, score the test items through the API"):
        served, per_s = _served_before(out, production_fingerprint, test_items)
        if served is None:
            with _judge_api(production, serve_config, out / "serve.log", registry.root) as (url, key):
                served, seconds = _score_through_api(url, key, name, test_items, out / SERVED_FILE)
            per_s = 2 * len(served) / seconds  # a judgment = one order of one pair
            log.info(f"  {len(served)} verdicts through the API in {seconds:.1f} s ({per_s:.1f} judgments/s)")
            served_json = {"fingerprint": production_fingerprint, "judgments_per_s": per_s}
            (out / SERVED_RECORD).write_text(json.dumps(served_json) + "\n")
        matches, why = _same_verdicts(served, validated)
        log.info(f"  served == validated: {matches}{'' if matches else ' (' + why + ')'}")
    with stages.stage("report", "write the validation report"):
        paths = write_report(cand, out / "report", trend=registry.trend(name))
    ceiling = cand.human_ceiling
    summary = {
        "base": _figures(base),
        "tuned": _figures(cand),
        "longer_rule_accuracy": cand.baselines.get("pick_longer"),
        "reference_judges": {k: v.metrics["accuracy"].value for k, v in cand.reference_judges.items()},
        "human_ceiling": ceiling.metrics["accuracy"].value if ceiling else None,
        "judge_vs_loo_majority": ceiling.judge["accuracy"].value if ceiling else None,
        "gate": "pass" if passed else "fail",
        "failed_rules": failed_rules(cand),
        "promoted": passed,
        "production": production_entry["version"] if production_entry else base_version,
        "served_matches_validated": matches,
        "served_mismatch": None if matches else why,
        "served_judgments_per_s": round(per_s, 2),
        "n_test_items": len(test_items),
        "fingerprints": {"base": base.judge.fingerprint, "tuned": candidate.fingerprint},
        "seconds": {**stages.seconds, "total": round(time.perf_counter() - start, 1)},
        "git_commit": git_commit(),
        "report": str(paths["html"]),
        "vicuna80": {
            "judge": "tuned",
            "ranking_human": votes["ranking_human"],
            "ranking_judge": votes["ranking_judge"],
            "ranking_corrected": [r["system"] for r in votes["ranking_corrected"] or []],
            "kendall_tau": votes["kendall_tau"],
            "kendall_tau_corrected": votes["kendall_tau_corrected"],
            "kendall_tau_labelled_only": votes["kendall_tau_labelled_only"],
            "label_fraction": votes["label_fraction"],
            "n_labelled": votes["n_labelled"],
            "win_rate_coverage": votes["coverage"],
            "median_width_ratio": votes["median_width_ratio"],
            "check": str(out / "evaluate" / RESULT_FILE),
            "evaluation_report": votes["report"],
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_table(summary, out)
    return summary


def _rank_vicuna80(engine: steps.LazyVllm, fingerprint: str, out: Path, limit: int | None) -> dict:
    """The model-evaluation step (workflows/evaluate/votes_check.py) on the candidate's vLLM; reused when done by
    this judge. The reduced demo ranks on its first 3 questions."""
    max_prompts = 3 if limit else None
    done = out / RESULT_FILE
    if done.exists():
        earlier = json.loads(done.read_text())
        if earlier["judge"]["fingerprint"] == fingerprint and earlier["max_prompts"] == max_prompts:
            log.info(f"reusing {done}")
            return earlier
    return check_against_votes(
        judge_handle(engine.service()),
        out,
        fraction=0.2,
        seed=0,
        n_boot=1000 if not limit else 200,
        max_prompts=max_prompts,
        progress=log.isEnabledFor(logging.INFO),
    )


def _print_table(s: dict, out: Path) -> None:

    def acc(f):
        lo, hi = f["accuracy_ci"]
        return f"{f['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]"

    def num(x):
        return "n/a" if x is None else f"{x:.3f}"

    t = Table(title="judgeloop demo: PandaLM held-out test split (non-tie items)")
    t.add_column("")
    t.add_column("base (untuned)")
    t.add_column("tuned (LoRA)")
    t.add_row("agreement with humans [95% CI]", acc(s["base"]), acc(s["tuned"]))
    t.add_row("swap consistency", num(s["base"]["swap_consistency"]), num(s["tuned"]["swap_consistency"]))
    t.add_row(
        "acc. where humans preferred the shorter",
        num(s["base"]["acc_shorter_preferred"]),
        num(s["tuned"]["acc_shorter_preferred"]),
    )
    t.add_row("human ceiling (annotator vs others)", num(s["human_ceiling"]), num(s["human_ceiling"]))
    t.add_row("pick-the-longer rule", num(s["longer_rule_accuracy"]), num(s["longer_rule_accuracy"]))
    for name, value in s["reference_judges"].items():
        t.add_row(f"reference: {name}", num(value), num(value))
    t.add_row(
        "gate",
        "incumbent",
        f"{s['gate'].upper()}" + (f" ({', '.join(s['failed_rules'])})" if s["failed_rules"] else ""),
    )
    t.add_row("served == validated", "", str(s["served_matches_validated"]))
    t.add_row("served judgments/s (vLLM + API)", "", f"{s['served_judgments_per_s']:.1f}")
    Console(width=140).print(t)
    v = s["vicuna80"]
    t = v["kendall_tau"]

    def tau(x):
        return "n/a" if x is None else f"{x:.2f}"

    print(
        f"vicuna80-human, 9 systems ranked by the tuned judge: Kendall tau with all human votes {t['estimate']:.2f} "
        f"[{t['lo']:.2f}, {t['hi']:.2f}]; corrected with {v['n_labelled']} votes ({100 * v['label_fraction']:.0f}%): "
        f"tau {tau(v['kendall_tau_corrected'])} (those votes alone: {tau(v['kendall_tau_labelled_only'])}); "
        f"evaluation: {v['evaluation_report']}"
    )
    print(f"total {s['seconds']['total'] / 60:.1f} min; report: {s['report']}; summary: {out / 'summary.json'}")


def cmd_demo(args) -> int:
    """`judgeloop demo` (its flags: workflows/cli.py); ``args.overrides``: training config fields."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: see train/cli.py
    # a SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so every server the demo started is stopped
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    run_demo(
        Path(args.out),
        Path(args.train_config or CONFIGS_DIR / "train" / DEFAULT_RECIPE),
        Path(args.serve_config or CONFIGS_DIR / "serve" / "cpu.yaml"),
        Path(args.gates or CONFIGS_DIR / "gates" / "default.yaml"),
        limit=args.limit,
        train_overrides=args.overrides,
    )
    return 0
