"""`judgeloop retrain CONFIG`: original labels + reviewed live labels -> a candidate, validated, gated, registered.

The candidate trains with the training config it names (``train``) with the reviewed items
(``judgeloop review import``) added to ``data.train``; it is scored on the held-out
``eval_items`` through the scoring core on the serving engine, validated (with the registry's
production version as the incumbent when there is one), gated and registered as a candidate
with its gated validation attached. It is promoted only with ``--promote`` and a passing gate.
Exit 0 when the gate passed, 1 when it failed, 2 on bad input.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from data.config import field_help, load_config, option, overrides_from
from data.errors import DataError, Problem
from data.jsonl import read_jsonl
from data.paths import CONFIGS_DIR, JUDGE_FILE
from data.provenance import sha256_file
from data.schema import Item
from eval.gate import check, format_rules, load_gates, write_result
from eval.harness import evaluate
from judge.loading import load_judge
from judge.registry import Registry, RegistryError
from serve.verdict_log import item_hash
from train.config import TrainConfig, load_train_config
from train.trainer import train
from workflows import promotion
from workflows.validate import verdicts_for

log = logging.getLogger("judgeloop")


@dataclass
class RetrainConfig:
    train: Optional[str] = option(
        None, help="the training config YAML of the judge (required); its data.train are the original labels"
    )
    train_overrides: dict[str, Any] = option(
        {},
        help="fields of the training config to override, as in its YAML (a mapping, e.g. {max_steps: 100}); "
        "on the command line one at a time: --train_overrides.max_steps=100 --train_overrides.lora.rank=8",
    )
    reviewed: list[str] = option([], help="reviewed items from `judgeloop review import`, added to data.train")
    eval_items: Optional[str] = option(None, help="held-out labelled items the candidate is validated on (required)")
    gates: str = option(str(CONFIGS_DIR / "gates" / "default.yaml"), help="the promotion gate config")
    engine: Literal["vllm", "transformers"] = option("vllm", help="engine the validation scores with (the serving one)")
    serve_config: Optional[str] = option(
        None, help="serve config for the engine settings (null: configs/serve/cpu.yaml)"
    )
    name: Optional[str] = option(None, help="registry name of the judge (null: the spec name)")
    version: Optional[str] = option(None, help="version to register (null: the next integer)")
    incumbent: Optional[str] = option(
        "production",
        help="compare with this registry version (null: no comparison; 'production' is skipped when there is none)",
    )
    registry: Optional[str] = option(None, help="registry directory (null: $JUDGELOOP_REGISTRY, else runs/registry)")
    out: str = option("runs/retrain", help="run directory: train/, validation.json")
    n_boot: int = option(1000, help="bootstrap replicates of the validation")

    def validate(self) -> list[Problem]:
        problems = []
        for name in ("train", "eval_items"):
            value = getattr(self, name)
            if not value:
                problems.append(Problem("is required", field=name))
            elif not Path(value).is_file():
                problems.append(Problem(f"file '{value}' not found", field=name))
        for path in self.reviewed:
            if not Path(path).is_file():
                problems.append(Problem(f"file '{path}' not found", field="reviewed"))
        if not Path(self.gates).is_file():
            problems.append(Problem(f"file '{self.gates}' not found", field="gates"))
        if self.n_boot < 100:
            problems.append(Problem("must be at least 100", field="n_boot"))
        known = field_help(TrainConfig)
        for arg in overrides_from(self.train_overrides):
            key = arg[2:].split("=", 1)[0]
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                problems.append(
                    Problem(
                        "not a field of the training config",
                        field=f"train_overrides.{key}",
                        hint=f"did you mean '{close[0]}'?" if close else "judgeloop train --help lists them",
                    )
                )
        return problems


def _content_hashes(items) -> set[str]:
    return {item_hash(it) for it in items}


def retrain(cfg: RetrainConfig, *, promote: bool = False, command: str | None = None, progress=print) -> dict:
    """Train, validate, gate and register a candidate; returns what happened (and the gate)."""

    gates = load_gates(cfg.gates)  # a bad gate config fails before training
    out = Path(cfg.out)
    train_cfg = load_train_config(cfg.train, [*overrides_from(cfg.train_overrides), f"--output_dir={out / 'train'}"])
    eval_items = list(read_jsonl(cfg.eval_items, Item))
    held_out = _content_hashes(eval_items)
    for path in cfg.reviewed:
        leaked = _content_hashes(read_jsonl(path, Item)) & held_out
        if leaked:
            raise DataError(
                f"{len(leaked)} reviewed item(s) are also in eval_items: validation would see training data",
                path=path,
                field="reviewed",
                hint="validate on items no reviewer labelled",
            )
    train_cfg.data.train = [*train_cfg.data.train, *cfg.reviewed]
    progress(f"training a candidate on {', '.join(train_cfg.data.train)}")
    run = train(train_cfg, progress=progress)
    candidate = load_judge(run.run_dir)
    spec = candidate.spec
    registry = Registry(cfg.registry)
    name = cfg.name or spec.name
    known = registry.load(name)["versions"] if name in registry.names() else {}
    version = cfg.version
    if version is None:
        version = str(len(known) + 1)
        while version in known:
            version = str(int(version) + 1)

    incumbent_ref = incumbent_verdicts = incumbent_info = None
    if cfg.incumbent and name in registry.names():
        try:
            entry = registry.resolve(name, cfg.incumbent)
            judge_dir = Path(entry["model"]) / JUDGE_FILE
            incumbent_ref = entry["model"] if judge_dir.exists() else (entry.get("spec") or name)
            incumbent_info = {"version": entry["version"]}
        except RegistryError:
            if cfg.incumbent != "production":
                raise
    progress(f"validating {name} {version} on {cfg.eval_items} ({len(eval_items)} items, engine {cfg.engine})")
    verdicts = verdicts_for(str(run.run_dir), eval_items, spec, cfg.engine, cfg.serve_config, progress=progress)
    if incumbent_ref:
        incumbent_verdicts = verdicts_for(
            incumbent_ref, eval_items, spec, cfg.engine, cfg.serve_config, progress=progress
        )
        if incumbent_verdicts and incumbent_verdicts[0].judge.fingerprint != entry["fingerprint"]:
            raise DataError(
                f"the files of {name} {entry['version']} no longer give its registered fingerprint",
                path=entry["model"],
                field="incumbent",
            )
    result = evaluate(
        eval_items,
        verdicts,
        spec,
        judge_info={"version": version},
        dataset_info={
            "name": Path(cfg.eval_items).parent.name,
            "split": Path(cfg.eval_items).stem,
            "sha256": sha256_file(cfg.eval_items),
            "path": cfg.eval_items,
        },
        incumbent_verdicts=incumbent_verdicts,
        incumbent_info=incumbent_info,
        n_boot=cfg.n_boot,
    )
    result.inputs = {
        "items": {"path": cfg.eval_items, "sha256": sha256_file(cfg.eval_items)},
        **{f"reviewed {i}": {"path": p, "sha256": sha256_file(p)} for i, p in enumerate(cfg.reviewed)},
    }
    if command:
        result.provenance.commands = [command]
    result.gate = check(result, gates, config_path=cfg.gates)
    validation = out / "validation.json"
    write_result(validation, result)
    entry = promotion.register(
        registry,
        name,
        version,
        candidate.fingerprint,
        str(run.run_dir),
        candidate.adapter_path,
        spec.name,
        str(run.run_dir / "card.json"),
        validation,
    )
    passed = result.gate.passed
    promoted = False
    if promote and passed:
        promotion.promote(registry, name, version)
        promoted = True
    return {
        "name": name,
        "version": version,
        "fingerprint": entry["fingerprint"],
        "run_dir": str(run.run_dir),
        "validation": str(validation),
        "gate": result.gate.model_dump(by_alias=True),  # the gate record in its JSON form
        "passed": passed,
        "promoted": promoted,
        "registry": str(registry.root),
    }


def cmd_retrain(args) -> int:
    """`judgeloop retrain` (its flags: workflows/cli.py)."""
    cfg = load_config(RetrainConfig, args.config, args.overrides)
    done = retrain(cfg, promote=args.promote, command=args.command_line, progress=log.info)
    print(format_rules(done["gate"]))
    print(
        f"registered {done['name']} {done['version']} ({done['fingerprint'][:16]}) "
        f"as a candidate in {done['registry']}; "
        f"validation {done['validation']}"
    )
    if done["promoted"]:
        print(f"promoted {done['name']} {done['version']} to production")
    elif args.promote:
        print(
            "not promoted: the gate failed "
            f"({', '.join(r['name'] for r in done['gate']['rules'] if r['status'] == 'FAIL')})"
        )
    return 0 if done["passed"] else 1
