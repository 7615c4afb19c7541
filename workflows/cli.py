"""The workflow commands' parsers: `judgeloop eval` (and `eval all`), `train all`, `registry`,
`promote`, `rollback`, `monitor`, `review`, `retrain` and `demo`.

Each command's implementation lives in its workflow module (``cmd_*``) and is imported only when the
command runs (``lazy``): judgeloop builds the whole parser tree on every call (``judgeloop --help``
too), and the workflows import torch, vLLM's client, SciPy... (seconds). The registry commands are
here: they are small.
"""

from __future__ import annotations

import argparse
import importlib
import json

from data.cli_base import add_command, add_group, lazy, moved_flag, positive_hours, positive_int
from data.errors import JudgeloopError
from workflows.evaluate import EVALUATION_HISTORY


def _fields(module: str, cls: str):
    def fields() -> dict[str, str]:
        from data.config import field_help  # deferred: module docstring

        return field_help(getattr(importlib.import_module(module), cls))

    return fields


# --- eval, eval all, train all --------------------------------------------------------------------


def add_eval_commands(commands) -> None:
    """`judgeloop eval` and `eval all`; `train all` on train/'s `train` (a workflow above train/)."""
    ev = add_command(
        commands,
        "eval",
        help="validate a judge against human labels (validation.json; eval all: every criterion)",
        description="Validate a judge against human labels and write OUT/validation.json: its verdicts "
        "(--verdicts), or a judge to score first (--judge) through the serving engine.",
        example="judgeloop eval --judge runs/smollm2-cpu --items prepared/pandalm/test.jsonl "
        "--spec helpfulness-pairwise --out runs/eval",
        run=lazy("workflows.validate", "cmd_eval"),
    )
    moved_flag(ev, "--all", "judgeloop eval all")
    who = ev.add_mutually_exclusive_group(required=True)
    who.add_argument("--verdicts", help="the judge's verdicts (JSONL, one per item)")
    who.add_argument("--judge", help="score with a judge: a spec name (its untuned base model) or a judge directory")
    what = ev.add_mutually_exclusive_group(required=True)
    what.add_argument("--items", help="labelled items (canonical JSONL, e.g. prepared/pandalm/test.jsonl)")
    what.add_argument("--dataset", help="all items of a registered dataset")
    ev.add_argument("--spec", required=True, help="judge spec name or path")
    _engine_flags(ev, "configs/serve/cpu.yaml")
    ev.add_argument("--split", help="split name to record (default: the items file's name)")
    ev.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="DATASET:JUDGE|NAME=FILE",
        help="a reference judge to score on the same items (repeatable)",
    )
    ev.add_argument("--incumbent", help="the incumbent judge's verdicts on the same items (paired comparison)")
    ev.add_argument("--judge-version", help="version to record (default: looked up in the registry by fingerprint)")
    ev.add_argument("--out", default="runs/eval", help="output directory (default runs/eval)")
    ev.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ev.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap replicates (default 1000)")
    ev.add_argument(
        "--injection",
        type=int,
        default=0,
        metavar="N",
        help="with --judge: also measure the verdict-flip rate under the injection corpus on N of the "
        "items (eval/injection.py; shown in the report)",
    )
    _registry_flag(ev)

    every = ev.add_subcommand(
        "all",
        help="validate every criterion's judge beside its untuned base, gate each, write the criteria report",
        description="For each criterion of the criteria registry: its trained judge and the untuned base "
        "scored on its test split through the serving engine, validated (the judge paired against the "
        "base), the judge gated; the criteria report has a table and a section per criterion.",
        example="judgeloop eval all --only helpfulness,harmlessness --max-items 200",
        run=lazy("workflows.all_criteria", "cmd_eval_all"),
    )
    every.add_argument("--criteria", help="criteria registry (default configs/criteria.yaml)")
    every.add_argument("--only", metavar="A,B", help="comma-separated criteria to validate (default: all)")
    every.add_argument("--out", help="output directory (default RUNS_DIR/report)")
    _engine_flags(every, "configs/serve/criteria-cpu.yaml")
    every.add_argument(
        "--max-items",
        type=int,
        help="validate on a seeded sample of whole groups of about this many "
        "test items per criterion (to bound CPU time; default all)",
    )
    every.add_argument("--seed", type=int, default=0, help="bootstrap and sampling seed")
    every.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap replicates (default 1000)")

    train_all = commands.choices["train"].add_subcommand(
        "all",
        help="train every criterion of the criteria registry not trained yet, one at a time",
        description="Train each criterion's judge (its CPU config; --gpu: the shared GPU recipe with the "
        "criterion's overrides) into RUNS_DIR/<criterion>, skipping those already trained; a criterion "
        "that stops on bad input does not stop the others (exit 2 at the end, naming each).",
        example="judgeloop train all --only helpfulness,harmlessness --dry-run",
        run=lazy("workflows.all_criteria", "cmd_train_all"),
    )
    train_all.add_argument("--criteria", help="criteria registry (default configs/criteria.yaml)")
    train_all.add_argument("--only", metavar="A,B", help="comma-separated criteria (default: all)")
    train_all.add_argument(
        "--gpu", action="store_true", help="the shared GPU recipe (gpu_train) instead of the CPU configs"
    )
    train_all.add_argument("--dry-run", action="store_true", help="print the train commands only")

    loso = add_command(
        commands,
        "loso",
        help="leave-one-source-out: train a recipe without each pairwise source, validate on the one left out",
        description="For each source S of the recipe's data.train: train CONFIG on the others (instructions "
        "shared with S dropped), score S's items through vLLM, validate them (pick-the-longer as a paired "
        "reference). Writes OUT/loso.json, OUT/loso.md and each fold's validation and report under "
        "OUT/<source>/; a rerun reuses finished folds. --key=value overrides go to every fold's training.",
        example="judgeloop loso configs/train/smollm2-cpu-sources.yaml --out runs/loso",
        run=lazy("workflows.loso", "cmd_loso"),
        overrides=True,
    )
    loso.add_argument("config", metavar="CONFIG", help="training recipe YAML")
    loso.add_argument(
        "--sources",
        metavar="A,B",
        help="the sources left out in turn (default: every registered dataset in the recipe's data.train)",
    )
    loso.add_argument("--only", metavar="A,B", help="run only these folds (default: every source)")
    loso.add_argument("--out", default="runs/loso", help="output directory (default runs/loso)")
    loso.add_argument(
        "--max-items",
        type=positive_int,
        help="score a seeded sample of whole groups of about this many items per left-out source (default all)",
    )
    loso.add_argument("--serve-config", metavar="CONFIG", help="serve config (default configs/serve/cpu.yaml)")
    loso.add_argument("--seed", type=int, default=0, help="bootstrap and sampling seed")


