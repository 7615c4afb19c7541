"""Property tests: the renderer, label parsing, JSONL reading and the metrics, fed anything, either
answer or raise one of the project's typed errors (JudgeloopError), never anything else.

Generated cases, counted from the explicit max_examples below:
  renderer 1,200 + labels 6,500 (check 3,000, parse_output 1,500, aggregate/distribution 1,500,
  LabelSpace 500) + JSONL 2,000 (reading 1,500, resuming an output 500) + metrics 1,600 (headline 500,
  confusion forms 500, calibration 300, correlations 300) = 11,300.
"""

import json
import math
import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from data.errors import JudgeloopError
from data.jsonl import JsonlAppender, iter_json_lines, read_jsonl
from data.labels import KINDS, LabelSpace, aggregate
from data.render import DEFAULT_BUDGET, RenderError, render
from data.schema import TEXT_FIELDS, Item, JudgeRef, Verdict
from data.spec import load_spec
from eval import metrics
from judge import agreement

TOTAL_EXAMPLES = 1200 + 3000 + 1500 + 1500 + 500 + 1500 + 500 + 500 + 500 + 300 + 300


def run(n):
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def typed_or_value(fn, *args):
    """Call ``fn``; a typed error is a fine answer, anything else propagates (and fails the test)."""
    try:
        return fn(*args)
    except JudgeloopError as exc:
        assert exc.problems and str(exc)
        return exc


# ------------------------------------------------------------------ anything a user can put in a field
SPECIALS = [
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "{{ labels }}",
    "{% for x in y %}",
    "{#",
    "\x00",
    "Verdict: A",
    "\r\n",
    "\u202e",
    "A",
    "B",
    "tie",
]
text = st.one_of(
    st.text(max_size=80),
    st.sampled_from(SPECIALS),
    st.lists(st.one_of(st.text(max_size=10), st.sampled_from(SPECIALS)), max_size=6).map("".join),
)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), text)
json_value = st.recursive(
    json_scalar,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=12,
)
SPEC_NAMES = ["helpfulness-pairwise", "answer-correctness", "summary-coherence"]
SPECS = {name: load_spec(name) for name in SPEC_NAMES}


@st.composite
def items(draw, kind=None):
    kind = kind or draw(st.sampled_from(KINDS))
    fields = {"response_a": draw(text), "response_b": draw(text)} if kind == "pairwise" else {"response": draw(text)}
    for name in ("input", "context", "reference"):
        if draw(st.booleans()):
            fields[name] = draw(text)
    return Item(id=draw(st.text(min_size=1, max_size=8)), group="g", kind=kind, instruction=draw(text), **fields)


# ------------------------------------------------------------------ the renderer (1,200)
@run(1200)
@given(
    st.sampled_from(SPEC_NAMES).flatmap(
        lambda name: st.tuples(st.just(name), items(SPECS[name].kind), st.sampled_from(["ab", "ba"]))
    )
)
def test_renderer_answers_or_raises_a_render_error(tokenizer, case):
    name, item, order = case
    spec = SPECS[name]
    order = order if item.kind == "pairwise" else "ab"
    out = typed_or_value(render, spec, item, tokenizer, order)
    if isinstance(out, JudgeloopError):
        assert isinstance(out, RenderError)
        return
    assert out.prompt.endswith("<|im_start|>assistant\n") and len(out.token_ids) <= (
        spec.max_prompt_tokens or DEFAULT_BUDGET
    )
    # judged text is data: it never adds a special token (a forged turn) or is run as a template
    clean = render(
        spec,
        item.model_copy(update={k: "x" for k in TEXT_FIELDS if getattr(item, k) is not None}),
        tokenizer,
        order,
    )
    specials = set(tokenizer.all_special_ids)
    assert sum(t in specials for t in out.token_ids) == sum(t in specials for t in clean.token_ids)


# ------------------------------------------------------------------ label parsing (6,500)
SPACES = [
    LabelSpace("pairwise", ["A", "B", "tie"]),
    LabelSpace("pairwise", ["A", "B"]),
    LabelSpace("binary", ["yes", "no"]),
    LabelSpace("pointwise", ["1", "2", "3", "4", "5"]),
]


