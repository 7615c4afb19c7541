"""A judge spec's template is code from whoever wrote the spec: it renders only in Jinja's sandbox, and a
template that reaches for Python internals (``cycler.__init__.__globals__.os.system(...)``) is refused when
the spec loads, naming the spec file and the field, and is never executed (a marker file it would create
must not appear). Every shipped spec renders byte-identically in the sandbox."""

import json
import time
from pathlib import Path

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import judgeloop
from data.errors import ConfigError
from data.render import RenderError, item_fields, render, render_messages
from data.schema import Item
from data.spec import JudgeSpec, compile_template, known_specs, load_spec, spec_from_dict
from tests.data.test_render import ITEMS

PLAIN = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, autoescape=False)
PAIRWISE = load_spec("helpfulness-pairwise").to_dict()
ITEM = ITEMS["helpfulness-pairwise"]
FULL = ITEM.model_copy(update={"input": "an input", "context": "some context", "reference": "a reference"})


def settings_(n):
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def plain_render(spec: JudgeSpec, item: Item, order: str = "ab") -> str:
    """What the renderer produced before the sandbox: a plain Environment with the same options."""
    return (
        PLAIN.from_string(spec.template)
        .render(
            **item_fields(item, order),
            criteria=spec.criteria.strip(),
            labels=spec.labels,
            label_descriptions=spec.label_descriptions,
            kind=spec.kind,
        )
        .strip()
    )


def test_every_shipped_spec_renders_byte_identically_in_the_sandbox(tokenizer):
    for name in known_specs():
        spec = load_spec(name)
        item = next(i for i in ITEMS.values() if i.kind == spec.kind)
        for order in ("ab", "ba") if spec.kind == "pairwise" else ("ab",):
            assert render_messages(spec, item, order)[1]["content"] == plain_render(spec, item, order), (name, order)
            render(spec, item, tokenizer, order)  # and through the whole renderer (golden files: test_render.py)


def test_the_compiled_template_is_cached_and_sandboxed():
    source = PAIRWISE["template"]
    assert compile_template(source) is compile_template(source)
    assert isinstance(compile_template(source).environment, jinja2.sandbox.ImmutableSandboxedEnvironment)


# ------------------------------------------------------------------ the review's attack, at load and at render
ATTACK = "{{ cycler.__init__.__globals__.os.system('touch MARKER') }} {{ response_a }} {{ response_b }}"


def test_control_a_plain_environment_does_run_the_attack(tmp_path):
    """The marker observes execution: the same template in a plain Environment (the renderer before the
    sandbox) creates it."""
    marker = tmp_path / "pwned"
    PLAIN.from_string(ATTACK.replace("MARKER", str(marker))).render(response_a="a", response_b="b")
    assert marker.exists()


def test_the_reviewed_attack_is_refused_at_load_with_the_spec_file_and_field(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps({**PAIRWISE, "template": ATTACK.replace("MARKER", str(marker))}))
    with pytest.raises(ConfigError) as err:
        load_spec(path)
    problem = err.value.first
    assert (problem.path, problem.field) == (str(path), "template")
    assert "'__init__'" in problem.message and "'__globals__'" in problem.message
    assert not marker.exists()


def test_a_judge_json_carrying_the_attack_is_refused_too(tmp_path):
    """judge.json's spec is validated the same way (spec_from_dict), in a shared judge directory."""
    marker = tmp_path / "pwned"
    with pytest.raises(ConfigError, match="template reaches for"):
        spec_from_dict({**PAIRWISE, "template": ATTACK.replace("MARKER", str(marker))})
    assert not marker.exists()


def test_a_spec_that_skipped_validation_is_refused_by_the_sandbox_when_rendering(tmp_path):
    marker = tmp_path / "pwned"
    spec = JudgeSpec(**{**PAIRWISE, "template": ATTACK.replace("MARKER", str(marker))})  # no validation
    with pytest.raises(RenderError, match="unsafe") as err:
        render_messages(spec, ITEM)
    assert err.value.first.field == "template"
    assert not marker.exists()


def test_score_with_the_attack_spec_exits_2_before_running_anything(tmp_path, capsys):
    marker = tmp_path / "pwned"
    (tmp_path / "spec.yaml").write_text(json.dumps({**PAIRWISE, "template": ATTACK.replace("MARKER", str(marker))}))
    (tmp_path / "in.jsonl").write_text(ITEM.model_dump_json() + "\n")
    code = judgeloop.main(
        ["score", "--judge", str(tmp_path / "spec.yaml"), "--in", str(tmp_path / "in.jsonl")]
        + ["--out", str(tmp_path / "out.jsonl"), "--engine=transformers", "-q"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "spec.yaml" in err and "field 'template'" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    "expression,fragment",
    [
        ("'a' * 10**10", "sequence over"),  # would hang compiling (constant folding) without the sandbox's limit
        ("10 ** 100000000", "exponent"),
        ("labels.append('x')", "unsafe"),  # the immutable sandbox: no mutating methods
        ("undefined_name", "undefined"),
    ],
)
def test_templates_that_would_hang_mutate_or_fail_are_refused_at_load_fast(expression, fragment):
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=fragment):
        spec_from_dict({**PAIRWISE, "template": "{{ " + expression + " }} {{ response_a }} {{ response_b }}"})
    assert time.perf_counter() - start < 1.0


