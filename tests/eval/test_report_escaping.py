"""Reports from hostile data: every string a validation result, a criteria summary or a monitor window
carries is replaced by a payload (a script, an attribute break-out, a javascript: link, a table-cell
break, an HTML comment, a heading, a code span), the reports are rendered, and neither the HTML nor
the Markdown contains any markup the payloads asked for. The payloads are in the output, as text."""

from __future__ import annotations

import itertools
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from eval.gate import GateConfig, check
from eval.rendering import href, md_escape
from eval.report import _env, interval_text, pct, render_html, render_markdown, write_criteria_report
from eval.result import ValidationResult

GOLDEN = Path(__file__).parent / "golden"
SCRIPT = "<script>alert(1)</script>"
PAYLOADS = [
    SCRIPT,
    '"><img src=x onerror=alert(1)>',
    "](javascript:alert(1))",
    "[click](javascript:alert(1))",
    "| col | col |",
    "<!-- hidden",
    "# heading",
    "`code` ```",
    "x\n# injected heading\n=====",
    "- list\r\n> quote",
    "<a href='javascript:alert(1)'>a</a>",
    "&lt;script&gt;alert(2)&lt;/script&gt;",
    "javascript:alert(1)",
    "$x^{$ mathtext",
]
# fields the code branches on or that pydantic restricts to a few values: left as they are
KEEP = {"kind", "op", "status"}
# mappings whose keys are names from the data (judges, slices, error kinds, input roles, templates)
KEYED = {"slices", "error_kinds", "reference_judges", "inputs", "by_template", "templates", "versions", "sources"}


def poison(value, counter, key: str | None = None, keyed: bool = False):
    """Every string (and every data key of the KEYED mappings) replaced by a numbered payload; a key's
    payload depends on the key alone, so mappings keyed alike (injection templates) still line up."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            new_key = f"{PAYLOADS[sum(map(ord, k)) % len(PAYLOADS)]} {k}" if keyed else k
            out[new_key] = poison(v, counter, k, keyed=k in KEYED or key == "slices")
        return out
    if isinstance(value, list):
        return [poison(v, counter, key) for v in value]
    if isinstance(value, str) and key not in KEEP:
        return f"{PAYLOADS[next(counter) % len(PAYLOADS)]} {next(counter)}"
    return value


def hostile(kind: str) -> ValidationResult:
    """A golden result (pairwise: refs, incumbent, inputs, gate; binary: injection, error kinds) with every
    string a payload; the gate recomputed, then its recorded strings poisoned as well."""
    data = json.loads((GOLDEN / f"validation-{kind}-v1.json").read_text())
    gate = data.pop("gate", None)
    counter = itertools.count()
    data = poison(data, counter)
    data["provenance"]["commands"] = data["provenance"].get("commands") or ["judgeloop eval ```\n# cmd " + SCRIPT]
    data["inputs"] = data.get("inputs") or {SCRIPT: {"path": "<!-- path", "sha256": "`x` | y"}}
    data["judge"].update(name=SCRIPT, fingerprint=SCRIPT + "f" * 48)  # both in the title and the banner
    data["dataset"]["name"] = '"><img src=x onerror=alert(1)>'
    result = ValidationResult.model_validate(data)
    cfg = GateConfig(**gate["thresholds"]) if gate else GateConfig(min_n=20)
    g = check(result, cfg, config_path=SCRIPT).model_dump(by_alias=True)
    g = {**g, "baseline": SCRIPT, "loosened": [SCRIPT, "| x |"], "external_verdicts": True}
    g["rules"] = [
        {**r, **poison({"name": r["name"], "rule": r["rule"], "note": r["note"]}, counter)} for r in g["rules"]
    ]
    result.gate = g
    return result


class Elements(HTMLParser):
    """Every start tag with its attributes, and the page's text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_comment(self, data):
        self.tags.append(("!--", {"data": data}))

    def handle_data(self, data):
        self.text.append(data)


TEMPLATE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "div", "small", "h2", "h3", "ul", "li", "table",
    "tr", "th", "td", "p", "span", "code", "pre", "figure", "img", "figcaption", "a", "strong", "b",
}  # fmt: skip


def assert_inert_html(page: str) -> str:
    """No element, attribute or comment the data asked for; returns the page's text."""
    parser = Elements()
    parser.feed(page)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag in TEMPLATE_TAGS, f"<{tag}> from the data"
        assert tag != "script"
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,"), attrs
        for name in ("href", "src"):
            assert not (attrs.get(name) or "").strip().lower().startswith("javascript:"), (tag, attrs)
    assert "<script" not in page.lower() and "<!--" not in page
    return "".join(parser.text)