def _engine_flags(p: argparse.ArgumentParser, default_config: str) -> None:
    p.add_argument(
        "--engine",
        choices=["vllm", "transformers"],
        default="vllm",
        help="the engine to score with (default vllm, the serving engine)",
    )
    p.add_argument(
        "--serve-config", metavar="CONFIG", help=f"serve config for the engine settings (default {default_config})"
    )


# --- registry, promote, rollback ------------------------------------------------------------------


def cmd_registry(args) -> int:
    from eval.gate import read_result  # deferred: module docstring
    from judge.registry import Registry
    from workflows import promotion

    reg = Registry(args.registry)
    if args.action == "list":
        names = [args.name] if args.name else reg.names()
        if not names:
            print(f"no judges registered in {reg.root}")
        for name in names:
            record = reg.load(name)
            for version, e in record["versions"].items():
                passed = promotion.passing_gate(reg, e) is not None
                print(
                    f"{name:<24} {version:<10} {e['status']:<10} {e['fingerprint'][:16]}  "
                    f"gate {'passed' if passed else 'none'}  {e['registered']}"
                )
    elif args.action == "register":
        fingerprint = args.fingerprint
        if not fingerprint and args.validation:
            fingerprint = read_result(args.validation).judge.fingerprint
        if not fingerprint:
            raise JudgeloopError(
                "a fingerprint is required",
                field="--fingerprint",
                hint="pass --fingerprint or --validation (its judge fingerprint is used)",
            )
        entry = promotion.register(
            reg, args.name, args.version, fingerprint, args.model, args.adapter, args.spec, args.card, args.validation
        )
        mlflow_run = promotion.mlflow_run_id(args.card, args.adapter, args.model)
        if mlflow_run:  # the run was logged to MLflow (`--mlflow`): the version carries its run id
            entry = reg.link(entry["name"], entry["version"], mlflow_run_id=mlflow_run)
        print(
            f"registered {entry['name']} {entry['version']} ({entry['fingerprint'][:16]}) as a candidate in {reg.root}"
        )
    elif args.action == "attach":
        entry = promotion.attach(reg, args.name, args.version, args.validation)
        info = entry["validations"][-1]
        print(f"attached {info['file']} to {args.name} {args.version} (gate passed: {info['gate_passed']})")
    elif args.action == "show":
        print(json.dumps(reg.resolve(args.name, args.ref), indent=2))
    elif args.action == "history":
        for event in reg.history(args.name):
            detail = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("time", "action", "version"))
            print(f"{event['time']}  {event['action']:<8} {event.get('version', ''):<10} {detail}")
    return 0