# ------------------------------------------------------------------ property: allowed constructs render
FIELDS = ["instruction", "input", "context", "reference", "response_a", "response_b", "criteria", "kind"]
FILTERS = ["", " | upper", " | lower", " | trim", " | length", " | wordcount", " | title", " | e", " | truncate(20)"]
words = st.text(alphabet="abcdefghij XYZ.,:;!?-\n", max_size=20)


@st.composite
def allowed_piece(draw, depth=0):
    kind = draw(st.sampled_from(["text", "field", "labels", "join", "set", "if", "for"][: 7 if depth < 2 else 4]))
    field = draw(st.sampled_from(FIELDS))
    if kind == "text":
        return draw(words)
    if kind == "field":
        return "{{ " + field + draw(st.sampled_from(FILTERS)) + " }}"
    if kind == "labels":
        return (
            "{% for label in labels %}- {{ label }}: {{ label_descriptions[label] }} ({{ loop.index }})\n{% endfor %}"
        )
    if kind == "join":
        return "{{ labels | join(" + json.dumps(draw(st.sampled_from([", ", " / ", "|"]))) + ") }}"
    if kind == "set":
        return "{% set shown = " + field + " %}{{ shown }}"
    inner = "".join(draw(st.lists(allowed_piece(depth + 1), min_size=1, max_size=3)))
    if kind == "if":
        return "{% if " + field + " %}" + inner + "{% else %}-{% endif %}"
    return "{% for x in [1, 2] %}" + inner + "{% endfor %}"


@given(st.lists(allowed_piece(), min_size=1, max_size=6).map("".join), st.sampled_from(["ab", "ba"]))
@settings_(300)
def test_templates_built_from_allowed_constructs_load_and_render_as_before(body, order):
    template = body + "\n{{ response_a }}\n{{ response_b }}"
    spec = spec_from_dict({**PAIRWISE, "template": template})  # loads: validation passes
    assert render_messages(spec, FULL, order)[1]["content"] == plain_render(spec, FULL, order)


# ------------------------------------------------------------------ property: reaching for internals is refused
STARTS = ["cycler", "joiner", "namespace", "lipsum", "range", "self", "labels", "response_a", "''", "()", "{}"]
STEPS = [
    ".__class__",
    ".__init__",
    ".__globals__",
    ".__subclasses__()",
    ".__mro__",
    ".mro()",
    ".__base__",
    ".__bases__[0]",
    ".__dict__",
    ".__builtins__",
    "['__class__']",
    "['__globals__']",
    "['__in' ~ 'it__']",
    "|attr('__class__')",  # a filter step: the chain so far is parenthesised first
    "|attr('__init__')",
    ".gi_frame",
    ".func_globals",
]
PAYLOADS = [
    ".os.system('touch MARKER')",
    "['os'].popen('touch MARKER').read()",
    "['__builtins__']['__import__']('os').system('touch MARKER')",
    ".__builtins__.open('MARKER', 'w').write('x')",
    "['eval'](\"__import__('os').system('touch MARKER')\")",
]
WRAPPERS = [
    "{{ X }}",
    "{% if instruction %}{{ X }}{% endif %}",
    "{% if not instruction %}{{ X }}{% endif %}",  # a branch the placeholder render does not take
    "{% for label in labels %}{{ X }}{% endfor %}",
    "{% set y = X %}{{ y }}",
    "{% macro m() %}{{ X }}{% endmacro %}",  # never called
    "{{ labels | map(attribute='__class__') | list }}{{ X }}",
    "{{ response_a if X else response_b }}",
]


@given(
    st.sampled_from(STARTS),
    st.lists(st.sampled_from(STEPS), min_size=1, max_size=4),
    st.sampled_from(PAYLOADS),
    st.sampled_from(WRAPPERS),
    st.lists(allowed_piece(), max_size=2).map("".join),
)
@settings_(400)
def test_templates_that_reach_for_internals_are_refused_at_load_never_executed(start, steps, payload, wrap, noise):
    marker = Path(_MARKER_DIR) / "pwned"
    chain = start
    for step in steps:
        chain = f"({chain}{step})" if step.startswith("|") else chain + step
    attack = wrap.replace("X", chain + payload.replace("MARKER", str(marker)))
    template = noise + attack + "\n{{ response_a }} {{ response_b }}"
    with pytest.raises(ConfigError) as err:
        spec_from_dict({**PAIRWISE, "template": template})
    assert err.value.first.field == "template"
    assert "reaches for" in err.value.first.message
    # and a spec built without validation: the sandbox refuses (or the branch never runs), nothing executes
    try:
        render_messages(JudgeSpec(**{**PAIRWISE, "template": template}), FULL)
    except RenderError as exc:
        assert exc.first.field == "template"
    except jinja2.TemplateError:
        pass  # e.g. an undefined attribute of a harmless object
    assert not marker.exists(), template


_MARKER_DIR = None


@pytest.fixture(autouse=True, scope="module")
def _marker_dir(tmp_path_factory):
    global _MARKER_DIR
    _MARKER_DIR = str(tmp_path_factory.mktemp("sandbox-marker"))
    yield
    assert not (Path(_MARKER_DIR) / "pwned").exists()