def assert_inert_markdown(md: str, headings: tuple[str, ...]) -> None:
    """No HTML, comment, link, code span or heading the data asked for; every table row keeps its cells."""
    assert "<script" not in md.lower() and "<img" not in md and "<a " not in md and "<!--" not in md
    # the only unescaped backticks are the template's own code spans and fences (inside them nothing is a link)
    prose = re.sub(r"(?<!\\)`[^`]*`", "", re.sub(r"```.*?```", "", md, flags=re.S))
    assert "`" not in prose.replace("\\`", "")
    assert not re.search(r"(?<!\\)\]\(", prose), "a ](...) link from the data"
    assert not re.search(r"(?<!\\)\][\[:]", prose)
    fences = [i for i, line in enumerate(md.splitlines()) if line.startswith("```")]
    assert all(md.splitlines()[i] == "```" for i in fences) and len(fences) % 2 == 0  # the template's own
    lines = [
        line for i, line in enumerate(md.splitlines()) if not any(a < i < b for a, b in zip(fences[::2], fences[1::2]))
    ]
    for line in lines:
        if line.startswith("#"):
            assert line.startswith(headings), f"a heading from the data: {line!r}"
        assert not re.match(r"^(=+|-{3,})\s*$", line), f"a setext underline: {line!r}"
        assert not line.startswith(("- #", "- -", "- =", ">")) or line.startswith("> note: "), line
    table = None
    for line in lines:
        if line.startswith("|"):
            cells = len(re.findall(r"(?<!\\)\|", line))
            table = cells if table is None else table
            assert cells == table, f"a table row with {cells} cell borders instead of {table}: {line!r}"
        else:
            table = None


@pytest.mark.parametrize("kind", ["pairwise", "binary"])
def test_the_validation_report_is_inert(kind):
    result = hostile(kind)
    page = render_html(result)
    text = assert_inert_html(page)
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert "<" not in title and "&lt;script&gt;" in title and "&#34;&gt;&lt;img" in title  # judge and dataset
    # the payloads are there, as text: judge, dataset, fingerprint, inputs, commands, the gate's notes
    for shown in (result.judge.name, result.dataset.name, result.judge.fingerprint, result.provenance.commands[0]):
        assert shown.replace("\n", " ").split()[0] in text.replace("\n", " ")
    assert SCRIPT in text and "Gate loosened" in text and "Verdicts not scored by judgeloop" in text
    assert result.slices  # slice names (and '$...$' in them) are drawn in the plots, as plain text
    for name in (
        *result.reference_judges,
        *result.errors.error_kinds,
        *(result.injection.by_template if result.injection else {}),
    ):
        assert name.split()[0] in text, name

    md = render_markdown(result)
    assert_inert_markdown(md, ("## Judge validation: ",))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    if result.reference_judges:
        assert md_escape(next(iter(result.reference_judges))) in md


def test_the_criteria_report_is_inert(tmp_path):
    result = hostile("pairwise")
    row = {
        "criterion": SCRIPT,
        "spec": "| spec |",
        "datasets": ["<!-- a", "[b](javascript:alert(1))"],
        "gates": "`gates`",
        "run_dir": "<img src=x onerror=alert(1)>",
        "train_command": "judgeloop train `x` | <script>",
    }
    rows = [
        {**row, "status": "missing"},
        {
            **row,
            "criterion": "# heading" + SCRIPT,
            "status": "validated",
            "kind": "pairwise",
            "metric": "accuracy",
            "n": result.n,
            "n_items": result.n_items,
            "fingerprint": result.judge.fingerprint,
            "judge": result.metrics["accuracy"].model_dump(),
            "base": result.metrics["accuracy"].model_dump(),
            "judge_minus_base": None,
            "ceiling": None,
            "gate": "FAIL",
            "failed_rules": [SCRIPT],
            "report": "javascript:alert(1)//report.html",
            "result": result,
        },
    ]
    crit = {
        "criteria": SCRIPT,
        "engine": "| e |",
        "max_items": None,
        "created": "<!--",
        "command": SCRIPT,
        "rows": rows,
    }
    paths = write_criteria_report(crit, tmp_path)
    page = paths["html"].read_text()
    text = assert_inert_html(page)
    assert SCRIPT in text and 'href="./javascript:alert(1)//report.html"' in page
    md = paths["markdown"].read_text()
    assert_inert_markdown(md, ("## Criterion judges: ", "### "))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md


