"""`judgeloop gate | report`: check a validation result against the promotion gate; write its report."""

from __future__ import annotations

import argparse

from data.paths import CONFIGS_DIR
from eval.gate import check, format_rules, load_gates, read_result, write_result
from eval.report import gate_status, write_report
from judge.registry import Registry


def cmd_gate(args, overrides: list[str]) -> int:
    result = read_result(args.validation)
    cfg = load_gates(args.gates, overrides)
    gate = check(result, cfg, config_path=args.gates)
    result.gate = gate
    out = args.out or args.validation
    write_result(out, result)
    print(format_rules(gate))
    print(f"gate result written to {out}")
    return 0 if gate.passed else 1


def cmd_report(args) -> int:
    result = read_result(args.validation)
    trend = None
    registry = Registry(args.registry)
    name = result.judge.name
    if name and name in registry.names():
        trend = registry.trend(name)
    paths = write_report(result, args.out, trend)
    print(f"gate: {gate_status(result)}")
    print(f"wrote {paths['html']}, {paths['markdown']} and {paths['json']}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="judgeloop")
    top = p.add_subparsers(dest="command", required=True)
    gate = top.add_parser(
        "gate",
        help="check validation.json against the gate; exit 0 pass, 1 fail",
        epilog="Override a threshold with --KEY=VALUE, e.g. --min_n=500 or --max_ece=null.",
    )
    gate.add_argument("validation")
    gate.add_argument(
        "--gates",
        default=str(CONFIGS_DIR / "gates" / "default.yaml"),
        help="gate config (YAML; default configs/gates/default.yaml)",
    )
    gate.add_argument("--out", help="write the gated result here instead of back into the validation file")

    rep = top.add_parser("report", help="HTML + Markdown + JSON report of a validation result")
    rep.add_argument("validation")
    rep.add_argument("--out", default="runs/report", help="output directory (default runs/report)")
    rep.add_argument("--registry", help="registry directory (default $JUDGELOOP_REGISTRY, else runs/registry)")

    return p


def main(argv: list[str]) -> int:
    if argv and argv[0] == "gate":
        args, rest = parser().parse_known_args(argv)
        bad = [a for a in rest if not (a.startswith("--") and "=" in a)]
        if bad:
            parser().parse_args(argv)  # argparse's own message and exit 2 for a real unknown argument
        return cmd_gate(args, rest)
    return cmd_report(parser().parse_args(argv))
