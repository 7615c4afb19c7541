"""`judgeloop registry | promote | rollback`: judge versions and which one serves production."""

from __future__ import annotations

import argparse
import json

from data.errors import JudgeloopError
from eval.gate import read_result
from judge.registry import Registry
from workflows import promotion


def cmd_registry(args) -> int:
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
    entry = Registry(args.registry).rollback(args.name)
    print(f"rolled back: {entry['name']} {entry['version']} ({entry['fingerprint'][:16]}) is production again")
    return 0


# --- arguments ------------------------------------------------------------------------------------


def _registry_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", help="registry directory (default $JUDGELOOP_REGISTRY, else runs/registry)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="judgeloop")
    top = p.add_subparsers(dest="command", required=True)
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
    rb = top.add_parser("rollback", help="return production to the previous version")
    rb.add_argument("name")
    _registry_flag(rb)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.command == "registry":
        return cmd_registry(args)
    if args.command == "promote":
        return cmd_promote(args)
    return cmd_rollback(args)
