"""Judge specs: what a judge is asked, in which words, with which labels, on which base model.

A spec is a YAML file in ``configs/judges/`` (or any path). ``load_spec`` validates it and
reports every problem at once; ``spec_hash`` is the spec's part of the judge fingerprint.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import jinja2
import jinja2.meta
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from data.config import build_config, load_yaml, option, parse_overrides, to_dict
from data.embedded_model import find as find_model
from data.errors import Problem, UnknownNameError
from data.labels import LabelSpace
from data.paths import CONFIGS_DIR
from data.provenance import sha256_json
from data.schema import RESPONSE_FIELDS, TEXT_FIELDS

JUDGES_DIR = CONFIGS_DIR / "judges"
RESPONSE_LABELS = ("yes", "no")  # separate mode: is this one response good? score = logit(yes) - logit(no)


# --- templates: compiled and rendered only in Jinja's sandbox ---------------------------------------
# A spec's template is code from whoever wrote the spec (shared judge directories, other teams), so it
# runs in ``ImmutableSandboxedEnvironment``: no private or internal attributes (``__globals__``,
# ``__class__``, ``mro``, ...), no mutating methods, ``range`` capped. ``validate`` refuses an unsafe
# template at load; rendering refuses it again (a spec built without validation).
UNSAFE_NAMES = frozenset(
    {"mro", "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame", "ag_code", "func_globals", "func_code"}
    | {"f_globals", "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next", "co_code"}
)
# filters that look an attribute up by the name given as an argument (``attr('__class__')``, ``map(attribute=...)``)
_ATTRIBUTE_FILTERS = frozenset(
    {"attr", "map", "selectattr", "rejectattr", "sort", "groupby", "sum", "unique", "min", "max"}
)
MAX_SEQUENCE = 1_000_000  # longest string or list a template may build with ``*``
MAX_EXPONENT = 1_024


class TemplateSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, plus ``*`` and ``**`` that cannot build a gigabyte (``{{ 'a' * 10**10 }}`` would hang
    compiling: Jinja folds constant expressions unless the operator is intercepted)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is above {MAX_EXPONENT}")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_SEQUENCE:
                    raise SecurityError(f"'*' would build a sequence over {MAX_SEQUENCE:,} long")
        return super().call_binop(context, operator, left, right)


TEMPLATE_ENV = TemplateSandbox(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False)


@functools.lru_cache(maxsize=256)
def compile_template(source: str) -> jinja2.Template:
    """A spec's template compiled once in the sandbox (compiling took ~3 ms a render, most of a render's time)."""
    return TEMPLATE_ENV.from_string(source)


def template_values(fields: dict[str, Any], spec: JudgeSpec) -> dict[str, Any]:
    """Everything a template sees: the item's fields plus the spec's rubric and labels."""
    return {
        **fields,
        "criteria": spec.criteria.strip(),
        "labels": spec.labels,
        "label_descriptions": spec.label_descriptions,
        "kind": spec.kind,
    }


def _reached_names(ast: nodes.Template) -> list[tuple[str, int]]:
    """(name, template line) of every private or internal attribute the template names: ``x.__class__``,
    ``x['__globals__']``, ``x|attr('mro')``, ``map(attribute='__class__')``, or a string constant holding
    a dunder fragment (``'__in' ~ 'it__'``). Found statically, so a branch the placeholder render does not
    take is refused too; what no static look can see (a name computed some other way) the sandbox still
    refuses when it runs."""

    def private(name: Any) -> bool:  # what the sandbox refuses as an attribute
        return isinstance(name, str) and (name.startswith("_") or name in UNSAFE_NAMES)

    def dunder(value: Any) -> bool:  # a constant that can only be meant as (part of) an internal name
        return isinstance(value, str) and ("__" in value or value in UNSAFE_NAMES)

    found = []
    for node in ast.find_all((nodes.Getattr, nodes.Filter, nodes.Const)):
        if isinstance(node, nodes.Getattr):
            names = [node.attr] if private(node.attr) else []
        elif isinstance(node, nodes.Filter):
            args = [*node.args, *(kw.value for kw in node.kwargs)] if node.name in _ATTRIBUTE_FILTERS else []
            names = [a.value for a in args if isinstance(a, nodes.Const) and private(a.value)]
        else:
            names = [node.value] if dunder(node.value) else []
        found += [(name, node.lineno) for name in names]
    return found


def template_problems(spec: JudgeSpec, ast: nodes.Template) -> list[Problem]:
    """Why a template that compiles may not be used: it reaches for private or internal attributes, or
    rendering it once with placeholder fields in the sandbox fails (an unsafe call, an undefined name)."""
    reached = _reached_names(ast)
    if reached:
        names = ", ".join(f"'{name}'" for name in dict.fromkeys(name for name, _ in reversed(reached)))
        line = min(line for _, line in reached)
        return [
            Problem(
                f"template reaches for {names} (template line {line}): private and internal attributes are refused",
                field="template",
                hint="a template shows the item fields, criteria, labels and label_descriptions; nothing else",
            )
        ]
    placeholders = {name: f"<{name}>" for name in TEXT_FIELDS}
    try:
        compile_template(spec.template).render(**template_values(placeholders, spec))
    except SecurityError as exc:
        return [Problem(f"template is unsafe: {exc}", field="template")]
    except jinja2.TemplateError as exc:
        return [Problem(f"template fails to render with placeholder fields: {exc}", field="template")]
    except Exception as exc:  # any failure of the spec's own template is the spec's problem
        message = f"template fails to render with placeholder fields ({type(exc).__name__}: {exc})"
        return [Problem(message, field="template")]
    return []


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
    max_prompt_tokens: Optional[int] = option(
        None,
        help="prompt budget in tokens; longer items are cut (responses, input, context, reference first, the "
        "instruction last). null: the model's context, capped by the serving engine's max_model_len",
    )
    truncatable: list[str] = option(
        ["response_a", "response_b", "response", "context", "input", "reference"],
        help="fields the renderer cuts first, longest first; the instruction is cut only when these cannot make room",
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
    prompt_format: Literal["chat", "plain"] = option(
        "chat",
        help="chat: the base model's chat template (an instruct model). plain: for a base model without one "
        "(gemma3-270m): <bos>, the system message, the user message and an 'Answer:' line, as plain text",
    )

    def validate(self) -> list[Problem]:
        problems = []
        try:
            self.label_space
        except ValueError as exc:
            problems.append(Problem(str(exc), field="labels"))
        try:
            ast = TEMPLATE_ENV.parse(self.template)
            used = jinja2.meta.find_undeclared_variables(ast)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(
                Problem(f"template does not compile: {exc.message} (template line {exc.lineno})", field="template")
            )
            used = set()
        else:
            problems += template_problems(self, ast)
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
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 64:
            problems.append(Problem("must be at least 64", field="max_prompt_tokens"))
        problems += self.format_problems()
        for key in self.label_descriptions:
            if str(key) not in self.labels:
                problems.append(Problem(f"describes '{key}', which is not a label", field="label_descriptions"))
        return problems

    def format_problems(self) -> list[Problem]:
        """A model fetched by judgeloop declares its prompt format; a spec on it must render that one."""
        model = find_model(self.base_model)
        if model is None or model.prompt_format == self.prompt_format:
            return []
        why = "has no chat template" if model.prompt_format == "plain" else "is an instruct model with a chat template"
        return [
            Problem(
                f"base model '{model.name}' {why}: its judges use prompt_format: {model.prompt_format}",
                field="prompt_format",
            )
        ]

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
            prompt_format=self.prompt_format,
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
LATER_FIELDS = {"pairwise_mode": "joint", "tie_margin": 0.0, "prompt_format": "chat"}


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
