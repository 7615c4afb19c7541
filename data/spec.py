"""Judge specs: what a judge is asked, in which words, with which labels, on which base model.

A spec is a YAML file in ``configs/judges/`` (or any path). ``load_spec`` validates it and
reports every problem at once; ``spec_hash`` is the spec's part of the judge fingerprint.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jinja2
import jinja2.meta

from data.config import build_config, load_yaml, option, to_dict
from data.errors import Problem, UnknownNameError
from data.labels import LabelSpace
from data.paths import CONFIGS_DIR

ITEM_FIELDS = ("instruction", "input", "context", "reference", "response", "response_a", "response_b")
JUDGES_DIR = CONFIGS_DIR / "judges"


@dataclass
class JudgeSpec:
    name: str = option(help="judge name, unique in the registry")
    kind: Literal["pairwise", "pointwise", "binary"] = option(help="what items this judge grades")
    labels: list[str] = option(help="the label space: [A, B, tie], [yes, no], or an ordinal scale ['1'..'5']")
    system: str = option(help="the system message (the judge's role)")
    template: str = option(help="Jinja2 template of the user message; sees the item fields, `criteria`, `labels`")
    criteria: str = option("", help="the rubric: what makes a response better")
    version: str = option("1", help="bump when the prompt or labels change")
    description: str = option("", help="one line for listings")
    base_model: str = option("smollm2-135m-instruct", help="model directory, hub id or embedded model name")
    label_descriptions: dict = option({}, help="what each label means, shown to the judge")
    max_prompt_tokens: int = option(1024, help="prompt budget; longer inputs are truncated")
    truncatable: list[str] = option(["response_a", "response_b", "response", "context", "input", "reference"],
                                    help="fields the renderer may shorten, longest first; never the answer instruction")

    def validate(self) -> list[Problem]:
        problems = []
        try:
            self.label_space
        except ValueError as exc:
            problems.append(Problem(str(exc), field="labels"))
        try:
            ast = jinja2.Environment().parse(self.template)
            used = jinja2.meta.find_undeclared_variables(ast)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(Problem(f"template does not compile: {exc.message} (template line {exc.lineno})", field="template"))
            used = set()
        need = {"pairwise": {"response_a", "response_b"}, "pointwise": {"response"}, "binary": {"response"}}[self.kind]
        for name in sorted(need - used):
            problems.append(Problem(f"template never shows '{name}'", field="template"))
        for name in self.truncatable:
            if name not in ITEM_FIELDS or name == "instruction":
                problems.append(Problem(f"'{name}' cannot be truncated (choose from item fields other than instruction)", field="truncatable"))
        if self.max_prompt_tokens < 64:
            problems.append(Problem("must be at least 64", field="max_prompt_tokens"))
        for key in self.label_descriptions:
            if str(key) not in self.labels:
                problems.append(Problem(f"describes '{key}', which is not a label", field="label_descriptions"))
        return problems

    @property
    def label_space(self) -> LabelSpace:
        return LabelSpace(self.kind, self.labels)

    def to_dict(self) -> dict:
        return to_dict(self)


def spec_hash(spec: JudgeSpec) -> str:
    """sha256 of the spec's canonical JSON: any change to the prompt or labels changes it."""
    blob = json.dumps(spec.to_dict(), sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()


def known_specs() -> dict[str, Path]:
    return {p.stem: p for p in sorted(JUDGES_DIR.glob("*.yaml"))}


def load_spec(name_or_path: str | Path, overrides: list[str] | None = None) -> JudgeSpec:
    """Load a spec by file path or by name from ``configs/judges``."""
    path = Path(name_or_path)
    if not path.exists():
        specs = known_specs()
        if str(name_or_path) not in specs:
            raise UnknownNameError("judge spec", str(name_or_path), specs)
        path = specs[str(name_or_path)]
    data, lines = load_yaml(path)
    from data.config import parse_overrides
    return build_config(JudgeSpec, data or {}, path=str(path), lines=lines, overrides=parse_overrides(overrides or []))


def spec_from_dict(data: dict) -> JudgeSpec:
    """Rebuild a spec saved in a run directory or a card."""
    return build_config(JudgeSpec, data)