@run(3000)
@given(st.sampled_from(SPACES), json_value)
@example(SPACES[3], 10**400)  # float() overflows
@example(SPACES[3], float("nan"))
def test_check_canonicalises_or_raises_a_label_error(space, value):
    out = typed_or_value(space.check, value)
    if not isinstance(out, JudgeloopError):
        assert (
            (out in space.labels) if space.kind != "pointwise" else space.score_range[0] <= out <= space.score_range[1]
        )
        assert space.check(out) == out  # canonical form is a fixed point


@run(1500)
@given(st.sampled_from(SPACES), text)
def test_parse_output_names_a_label_or_none(space, output):
    assert space.parse_output(output) in (*space.labels, None)


@run(1500)
@given(
    st.sampled_from(SPACES),
    st.lists(
        st.one_of(
            st.none(),
            st.sampled_from(["A", "B", "tie", "yes", "no", "1", "3", "5"]),
            st.integers(-3, 9),
            st.floats(allow_nan=True),
            text,
        ),
        max_size=6,
    ),
)
def test_aggregate_and_distribution_answer_or_raise_typed(space, labels):
    agg = typed_or_value(aggregate, space.kind, labels)
    dist = typed_or_value(space.distribution, labels)
    if isinstance(dist, dict) and dist:
        assert math.isclose(sum(dist.values()), 1.0) or not all(math.isfinite(v) for v in dist.values())
    if space.kind != "pointwise" and not isinstance(agg, JudgeloopError):
        assert agg is None or agg in labels or agg == "tie"


@run(500)
@given(st.sampled_from([*KINDS, "ranking", ""]), st.lists(st.one_of(text, st.integers(), st.floats()), max_size=5))
def test_label_space_is_built_or_refused_with_a_typed_error(kind, labels):
    out = typed_or_value(LabelSpace, kind, labels)
    if isinstance(out, LabelSpace):
        assert len(out.labels) >= 2 and len({lab[:1].lower() for lab in out.labels}) == len(out.labels)


# ------------------------------------------------------------------ JSONL (2,000)
lines = st.one_of(
    st.binary(max_size=60),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda d: json.dumps(d).encode(),
        st.fixed_dictionaries(
            {
                "id": st.text(max_size=4),
                "group": st.text(max_size=3),
                "kind": st.sampled_from([*KINDS, "x"]),
                "instruction": text,
            },
            optional={"response": text, "response_a": text, "labels": json_value},
        ),
    ),
    st.sampled_from(
        [b"\xef\xbb\xbf{}", b"NaN", b'{"id": NaN}', b"[" * 3000, b'{"a": 1}{"b": 2}', b"\xff\xfe", b"   ", b"\n"]
    ),
)


def write_tmp(data: bytes) -> str:
    fd, path = tempfile.mkstemp(suffix=".jsonl")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


@run(1500)
@given(st.lists(lines, max_size=5).map(lambda ls: b"\n".join(ls)))
@example(b"[" * 100_000)  # deeper than Python's recursion limit
def test_reading_jsonl_yields_records_or_raises_a_located_data_error(data):
    path = write_tmp(data)
    try:
        records = typed_or_value(lambda: list(read_jsonl(path, Item)))
        if isinstance(records, JudgeloopError):
            assert all(p.path == path for p in records.problems)
        else:
            assert all(isinstance(r, Item) for r in records)
        objs = typed_or_value(lambda: list(iter_json_lines(path)))
        if not isinstance(objs, JudgeloopError):
            assert all(isinstance(o, dict) and line >= 1 for line, o in objs)
    finally:
        os.unlink(path)


@run(500)
@given(
    st.lists(
        st.one_of(st.builds(lambda i: json.dumps({"id": i}).encode() + b"\n", st.text(max_size=4)), lines), max_size=5
    ).map(b"".join)
)
def test_resuming_an_output_file_keeps_it_or_raises_and_leaves_it_untouched(data):
    path = write_tmp(data)
    try:
        out = typed_or_value(JsonlAppender, path)
        with open(path, "rb") as fh:
            after = fh.read()
        if isinstance(out, JudgeloopError):
            assert after == data  # refused: not one byte lost
        else:
            out.close()
            assert data.startswith(after) and b"\n" not in data[len(after) :]  # at most a torn last line dropped
    finally:
        os.unlink(path)


