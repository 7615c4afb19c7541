"""Rendering reports from data that may be hostile: one Jinja2 environment for every report template.

Everything a report shows from a validation result, a monitor window or an evaluation (judge and
dataset names, file paths, error strings, slice values) is data, and data can carry markup. So:

* templates render in Jinja2's ``ImmutableSandboxedEnvironment`` (a template can call no unsafe
  method and mutate nothing it is given);
* autoescaping is on for every template that is not Markdown (``*.md.j2``): HTML escapes every
  value, and only markup we build ourselves may be passed in as ``markupsafe.Markup``;
* Markdown has no autoescaping, so every data value in a ``*.md.j2`` template goes through the
  ``md_escape`` filter, which neutralises what Markdown would turn into markup (HTML, links,
  code spans, table cells, headings and list items) while leaving ordinary text as it was.

eval/report.py (validation, criteria and monitor reports) and workflows/evaluate/report.py (the
evaluation report) both build their environment here.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

MARKDOWN_SUFFIXES = (".md.j2", ".md")
# a value that starts a line with one of these would open a heading, a setext underline, a list
# item or a fence ('>' is an entity already); a backslash makes the character literal
_LEADING = re.compile(r"^(\s*)([#=\-+*~])")
# ']' that would close link text: '[text](url)', '[text][ref]' and a definition '[ref]: url'
_LINK_CLOSE = re.compile(r"\](?=[(\[:])")
_SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*\s*:")


def md_escape(value, context: str = "text") -> str:
    """A data value made inert in Markdown (GitHub-flavoured and CommonMark).

    ``context="text"`` (inline text, list items, table cells): ``&``, ``<`` and ``>`` become
    entities (no HTML, no comments, no autolinks), backslashes, backticks and ``|`` are
    backslash-escaped (no code spans; a table cell cannot be split), a ``]`` that would close a
    link is escaped, a leading ``#``, ``=``, ``-``, ``+``, ``*`` or ``~`` cannot start a heading, a list or a
    fence, and line breaks become spaces (a value stays on its line).

    ``context="code"`` (inside a template's own code span or fence, where backslashes are shown as
    they are): ``&``, ``<`` and ``>`` become entities, a backtick becomes ``'`` (it would close the
    span), ``|`` is escaped for tables and line breaks become spaces.

    Ordinary text (names, paths, hashes, sentences) comes out unchanged.
    """
    if context not in ("text", "code"):
        raise ValueError(f"md_escape: unknown context '{context}' (text or code)")
    text = str(value)
    text = re.sub(r"\r\n|[\r\n\u2028\u2029\x0b\x0c]", " ", text)
    if context == "code":
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return text.replace("`", "'").replace("|", "\\|")
    text = text.replace("\\", "\\\\")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("`", "\\`").replace("|", "\\|")
    text = _LINK_CLOSE.sub(r"\\]", text)
    return _LEADING.sub(lambda m: m.group(1) + "\\" + m.group(2), text, count=1)


def href(value) -> str:
    """A data value used as a link target: a path, never a URL with a scheme (``javascript:``,
    ``data:``). Something that looks like one is made relative (``./javascript:...``); HTML
    autoescaping still escapes it as an attribute."""
    text = str(value)
    return f"./{text.lstrip()}" if _SCHEME.match(text) else text


def _autoescape(name: str | None) -> bool:
    """On for every template but Markdown (and for templates from strings)."""
    return not (name or "").endswith(MARKDOWN_SUFFIXES)


def environment(templates: str | Path) -> ImmutableSandboxedEnvironment:
    """The sandboxed environment for the report templates in ``templates``."""
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(templates),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md_escape"] = md_escape
    env.filters["href"] = href
    return env
