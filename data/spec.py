"""Judge specs: what a judge is asked, in which words, with which labels, on which base model.

A spec is a YAML file in ``configs/judges/`` (or any path). ``load_spec`` validates it and
reports every problem at once; ``spec_hash`` is the spec's part of the judge fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jinja2
import jinja2.meta

from data.config import build_config, load_yaml, option, parse_overrides, to_dict
from data.errors import Problem, UnknownNameError
from data.labels import LabelSpace
from data.paths import CONFIGS_DIR
from data.provenance import sha256_json
from data.schema import RESPONSE_FIELDS, TEXT_FIELDS

JUDGES_DIR = CONFIGS_DIR / "judges"
RESPONSE_LABELS = ("yes", "no")  # separate mode: is this one response good? score = logit(yes) - logit(no)


@dataclass
class JudgeSpec:
    name: str = option(help="judge name, unique in the registry")
    kind: Literal["pairwise", "pointwise", "binary"] = option(help="what items this judge grades")
    labels: list[str] = option(help="the label space: [A, B, tie], [yes, no], or an ordinal scale ['1'..'5']")
    system: str = option(help="the system message (the judge's role)")
    template: str = option(
        help="Jinja2 template of the user message; sees the item fields, `criteria`, `labels` "
        "(pairwise_mode: separate: one response, `response`, answered yes or no)"
    )
    criteria: str = option("", help="the rubric: what makes a response better")
    version: str = option("1", help="bump when the prompt or labels change")
    description: str = option("", help="one line for listings")
    base_model: str = option("smollm2-135m-instruct", help="model directory, hub id or embedded model name")
    label_descriptions: dict = option({}, help="what each label means, shown to the judge")
    max_prompt_tokens: int = option(1024, help="prompt budget; longer inputs are truncated")
    truncatable: list[str] = option(
        ["response_a", "response_b", "response", "context", "input", "reference"],
        help="fields the renderer may shorten, longest first; never the answer instruction",
    )
    pairwise_mode: Literal["joint", "separate"] = option(
        "joint",
        help="pairwise only. joint: both responses in one prompt (`template`), scored in both orders and "
        "averaged. separate: each response alone in its own prompt (`template` shows `response`, "
        "answered yes/no), score = logit(yes) - logit(no), P(A) = sigmoid(score_a - score_b - tie_margin): "
        "the judge never sees an order, so it has no position bias by construction",
    )
    tie_margin: float = option(
        0.0,
        help="separate mode with a tie label: P(tie) = 1 - P(A) - P(B) with "
        "P(A) = sigmoid(d - tie_margin), P(B) = sigmoid(-d - tie_margin) "
        "(Rao-Kupper); 0 never predicts a tie",
    )

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
            problems.append(
                Problem(f"template does not compile: {exc.message} (template line {exc.lineno})", field="template")
            )
            used = set()
        need = set(RESPONSE_FIELDS[self.kind])
        if self.pairwise_mode == "separate":
            need = {"response"}  # one response per prompt
            problems += self._separate_problems(used)
        for name in sorted(need - used):
            problems.append(Problem(f"template never shows '{name}'", field="template"))
        for name in self.truncatable:
            if name not in TEXT_FIELDS or name == "instruction":
                problems.append(
                    Problem(
                        f"'{name}' cannot be truncated (choose from item fields other than instruction)",
                        field="truncatable",
                    )
                )
        if self.max_prompt_tokens < 64:
            problems.append(Problem("must be at least 64", field="max_prompt_tokens"))
        for key in self.label_descriptions:
            if str(key) not in self.labels:
                problems.append(Problem(f"describes '{key}', which is not a label", field="label_descriptions"))
        return problems

    def _separate_problems(self, used: set[str]) -> list[Problem]:
        if self.kind != "pairwise":
            return [Problem(f"'separate' is for pairwise judges; this one is {self.kind}", field="pairwise_mode")]
        problems = [
            Problem(
                f"shows '{name}', but in separate mode each prompt holds one response: use 'response'", field="template"
            )
            for name in sorted({"response_a", "response_b"} & used)
        ]
        if self.tie_margin < 0:
            problems.append(Problem("must be >= 0", field="tie_margin"))
        if self.tie_margin > 0 and "tie" not in self.labels:
            problems.append(Problem("needs a 'tie' label", field="tie_margin"))
        return problems

    @property
    def separate(self) -> bool:
        """Whether each response of a pair is judged on its own (``pairwise_mode: separate``)."""
        return self.kind == "pairwise" and self.pairwise_mode == "separate"

    def response_spec(self) -> JudgeSpec:
        """Separate mode: the binary spec each single response is rendered and scored with (labels yes/no)."""
        truncatable = [f for f in self.truncatable if f not in ("response_a", "response_b")]
        return JudgeSpec(
            name=f"{self.name}/response",
            kind="binary",
            labels=list(RESPONSE_LABELS),
            system=self.system,
            template=self.template,
            criteria=self.criteria,
            version=self.version,
            base_model=self.base_model,
            max_prompt_tokens=self.max_prompt_tokens,
            truncatable=truncatable if "response" in truncatable else ["response", *truncatable],
        )

    def answer_spec(self) -> JudgeSpec:
        """The spec whose labels the model answers each rendered prompt with: ``response_spec()`` (yes/no) in
        separate mode, else this spec. Backends read these labels' probabilities; training targets them."""
        return self.response_spec() if self.separate else self

    @property
    def label_space(self) -> LabelSpace:
        return LabelSpace(self.kind, self.labels)

    def to_dict(self) -> dict:
        return to_dict(self)


# fields added after the first specs were fingerprinted: they enter the hash only when they differ from these
# defaults, so every judge fingerprinted before they existed keeps its fingerprint
LATER_FIELDS = {"pairwise_mode": "joint", "tie_margin": 0.0}


def spec_hash(spec: JudgeSpec) -> str:
    """sha256 of the spec's canonical JSON: any change to the prompt or labels changes it."""
    data = {k: v for k, v in spec.to_dict().items() if not (k in LATER_FIELDS and v == LATER_FIELDS[k])}
    return sha256_json(data)


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
    return build_config(JudgeSpec, data or {}, path=str(path), lines=lines, overrides=parse_overrides(overrides or []))


def spec_from_dict(data: dict) -> JudgeSpec:
    """Rebuild a spec saved in a run directory or a card."""
    return build_config(JudgeSpec, data)