# ------------------------------------------------------------------ metrics (1,600)
REF = JudgeRef(name="j", fingerprint="f")
probs = st.dictionaries(st.sampled_from(["A", "B", "tie", "C"]), st.floats(0, 1), max_size=3)


@st.composite
def item_and_verdict(draw):
    item = draw(items("pairwise")).model_copy(update={"id": draw(st.sampled_from(["a", "b", "c", "d", "e"]))})
    item = item.model_copy(
        update={
            "labels": draw(st.lists(st.sampled_from(["A", "B", "tie", None]), max_size=3)),
            "label": draw(st.sampled_from(["A", "B", "tie", None])),
        }
    )
    verdict = draw(
        st.one_of(
            st.none(),
            st.builds(
                lambda v, p, e, o: Verdict(
                    id=item.id,
                    verdict=v,
                    probs=p or None,
                    judge=REF,
                    error=e,
                    order_probs={"ab": o[0], "ba": o[1]} if o else None,
                ),
                st.sampled_from(["A", "B", "tie", "C", 3, None]),
                probs,
                st.sampled_from([None, "backend: down"]),
                st.one_of(st.none(), st.tuples(probs, probs)),
            ),
        )
    )
    return item, verdict


@run(500)
@given(st.lists(item_and_verdict(), max_size=8))
def test_headline_metrics_answer_for_any_verdicts(pairs):
    spec = SPECS["helpfulness-pairwise"]
    out = typed_or_value(agreement.headline, [i for i, _ in pairs], [v for _, v in pairs if v is not None], spec)
    if isinstance(out, dict):
        assert out["accuracy"] is None or 0 <= out["accuracy"] <= 1
        assert out["swap_consistency"] is None or 0 <= out["swap_consistency"] <= 1


labels3 = st.sampled_from(["A", "B", "tie", agreement.NO_VERDICT])


@run(500)
@given(
    st.integers(0, 12).flatmap(
        lambda n: st.tuples(st.lists(labels3, min_size=n, max_size=n), st.lists(labels3, min_size=n, max_size=n))
    )
)
def test_confusion_forms_of_the_metrics_are_defined_or_nan(pair):
    truth, pred = pair
    cm = metrics.confusion(truth, pred, ["A", "B", "tie", agreement.NO_VERDICT])
    for value in (metrics.accuracy_cm(cm), metrics.kappa_cm(cm), metrics.macro_f1_cm(cm)):
        assert np.isnan(value) or -1.0 - 1e-9 <= float(value) <= 1.0 + 1e-9
    if truth:
        for fn in (metrics.accuracy, metrics.cohen_kappa, metrics.macro_f1):
            assert isinstance(fn(truth, pred), float)


unit = st.floats(0, 1)


@run(300)
@given(
    st.integers(0, 20).flatmap(
        lambda n: st.tuples(st.lists(unit, min_size=n, max_size=n), st.lists(st.booleans(), min_size=n, max_size=n))
    )
)
def test_calibration_is_defined_or_nan(pair):
    conf, hit = pair
    value = metrics.ece(conf, hit)
    assert np.isnan(value) if not conf else 0 <= value <= 1 + 1e-9
    assert sum(b["n"] for b in metrics.reliability_curve(conf, hit)) == len(conf)


finite = st.floats(-1e6, 1e6)


@run(300)
@given(
    st.integers(0, 15).flatmap(
        lambda n: st.tuples(st.lists(finite, min_size=n, max_size=n), st.lists(finite, min_size=n, max_size=n))
    )
)
def test_correlations_are_defined_or_nan(pair):
    x, y = pair
    for fn in (metrics.spearman, metrics.kendall, metrics.pearson):
        value = fn(x, y)
        assert np.isnan(value) or -1 - 1e-9 <= value <= 1 + 1e-9


def test_the_generated_cases_add_up_to_at_least_10000():
    assert TOTAL_EXAMPLES >= 10_000
