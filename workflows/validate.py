"""`judgeloop eval`: validate a judge against human labels and write DIR/validation.json.

With ``--verdicts`` it validates verdicts someone already has; with ``--judge`` it first scores the
items through the serving engine (vLLM by default, so the validated verdicts are the served ones),
which is why this workflow sits above serve/ and eval/.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

from data import dataset_registry
from data.errors import DataError, JudgeloopError
from data.importer import MAX_PROBLEMS, check_item
from data.jsonl import read_jsonl, read_jsonl_lines, write_jsonl
from data.paths import CONFIGS_DIR
from data.provenance import sha256_chunks, sha256_file
from data.schema import Item, Verdict
from data.spec import JudgeSpec, load_spec
from data.splits import seeded_sample
from eval.gate import write_result
from eval.harness import evaluate
from eval.injection import measure
from eval.report import summary
from eval.table import match_verdicts
from judge.registry import Registry
from serve.config import load_serve_config
from serve.service import start_judges

log = logging.getLogger("judgeloop")


def verdicts_for(
    judge: str,
    items: Sequence[Item],
    spec: JudgeSpec,
    engine: str = "vllm",
    serve_config: str | None = None,
    injection: dict | None = None,
    progress=print,
    overrides: Sequence[str] = (),
) -> list[Verdict]:
    """Score ``items`` with a judge (spec name = untuned base, or a judge directory) through the scoring core,
    on the engine that serves it (vLLM by default, so the validated verdicts are the served ones).

    ``injection={"n": N}``: also measure the injection corpus on N of the items (eval/injection.py) with
    the same engine; the result is stored in that dict under "result". ``overrides``: serving config fields
    (``--vllm.dtype=bfloat16``)."""
    cfg = load_serve_config(serve_config or CONFIGS_DIR / "serve" / "cpu.yaml", [f"--engine={engine}", *overrides])
    with start_judges(cfg, judges=[judge], candidates=[], progress=progress) as serving:
        (service,) = serving.services.values()
        if service.spec.name != spec.name:
            raise JudgeloopError(
                f"judge '{judge}' answers spec '{service.spec.name}', not '{spec.name}'", field="--spec"
            )
        verdicts = list(service.score_stream(items))
        if injection:
            injection["result"] = measure(
                seeded_sample(items, injection["n"]), verdicts, lambda batch: list(service.score_stream(batch)), spec
            )
        return verdicts


def load_items_arg(items: str | None, dataset: str | None) -> tuple[list[Item], dict, dict]:
    """Items from a canonical JSONL file (its split's manifest names dataset and split) or a registered dataset."""
    if dataset:
        loaded = list(dataset_registry.load_items(dataset))
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


def _is_tie(label) -> bool:
    return isinstance(label, str) and label.strip().lower() == "tie"


def check_items_fit(path: str, spec: JudgeSpec) -> None:
    """Every item fits the spec (its kind, labels in its label space), or one located line each (file:line:
    field) before anything is scored. A pairwise human tie is kept even where the judge has no tie label."""

    def no_ties(item: Item) -> Item:
        if item.kind != "pairwise":
            return item
        tie = lambda lab: isinstance(lab, str) and lab.strip().lower() == "tie"  # noqa: E731
        return item.model_copy(
            update={
                "labels": [lab for lab in item.labels if not tie(lab)],
                "label": None if tie(item.label) else item.label,
            }
        )

    problems = [p for line, item in read_jsonl_lines(path, Item) for p in check_item(no_ties(item), spec, path, line)]
    if problems:
        raise DataError(problems=problems[:MAX_PROBLEMS])


def _items_hash(items: Sequence[Item]) -> str:
    return sha256_chunks(it.model_dump_json(exclude_none=True).encode() + b"\n" for it in items)


def load_reference(arg: str) -> tuple[str, list[Verdict], dict]:
    """``DATASET:JUDGE`` (a registered dataset's reference judge) or ``NAME=FILE`` (a verdicts file)."""
    if "=" in arg:
        name, path = arg.split("=", 1)
        return name, list(read_jsonl(path, Verdict)), {"path": path, "sha256": sha256_file(path)}
    if ":" in arg:
        dataset, judge = arg.split(":", 1)
        verdicts = list(dataset_registry.load_reference_verdicts(dataset, judge))  # checks the names first
        ds = dataset_registry.get_dataset(dataset)
        pinned = ds.files[ds.reference_judges[judge].file].sha256
        return (
            judge,
            verdicts,
            {"path": f"{dataset}:{judge} ({ds.files[ds.reference_judges[judge].file].path})", "sha256": pinned},
        )
    raise DataError(
        f"'{arg}' is neither DATASET:JUDGE nor NAME=FILE",
        field="--reference",
        hint="e.g. --reference pandalm:gpt-3.5-turbo or --reference mine=verdicts.jsonl",
    )


def _registered_version(fingerprint: str | None, root: str | None) -> str | None:
    if not fingerprint:
        return None
    entry = Registry(root).find_fingerprint(fingerprint)
    return entry["version"] if entry else None


def cmd_eval(args) -> int:
    """`judgeloop eval` (its flags: workflows/cli.py)."""
    if args.injection < 0 or (args.injection and not args.judge):
        raise JudgeloopError(
            "must be a positive number of items, with --judge (it scores injected variants)", field="--injection"
        )
    out = Path(args.out)
    kept = out / "verdicts.jsonl"  # where --judge keeps what it scores (written as soon as they are scored)
    if args.judge and args.incumbent and Path(args.incumbent).resolve() == kept.resolve():
        raise JudgeloopError(
            f"'{args.incumbent}' is where this run keeps the judge's verdicts: it would overwrite the incumbent's",
            field="--incumbent",
            hint="give this run another --out",
        )
    spec = load_spec(args.spec)
    items, dataset_info, inputs = load_items_arg(args.items, args.dataset)
    if args.items:
        check_items_fit(args.items, spec)
    if args.split:
        dataset_info["split"] = args.split
    if args.verdicts:
        verdicts = list(read_jsonl(args.verdicts, Verdict))
        inputs["verdicts"] = {"path": args.verdicts, "sha256": sha256_file(args.verdicts)}
        match_verdicts(items, verdicts, path=args.verdicts)  # name the file if they do not line up
    elif args.injection:
        injection = {"n": args.injection}
        verdicts = verdicts_for(args.judge, items, spec, args.engine, args.serve_config, injection, log.info)
    else:
        verdicts = verdicts_for(args.judge, items, spec, args.engine, args.serve_config, progress=log.info)
    if args.judge:  # keep what was scored: `eval --verdicts` on this file reproduces the result without the model
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
        match_verdicts(items, incumbent, path=args.incumbent, what="incumbent verdicts")
        inputs["incumbent"] = {"path": args.incumbent, "sha256": sha256_file(args.incumbent)}
        fp = incumbent[0].judge.fingerprint if incumbent else None
        incumbent_info = {"version": _registered_version(fp, args.registry)}
    judge_info = {}
    if args.judge_version:
        judge_info["version"] = args.judge_version
    result = evaluate(
        items,
        verdicts,
        spec,
        judge_info=judge_info or None,
        dataset_info=dataset_info,
        reference_verdicts=references,
        incumbent_verdicts=incumbent,
        incumbent_info=incumbent_info,
        seed=args.seed,
        n_boot=args.n_boot,
        injection=injection["result"] if args.injection else None,
    )
    if result.judge.version is None:
        result.judge.version = _registered_version(result.judge.fingerprint, args.registry)
    result.inputs = inputs
    result.provenance.commands = [args.command_line]
    out.mkdir(parents=True, exist_ok=True)
    write_result(out / "validation.json", result)
    args.outputs = [str(out)]  # what it wrote, for what runs after the command (judgeloop.py)
    for line in summary(result):
        print(line)
    also = f" and the verdicts, {kept}" if args.judge else ""
    print(
        f"wrote {out / 'validation.json'}{also}; "
        f"next: judgeloop gate {out / 'validation.json'} --gates configs/gates/default.yaml"
    )
    return 0