def cmd_promote(args) -> int:
    from judge.registry import Registry  # deferred: module docstring
    from workflows import promotion

    reg = Registry(args.registry)
    entry = promotion.promote(
        reg,
        args.name,
        args.version,
        args.validation,
        override_loosened_gate=args.override_loosened_gate,
        allow_external_verdicts=args.allow_external_verdicts,
        reason=args.reason,
    )
    event = entry["history"][-1]
    if "reason" in event:  # an override was used: say so, with the reason the history keeps
        used = []
        if "override_loosened_gate" in event:
            used.append(f"loosened gate ({', '.join(event['override_loosened_gate'])})")
        if "allow_external_verdicts" in event:
            used.append("verdicts not scored by judgeloop")
        print(f"OVERRIDE: promoted despite {' and '.join(used)}; reason recorded: {event['reason']}")
    print(f"{entry['name']} {entry['version']} ({entry['fingerprint'][:16]}) is now production")
    return 0


def cmd_rollback(args) -> int:
    from judge.registry import Registry  # deferred: module docstring

    entry = Registry(args.registry).rollback(args.name)
    print(f"rolled back: {entry['name']} {entry['version']} ({entry['fingerprint'][:16]}) is production again")
    return 0


def _registry_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", help="registry directory (default $JUDGELOOP_REGISTRY, else runs/registry)")