def test_the_monitor_report_is_inert():
    rule = {
        "name": SCRIPT,
        "figure": 0.5,
        "threshold": 0.2,
        "op": "<=",
        "status": "FAIL",
        "rule": "| r |",
        "note": "<!--",
    }
    labels = {SCRIPT: 0.5, "[a](javascript:alert(1))": 0.5}
    m = {
        "judge": SCRIPT,
        "baseline_fingerprint": '"><img src=x onerror=alert(1)>',
        "window": {"since": "# since", "until": "<!-- until"},
        "live": {
            "n": 10,
            "n_verdicts": 10,
            "shares": labels,
            "counts": dict.fromkeys(labels, 5),
            "swap_inconsistency": 0.1,
            "error_rate": 0.0,
            "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": None},
        },
        "baseline": {
            "n_verdicts": 20,
            "shares": labels,
            "swap_inconsistency": 0.1,
            "validation": SCRIPT,
            "verdicts": "`v`",
        },
        "notes": [SCRIPT + "\n# note heading"],
        "engine": {
            "validated": "`v` <!--",
            "live": {SCRIPT: 6, "[e](javascript:alert(1))": 4},
            "mismatch": True,
            "message": SCRIPT + " | x |",
        },
        "rules": [rule],
        "review": {
            "agreement": {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9},
            "n_reviewed": 5,
            "estimator": SCRIPT,
            "strata": {"| s |": {"size": 3, "n_reviewed": 2, "agreement": 0.5}},
            "random_share_agreement": None,
        },
        "compare": {
            "candidate": "[c](javascript:alert(1))",
            "agreement": None,
            "n_pairs": 3,
            "n_shadow": 3,
            "cohen_kappa": SCRIPT,
            "confusion": {"columns": [SCRIPT], "rows": ["<!--"], "counts": [[1]]},
        },
        "log": SCRIPT,
        "created": "<!--",
    }
    ctx = {"m": m, "rules": [], "pct": pct, "interval_text": interval_text, "status": "ALERT"}
    page = _env().get_template("monitor.html.j2").render(**ctx, plots=[])
    text = assert_inert_html(page)
    assert SCRIPT in text and "[a](javascript:alert(1))" in text
    md = _env().get_template("monitor.md.j2").render(**ctx, plots=[])
    assert_inert_markdown(md, ("## Live judge monitor: ", "### "))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md


def test_names_in_plots_are_text_not_mathtext():
    """'$...$' in a slice or reference judge name would be parsed as mathtext and fail the whole report."""
    data = json.loads((GOLDEN / "validation-pairwise-v1.json").read_text())
    dim = next(iter(data["slices"]))
    data["slices"][dim]["$\\frac{a$"] = next(iter(data["slices"][dim].values()))
    data["reference_judges"]["$x^{$"] = data["reference_judges"]["ref"]
    page = render_html(ValidationResult.model_validate(data))
    assert "$x^{$" in page and page.count("data:image/png;base64,") == 5


def test_md_escape_leaves_ordinary_text_and_neutralises_markup():
    for plain in ("helpful 2", "prepared/pandalm/test.jsonl", "Accuracy 88.9% (95% CI 76.0%-99.4%) on 36 items.",
                  "gain 0.439 [0.227, 0.543]; p = 3e-08", "min_n, ece", "f" * 64):  # fmt: skip
        assert md_escape(plain) == plain and md_escape(plain, "code") == plain
    assert md_escape(SCRIPT) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert md_escape("[x](javascript:alert(1))") == "[x\\](javascript:alert(1))"
    assert md_escape("a | b") == "a \\| b" and md_escape("`x`") == "\\`x\\`"
    assert md_escape("# h") == "\\# h" and md_escape("=== ") == "\\=== " and md_escape("- x") == "\\- x"
    assert md_escape("a\n# b\r\nc") == "a # b c" and md_escape("<!-- c") == "&lt;!-- c"
    assert md_escape("a\\|b") == "a\\\\\\|b"  # an escaped pipe in the data cannot unescape the template's
    assert md_escape("`a` | <b>", "code") == "'a' \\| &lt;b&gt;"
    with pytest.raises(ValueError):
        md_escape("x", "html")
    assert href("javascript:alert(1)") == "./javascript:alert(1)" and href(" data:x") == "./data:x"
    assert href("coherence/report/report.html") == "coherence/report/report.html"


def test_templates_render_sandboxed_and_html_autoescaped():
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = _env()
    assert isinstance(env, ImmutableSandboxedEnvironment)
    for name in env.list_templates():
        assert env.get_template(name).environment.autoescape(name) is name.endswith(".html.j2"), name
    with pytest.raises(SecurityError):
        env.from_string("{{ x.append(1) }}").render(x=[])
    with pytest.raises(SecurityError):
        env.from_string("{{ ''.__class__.__mro__ }}").render()
