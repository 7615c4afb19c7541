"""`judgeloop eval | gate | report | registry | promote | rollback`.

``main(argv)`` takes the command name as argv[0] (judgeloop.py dispatches these names here).
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Sequence

from data.errors import DataError, JudgeloopError
from data.jsonl import read_jsonl
from data.paths import CONFIGS_DIR
from data.provenance import sha256_file
from data.schema import Item, Verdict
from data.spec import JudgeSpec, load_spec

COMMANDS = ("eval", "gate", "report", "registry", "promote", "rollback")


# --- eval -----------------------------------------------------------------------------------------

def verdicts_for(judge: str, items: Sequence[Item], spec: JudgeSpec, engine: str = "vllm",
                 serve_config: str | None = None, injection: dict | None = None) -> list[Verdict]:
    """Score ``items`` with a judge (spec name = untuned base, or a judge directory) through the scoring core,
    on the engine that serves it (vLLM by default, so the validated verdicts are the served ones).

    ``injection={"n": N}``: also measure the injection corpus on N of the items (eval/injection.py) with
    the same engine; the result is stored in that dict under "result"."""
    from serve.config import load_serve_config
    from serve.service import start_judges

    cfg = load_serve_config(serve_config or CONFIGS_DIR / "serve" / "cpu.yaml", [f"--engine={engine}"])
    with start_judges(cfg, judges=[judge], candidates=[]) as serving:
        (service,) = serving.services.values()
        if service.spec.name != spec.name:
            raise JudgeloopError(f"judge '{judge}' answers spec '{service.spec.name}', not '{spec.name}'", field="--spec")
        verdicts = list(service.score_stream(items))
        if injection:
            from eval.injection import measure, sample
            injection["result"] = measure(sample(items, injection["n"]), verdicts,
                                          lambda batch: list(service.score_stream(batch)), spec)
        return verdicts


def load_items_arg(items: str | None, dataset: str | None) -> tuple[list[Item], dict, dict]:
    """Items from a canonical JSONL file (its split's manifest names dataset and split) or a registered dataset."""
    if dataset:
        from data import registry
        loaded = list(registry.load_items(dataset))
        return loaded, {"name": dataset, "split": "all", "sha256": _items_hash(loaded)}, {}
    path = Path(items)
    loaded = list(read_jsonl(path, Item))
    info = {"name": path.parent.name or None, "split": path.stem, "sha256": sha256_file(path), "path": str(path)}
    manifest = path.parent / "manifest.json"
    if manifest.exists():
        try:
            info["name"] = json.loads(manifest.read_text()).get("dataset") or info["name"]
        except json.JSONDecodeError:
            pass  # a broken manifest only costs the dataset's name
    return loaded, info, {"items": {"path": str(path), "sha256": info["sha256"]}}


def _items_hash(items: Sequence[Item]) -> str:
    import hashlib
    h = hashlib.sha256()
    for it in items:
        h.update(it.model_dump_json(exclude_none=True).encode() + b"\n")
    return h.hexdigest()


def load_reference(arg: str) -> tuple[str, list[Verdict], dict]:
    """``DATASET:JUDGE`` (a registered dataset's reference judge) or ``NAME=FILE`` (a verdicts file)."""
    if "=" in arg:
        name, path = arg.split("=", 1)
        return name, list(read_jsonl(path, Verdict)), {"path": path, "sha256": sha256_file(path)}
    if ":" in arg:
        dataset, judge = arg.split(":", 1)
        from data import registry
        verdicts = list(registry.load_reference_verdicts(dataset, judge))  # checks the names first
        ds = registry.get_dataset(dataset)
        pinned = ds.files[ds.reference_judges[judge].file].sha256
        return judge, verdicts, {"path": f"{dataset}:{judge} ({ds.files[ds.reference_judges[judge].file].path})",
                                 "sha256": pinned}
    raise DataError(f"'{arg}' is neither DATASET:JUDGE nor NAME=FILE", field="--reference",
                    hint="e.g. --reference pandalm:gpt-3.5-turbo or --reference mine=verdicts.jsonl")


def _registered_version(fingerprint: str | None, root: str | None) -> str | None:
    from eval.registry import Registry
    if not fingerprint:
        return None
    entry = Registry(root).find_fingerprint(fingerprint)
    return entry["version"] if entry else None


def cmd_eval(args, argv: list[str]) -> int:
    from eval.harness import evaluate
    if args.injection < 0 or (args.injection and not args.judge):
        raise JudgeloopError("must be a positive number of items, with --judge (it scores injected variants)",
                             field="--injection")
    out = Path(args.out)
    kept = out / "verdicts.jsonl"  # where --judge keeps what it scores (written as soon as they are scored)
    if args.judge and args.incumbent and Path(args.incumbent).resolve() == kept.resolve():
        raise JudgeloopError(f"'{args.incumbent}' is where this run keeps the judge's verdicts: it would overwrite "
                             "the incumbent's", field="--incumbent", hint="give this run another --out")
    spec = load_spec(args.spec)
    items, dataset_info, inputs = load_items_arg(args.items, args.dataset)
    if args.split:
        dataset_info["split"] = args.split
    if args.verdicts:
        verdicts = list(read_jsonl(args.verdicts, Verdict))
        inputs["verdicts"] = {"path": args.verdicts, "sha256": sha256_file(args.verdicts)}
        from eval.table import match_verdicts
        match_verdicts(items, verdicts, path=args.verdicts)  # name the file if they do not line up
    elif args.injection:
        injection = {"n": args.injection}
        verdicts = verdicts_for(args.judge, items, spec, args.engine, args.serve_config, injection)
    else:
        verdicts = verdicts_for(args.judge, items, spec, args.engine, args.serve_config)
    if args.judge:  # keep what was scored: `eval --verdicts` on this file reproduces the result without the model
        from data.jsonl import write_jsonl
        out.mkdir(parents=True, exist_ok=True)
        write_jsonl(kept, verdicts)
        inputs["verdicts"] = {"path": str(kept), "sha256": sha256_file(kept), "scored_with": args.engine}
    references = {}
    for arg in args.reference:
        name, ref_verdicts, info = load_reference(arg)
        references[name] = ref_verdicts
        inputs[f"reference {name}"] = info
    incumbent = incumbent_info = None
    if args.incumbent:
        incumbent = list(read_jsonl(args.incumbent, Verdict))
        from eval.table import match_verdicts
        match_verdicts(items, incumbent, path=args.incumbent, what="incumbent verdicts")
        inputs["incumbent"] = {"path": args.incumbent, "sha256": sha256_file(args.incumbent)}
        fp = incumbent[0].judge.fingerprint if incumbent else None
        incumbent_info = {"version": _registered_version(fp, args.registry)}
    judge_info = {}
    if args.judge_version:
        judge_info["version"] = args.judge_version
    result = evaluate(items, verdicts, spec, judge_info=judge_info or None, dataset_info=dataset_info,
                      reference_verdicts=references, incumbent_verdicts=incumbent, incumbent_info=incumbent_info,
                      seed=args.seed, n_boot=args.n_boot,
                      injection=injection["result"] if args.injection else None)
    if result["judge"].get("version") is None:
        result["judge"]["version"] = _registered_version(result["judge"].get("fingerprint"), args.registry)
    result["inputs"] = inputs
    result["provenance"]["commands"] = ["judgeloop " + shlex.join(argv)]
    out.mkdir(parents=True, exist_ok=True)
    from eval.gate import write_result
    from eval.report import summary
    write_result(out / "validation.json", result)
    for line in summary(result):
        print(line)
    also = f" and the verdicts, {kept}," if args.judge else ""
    print(f"wrote {out / 'validation.json'}{also}; next: judgeloop gate {out / 'validation.json'} --gates configs/gates/default.yaml")
    return 0


# --- gate, report ---------------------------------------------------------------------------------

def cmd_gate(args, overrides: list[str]) -> int:
    from eval.gate import check, format_rules, load_gates, read_result, write_result
    result = read_result(args.validation)
    cfg = load_gates(args.gates, overrides)
    gate = check(result, cfg, config_path=args.gates)
    result["gate"] = gate
    out = args.out or args.validation
    write_result(out, result)
    print(format_rules(gate))
    print(f"gate result written to {out}")
    return 0 if gate["passed"] else 1


def cmd_report(args) -> int:
    from eval.gate import read_result
    from eval.registry import Registry
    from eval.report import gate_status, write_report
    result = read_result(args.validation)
    trend = None
    registry = Registry(args.registry)
    name = (result.get("judge") or {}).get("name")
    if name and name in registry.names():
        trend = registry.trend(name)
    paths = write_report(result, args.out, trend)
    print(f"gate: {gate_status(result)}")
    print(f"wrote {paths['html']}, {paths['markdown']} and {paths['json']}")
    return 0


# --- registry -------------------------------------------------------------------------------------

def cmd_registry(args) -> int:
    from eval.registry import Registry
    reg = Registry(args.registry)
    if args.action == "list":
        names = [args.name] if args.name else reg.names()
        if not names:
            print(f"no judges registered in {reg.root}")
        for name in names:
            record = reg.load(name)
            for version, e in record["versions"].items():
                passed = reg.passing_gate(e) is not None
                print(f"{name:<24} {version:<10} {e['status']:<10} {e['fingerprint'][:16]}  "
                      f"gate {'passed' if passed else 'none'}  {e['registered']}")
    elif args.action == "register":
        fingerprint = args.fingerprint
        if not fingerprint and args.validation:
            from eval.gate import read_result
            fingerprint = (read_result(args.validation).get("judge") or {}).get("fingerprint")
        if not fingerprint:
            raise JudgeloopError("a fingerprint is required", field="--fingerprint",
                                 hint="pass --fingerprint or --validation (its judge fingerprint is used)")
        entry = reg.register(args.name, args.version, fingerprint, args.model, args.adapter, args.spec, args.card,
                             args.validation)
        print(f"registered {entry['name']} {entry['version']} ({entry['fingerprint'][:16]}) as a candidate in {reg.root}")
    elif args.action == "attach":
        entry = reg.attach(args.name, args.version, args.validation)
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
    from eval.registry import Registry
    reg = Registry(args.registry)
    if args.validation:
        reg.attach(args.name, args.version, args.validation)
    entry = reg.promote(args.name, args.version)
    print(f"{entry['name']} {entry['version']} ({entry['fingerprint'][:16]}) is now production")
    return 0


def cmd_rollback(args) -> int:
    from eval.registry import Registry
    entry = Registry(args.registry).rollback(args.name)
    print(f"rolled back: {entry['name']} {entry['version']} ({entry['fingerprint'][:16]}) is production again")
    return 0


# --- arguments ------------------------------------------------------------------------------------

def _registry_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", help="registry directory (default $JUDGELOOP_REGISTRY, else runs/registry)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="judgeloop")
    top = p.add_subparsers(dest="command", required=True)

    ev = top.add_parser("eval", help="validate a judge against human labels; writes DIR/validation.json",
                        epilog="judgeloop eval --all [--criteria configs/criteria.yaml] [--only A,B] [--max-items N]: "
                               "validate every criterion's judge beside its untuned base, gate each, and write the "
                               "criteria report (judgeloop eval --all --help)")
    who = ev.add_mutually_exclusive_group(required=True)
    who.add_argument("--verdicts", help="the judge's verdicts (JSONL, one per item)")
    who.add_argument("--judge", help="score with a judge: a spec name (its untuned base model) or a judge directory")
    what = ev.add_mutually_exclusive_group(required=True)
    what.add_argument("--items", help="labelled items (canonical JSONL, e.g. prepared/pandalm/test.jsonl)")
    what.add_argument("--dataset", help="all items of a registered dataset")
    ev.add_argument("--spec", required=True, help="judge spec name or path")
    ev.add_argument("--engine", choices=["vllm", "transformers"], default="vllm",
                    help="with --judge: the engine to score with (default vllm, the serving engine)")
    ev.add_argument("--serve-config", help="with --judge: serve config for the engine settings (default configs/serve/cpu.yaml)")
    ev.add_argument("--split", help="split name to record (default: the items file's name)")
    ev.add_argument("--reference", action="append", default=[], metavar="DATASET:JUDGE|NAME=FILE",
                    help="a reference judge to score on the same items (repeatable)")
    ev.add_argument("--incumbent", help="the incumbent judge's verdicts on the same items (paired comparison)")
    ev.add_argument("--judge-version", help="version to record (default: looked up in the registry by fingerprint)")
    ev.add_argument("--out", default="runs/eval", help="output directory (default runs/eval)")
    ev.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    ev.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    ev.add_argument("--injection", type=int, default=0, metavar="N",
                    help="with --judge: also measure the verdict-flip rate under the injection corpus on N of the "
                         "items (eval/injection.py; shown in the report)")
    _registry_flag(ev)

    gate = top.add_parser("gate", help="check validation.json against the gate; exit 0 pass, 1 fail",
                          epilog="Override a threshold with --KEY=VALUE, e.g. --min_n=500 or --max_ece=null.")
    gate.add_argument("validation")
    gate.add_argument("--gates", default=str(CONFIGS_DIR / "gates" / "default.yaml"),
                      help="gate config (YAML; default configs/gates/default.yaml)")
    gate.add_argument("--out", help="write the gated result here instead of back into the validation file")

    rep = top.add_parser("report", help="HTML + Markdown + JSON report of a validation result")
    rep.add_argument("validation")
    rep.add_argument("--out", default="runs/report", help="output directory (default runs/report)")
    _registry_flag(rep)

    reg = top.add_parser("registry", help="judge versions").add_subparsers(dest="action", required=True)
    ls = reg.add_parser("list", help="registered judges and versions")
    ls.add_argument("name", nargs="?")
    _registry_flag(ls)
    r = reg.add_parser("register", help="add a candidate version")
    r.add_argument("name")
    r.add_argument("version")
    r.add_argument("--model", required=True, help="merged model directory, or the base model of the adapter")
    r.add_argument("--adapter", help="LoRA adapter directory")
    r.add_argument("--fingerprint", help="judge fingerprint (default: from --validation)")
    r.add_argument("--spec", help="judge spec name or path")
    r.add_argument("--card", help="judge card path")
    r.add_argument("--validation", help="a validation.json (gated or not) to attach")
    _registry_flag(r)
    at = reg.add_parser("attach", help="attach a (gated) validation.json to a version")
    at.add_argument("name")
    at.add_argument("version")
    at.add_argument("--validation", required=True)
    _registry_flag(at)
    sh = reg.add_parser("show", help="one version's entry (production, latest or VERSION)")
    sh.add_argument("name")
    sh.add_argument("ref", nargs="?", default="production")
    _registry_flag(sh)
    hi = reg.add_parser("history", help="a judge's promotions, rollbacks and registrations")
    hi.add_argument("name")
    _registry_flag(hi)

    pr = top.add_parser("promote", help="make a version production (needs a passing gate for its fingerprint)")
    pr.add_argument("name")
    pr.add_argument("version")
    pr.add_argument("--validation", help="attach this gated validation.json first")
    _registry_flag(pr)
    rb = top.add_parser("rollback", help="return production to the previous version")
    rb.add_argument("name")
    _registry_flag(rb)
    return p


def main(argv: list[str]) -> int:
    argv = list(argv)
    if argv[:1] == ["eval"] and "--all" in argv:  # every criterion of configs/criteria.yaml (eval/criteria.py)
        from eval.criteria import main as eval_all
        return eval_all(argv)
    if argv and argv[0] == "gate":
        args, rest = parser().parse_known_args(argv)
        bad = [a for a in rest if not (a.startswith("--") and "=" in a)]
        if bad:
            parser().parse_args(argv)  # argparse's own message and exit 2 for a real unknown argument
        return cmd_gate(args, rest)
    args = parser().parse_args(argv)
    if args.command == "eval":
        return cmd_eval(args, argv)
    if args.command == "report":
        return cmd_report(args)
    if args.command == "registry":
        return cmd_registry(args)
    if args.command == "promote":
        return cmd_promote(args)
    return cmd_rollback(args)