def _add_registry_commands(commands) -> None:
    reg = add_group(commands, "registry", help="list and register judge versions")
    ls = add_command(
        reg, "list", help="registered judges and versions", example="judgeloop registry list", run=cmd_registry
    )
    ls.add_argument("name", nargs="?", help="one judge (default: all)")
    _registry_flag(ls)
    r = add_command(
        reg,
        "register",
        help="add a candidate version",
        example="judgeloop registry register helpfulness-pairwise 2 --model runs/smollm2-cpu/merged "
        "--validation runs/eval/validation.json",
        run=cmd_registry,
    )
    r.add_argument("name")
    r.add_argument("version")
    r.add_argument("--model", required=True, help="merged model directory, or the base model of the adapter")
    r.add_argument("--adapter", help="LoRA adapter directory")
    r.add_argument("--fingerprint", help="judge fingerprint (default: from --validation)")
    r.add_argument("--spec", help="judge spec name or path")
    r.add_argument("--card", help="judge card path")
    r.add_argument("--validation", help="a validation.json (gated or not) to attach")
    _registry_flag(r)
    at = add_command(
        reg,
        "attach",
        help="attach a (gated) validation.json to a version",
        example="judgeloop registry attach helpfulness-pairwise 2 --validation runs/eval/validation.json",
        run=cmd_registry,
    )
    at.add_argument("name")
    at.add_argument("version")
    at.add_argument("--validation", required=True)
    _registry_flag(at)
    sh = add_command(
        reg,
        "show",
        help="one version's entry (production, latest or VERSION)",
        example="judgeloop registry show helpfulness-pairwise production",
        run=cmd_registry,
    )
    sh.add_argument("name")
    sh.add_argument("ref", nargs="?", default="production", help="production (default), latest or a version")
    _registry_flag(sh)
    hi = add_command(
        reg,
        "history",
        help="a judge's promotions, rollbacks and registrations",
        example="judgeloop registry history helpfulness-pairwise",
        run=cmd_registry,
    )
    hi.add_argument("name")
    _registry_flag(hi)

    pr = add_command(
        commands,
        "promote",
        help="promote a judge version that passed its gate",
        description="make a version production (needs a passing gate for its fingerprint)",
        example="judgeloop promote helpfulness-pairwise 2 --validation runs/eval/validation.json",
        run=cmd_promote,
    )
    pr.add_argument("name")
    pr.add_argument("version")
    pr.add_argument("--validation", help="attach this gated validation.json first")
    pr.add_argument(
        "--override-loosened-gate",
        action="store_true",
        help="promote although the gate switched off or loosened rules of the default gate (needs --reason)",
    )
    pr.add_argument(
        "--allow-external-verdicts",
        action="store_true",
        help="promote although the verdicts were read from a file, not scored by judgeloop (needs --reason)",
    )
    pr.add_argument("--reason", help="why an override is used; recorded in the registry history")
    _registry_flag(pr)
    rb = add_command(
        commands,
        "rollback",
        help="return production to the previous version",
        example="judgeloop rollback helpfulness-pairwise",
        run=cmd_rollback,
    )
    rb.add_argument("name")
    _registry_flag(rb)


# --- the live loop and the demo -------------------------------------------------------------------


