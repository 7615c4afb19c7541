"""`judgeloop gate | report`: check a validation result against the promotion gate; write its report.

The implementations are imported when a command runs, not here: judgeloop builds the whole parser
tree on every call (``judgeloop --help`` too), and the report imports matplotlib and Jinja.
"""

from __future__ import annotations

from data.cli_base import add_command
from data.paths import CONFIGS_DIR


def gate_fields() -> dict[str, str]:
    from data.config import field_help  # deferred: module docstring
    from eval.gate import GateConfig

    return field_help(GateConfig)


def cmd_gate(args) -> int:
    from eval.gate import check, format_rules, load_gates, read_result, write_result  # deferred: module docstring

    result = read_result(args.validation)
    cfg = load_gates(args.gates, args.overrides)
    gate = check(result, cfg, config_path=args.gates)
    result.gate = gate
    out = args.out or args.validation
    write_result(out, result)
    print(format_rules(gate))
    print(f"gate result written to {out}")
    return 0 if gate.passed else 1


def cmd_report(args) -> int:
    from eval.gate import read_result  # deferred: module docstring
    from eval.report import gate_status, write_report
    from judge.registry import Registry

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


def add_commands(commands) -> None:
    gate = add_command(
        commands,
        "gate",
        help="check a validation result against the promotion gate (exit 1 when it fails)",
        description="Check validation.json against the promotion gate and write the gated result; "
        "exit 0 pass, 1 fail. Override a threshold with --key=value; null turns a rule off.",
        example="judgeloop gate runs/eval/validation.json --gates configs/gates/default.yaml \\\n"
        "    --min_n=500 --max_ece=null",
        run=cmd_gate,
        overrides=True,
        config_help=gate_fields,
    )
    gate.add_argument("validation", metavar="VALIDATION", help="a validation.json from `judgeloop eval`")
    gate.add_argument(
        "--gates",
        default=str(CONFIGS_DIR / "gates" / "default.yaml"),
        metavar="CONFIG",
        help="gate config (YAML; default configs/gates/default.yaml)",
    )
    gate.add_argument("--out", help="write the gated result here instead of back into the validation file")

    rep = add_command(
        commands,
        "report",
        help="write the validation report (HTML, Markdown, JSON)",
        example="judgeloop report runs/eval/validation.json --out runs/report",
        run=cmd_report,
    )
    rep.add_argument("validation", metavar="VALIDATION", help="a validation.json (gated or not)")
    rep.add_argument("--out", default="runs/report", help="output directory (default runs/report)")
    rep.add_argument("--registry", help="registry directory (default $JUDGELOOP_REGISTRY, else runs/registry)")