def _evaluate_arguments(p) -> None:
    sub = p.add_subparsers(dest="evaluate_command")
    h = sub.add_parser(
        "history",
        help="list the recorded evaluation runs",
        description="list the recorded evaluation runs",
        example="judgeloop evaluate history --system v2",
    )
    h.set_defaults(run=lazy("workflows.evaluate.cli", "run"))
    h.add_argument("--db", help=f"SQLAlchemy URL or SQLite path (default {EVALUATION_HISTORY})")
    h.add_argument("--system", help="only runs that evaluated this system")

    p.add_argument("--responses", help="JSONL: prompt_id, system, response, instruction (+ input, context, reference)")
    p.add_argument(
        "--prompts",
        help="JSONL: prompt_id, instruction (+ input, context, reference): the systems of --endpoint answer them "
        "into OUT/responses.jsonl (resumable)",
    )
    p.add_argument(
        "--endpoint",
        action="append",
        default=[],
        metavar="NAME=URL[,model=M][,key_env=VAR][,max_tokens=N][,temperature=T]",
        help="with --prompts: a system and its OpenAI-compatible endpoint (chat completions); repeat per system",
    )
    p.add_argument("--max-tokens", type=positive_int, default=512, help="with --endpoint: max_tokens (default 512)")
    p.add_argument("--temperature", type=float, default=0.0, help="with --endpoint: temperature (default 0)")
    p.add_argument(
        "--concurrency", type=positive_int, default=8, help="with --endpoint: requests in flight per run (default 8)"
    )
    p.add_argument(
        "--judge",
        action="append",
        default=[],
        help="a judge: a spec name (its untuned base) or a judge directory; repeat for several criteria",
    )
    p.add_argument("--baseline", help="pairwise judges: compare every system with this one")
    p.add_argument("--all-pairs", action="store_true", help="pairwise judges: compare all pairs (a ranking)")
    p.add_argument(
        "--labels",
        action="append",
        default=[],
        help="human labels of evaluated items (JSONL: id, label|labels, criterion; or a label sample's Label Studio "
        "export or CSV): corrects the figures; repeat for several files",
    )
    p.add_argument(
        "--label-sample",
        type=positive_int,
        metavar="N",
        help="export a seeded random sample of N evaluated items (stratified by criterion and system or pair) for "
        "people to label, into OUT/label-sample/CRITERION/ (Label Studio tasks, a CSV)",
    )
    p.add_argument("--out", default="runs/evaluate", help="output directory (default runs/evaluate)")
    p.add_argument("--engine", choices=["vllm", "transformers"], default="vllm", help="engine to score with")
    p.add_argument("--serve-config", help="serve config for the engine settings (default configs/serve/cpu.yaml)")
    p.add_argument(
        "--judge-score",
        choices=["hard", "soft"],
        default="hard",
        help="hard: the judge's verdicts; soft: its probabilities (expected outcome or score)",
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap replicates")
    p.add_argument("--db", help=f"history: SQLAlchemy URL or SQLite path (default {EVALUATION_HISTORY})")
    p.add_argument("--no-history", action="store_true", help="do not record this run")
    p.add_argument(
        "--against", metavar="RUN", help="compare --system with an earlier run (a run id, 'last', 'previous')"
    )
    p.add_argument("--system", help="with --against: the system to compare (default: every system)")
    p.add_argument(
        "--max-drop",
        type=float,
        default=0.0,
        help="with --against: exit 1 when a figure dropped by more than this with 95%% confidence (default 0)",
    )
    p.add_argument("--registry", help="registry directory, to name the data a judge was validated on")
    p.add_argument("--no-report", action="store_true", help="write evaluation.json only")


def add_commands(commands) -> dict:
    """Adds the workflow commands; returns the command groups (``{"review": its actions}``) that the
    integrations above workflows extend (``integrations/cli.py``)."""
    _add_registry_commands(commands)

    evaluate = add_command(
        commands,
        "evaluate",
        help="score your systems with judges: win rates, rankings, scores, corrected with human labels",
        description="Evaluate systems on the same prompts with one or more judges; writes evaluation.json and "
        "a report, records the run (docs/evaluate.md). `judgeloop evaluate history` lists the runs.",
        example="judgeloop evaluate --responses responses.jsonl --judge runs/demo/judge --baseline v1 "
        "--labels human.jsonl",
        run=lazy("workflows.evaluate.cli", "run"),
    )
    _evaluate_arguments(evaluate)

    mon = add_command(
        commands,
        "monitor",
        help="compare live verdicts with the validation baseline (drift; exit 1 on alert)",
        description="Compare a window of live verdicts with the validation baseline; exit 0 OK, 1 when a "
        "threshold is crossed (an alert), 2 on bad input. The window is the config field "
        "--window_hours=H (review export's flag --window-hours H is the same idea, without a config).",
        example="judgeloop monitor configs/monitor/default.yaml --baseline=runs/eval/validation.json --window_hours=6",
        run=lazy("workflows.monitor", "cmd_monitor"),
        overrides=True,
        config_help=_fields("workflows.monitor", "MonitorConfig"),
    )
    mon.add_argument(
        "config", nargs="?", metavar="CONFIG", help="monitor config YAML (default configs/monitor/default.yaml)"
    )
    mon.add_argument(
        "--compare",
        metavar="CANDIDATE",
        help="a shadow candidate (NAME@VERSION or fingerprint prefix): its paired agreement with production",
    )

    review = add_group(commands, "review", help="export live items for human review, import the labels back")
    ex = add_command(
        review,
        "export",
        help="pick logged items for people to label (Label Studio JSON + CSV)",
        example="judgeloop review export --judge helpfulness-pairwise --n 100 --window-hours 24 --out runs/review",
        run=lazy("workflows.review", "cmd_export"),
    )
    ex.add_argument("--judge", required=True, help="judge (spec name) whose production verdicts to review")
    ex.add_argument("--spec", help="judge spec name or path (default: the judge name)")
    ex.add_argument("--n", type=int, required=True, help="items to review")
    ex.add_argument("--log", help="the verdict log: SQLAlchemy URL or SQLite file (default: `judgeloop serve`'s)")
    ex.add_argument("--window-hours", type=positive_hours, default=None, help="only the last H hours (default: all)")
    ex.add_argument(
        "--random-share",
        type=float,
        default=0.3,
        help="share of the N drawn uniformly at random (unbiased live agreement; default 0.3)",
    )
    ex.add_argument("--seed", type=int, default=0)
    ex.add_argument("--out", default="runs/review", help="output directory (default runs/review)")
    im = add_command(
        review,
        "import",
        help="a Label Studio JSON export or the filled CSV -> labelled items JSONL",
        example="judgeloop review import runs/review/review.csv --spec helpfulness-pairwise "
        "--out runs/review/reviewed.jsonl",
        run=lazy("workflows.review", "cmd_import"),
    )
    im.add_argument("file", help="Label Studio export (.json) or the review CSV (.csv)")
    im.add_argument("--spec", required=True, help="judge spec name or path (its labels are checked)")
    im.add_argument("--manifest", help="the export's review-manifest.json (default: beside FILE)")
    im.add_argument("--out", required=True, help="labelled items JSONL to write")

    rt = add_command(
        commands,
        "retrain",
        help="train on original + reviewed labels, validate, gate, register",
        description="Train a candidate on the original plus reviewed labels, validate, gate and register it; "
        "exit 0 gate passed, 1 failed, 2 bad input. Training config fields are overridden with "
        "--train_overrides.FIELD=value.",
        example="judgeloop retrain configs/retrain/helpfulness-cpu.yaml --promote --train_overrides.max_steps=100",
        run=lazy("workflows.retrain", "cmd_retrain"),
        overrides=True,
        config_help=_fields("workflows.retrain", "RetrainConfig"),
    )
    rt.add_argument("config", metavar="CONFIG", help="retrain config YAML (configs/retrain/*.yaml)")
    rt.add_argument("--promote", action="store_true", help="promote the candidate when (and only when) its gate passes")

    demo = add_command(
        commands,
        "demo",
        help="the whole loop on the embedded default model (runs/demo)",
        description="fetch the model, prepare PandaLM, fine-tune, merge, validate base and candidate through "
        "vLLM, gate, register, serve, score through the API, report. --key=value: fields of the "
        "training config (--train-config), e.g. --max_steps=4 for a reduced demo.",
        example="judgeloop demo\njudgeloop demo --limit 16 --max_steps=4 --out runs/demo-small",
        run=lazy("workflows.demo", "cmd_demo"),
        overrides=True,
    )
    demo.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    demo.add_argument(
        "--train-config", metavar="CONFIG", help="training config (default configs/train/gemma3-cpu-mix.yaml)"
    )
    demo.add_argument("--serve-config", metavar="CONFIG", help="serve config (default configs/serve/cpu.yaml)")
    demo.add_argument("--gates", metavar="CONFIG", help="gate config (default configs/gates/default.yaml)")
    demo.add_argument(
        "--limit",
        type=int,
        default=None,
        help="a reduced demo: keep the first N items of each split (with e.g. --max_steps=4)",
    )
    return {"review": review}
