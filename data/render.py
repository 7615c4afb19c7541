"""The one prompt renderer: judge spec + item -> chat messages -> prompt text and token ids.

The prompt text is the model's chat template applied to the messages (``prompt_format: chat``, an instruct
model), or for a base model without one (``prompt_format: plain``) BOS, the messages and an answer cue as plain
text (``plain_prompt``); ``answer_suffix`` is what follows the prompt when the model answers, in either format.

Training, serving and evaluation all call ``render``, so the prompt served is byte-identical to
the prompt trained. Pairwise items render in either order ("ab" or "ba": responses exchanged), or, for a spec with
``pairwise_mode: separate``, one response at a time (``render_response``: "a" or "b").

Truncation policy (every item gets a verdict): when the prompt exceeds the budget
(``spec.max_prompt_tokens``; ``null`` = the model's context, capped by the serving engine's
``max_model_len``, less the verdict: ``prompt_budget``), item text is cut by water-filling (the longest
field is cut first, down to the length of the next, and so on), each cut field keeping its head and its
tail around a marker that says how many tokens were cut. First only the fields in ``spec.truncatable``
(responses, input, context, reference), as long as each keeps at least ``MIN_KEEP`` tokens; when that
cannot make room, every text field the template shows, the instruction included (the longest still
first, so a 5,000-token instruction is cut before short responses are). The system message, the
rubric, the label list and the answer instruction are never cut; only if they alone exceed the budget
does rendering fail with a ``RenderError``. Training, serving and validation all cut this way: this is
the only renderer.

Item text is data, never format: it is not parsed as a template, and the model's special tokens in
it are defused (``_defuse``), so a response cannot forge a chat turn.

The spec's template is code from whoever wrote the spec, so it is compiled and rendered only in Jinja's
sandbox (``data.spec.TEMPLATE_ENV``, an ``ImmutableSandboxedEnvironment``): ``cycler.__init__.__globals__``
and the like raise instead of running, and spec validation refuses such a template at load.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Literal

import jinja2
import jinja2.meta
from jinja2.exceptions import SecurityError

from data.errors import DataError, ModelError
from data.schema import TEXT_FIELDS, Item
from data.spec import TEMPLATE_ENV, JudgeSpec, compile_template, template_values

Order = Literal["ab", "ba", "a", "b"]  # "a"/"b": one response of a pair alone (pairwise_mode: separate)
DEFAULT_BUDGET = 1024  # a spec without a budget rendered where no model context is known (a bare tokenizer)
CUT_MARKER = " [... {n} tokens cut ...] "
MIN_KEEP = 128  # tokens a cut response/input/context/reference keeps before the instruction is cut too
ANSWER_CUE = "\n\nAnswer:"  # plain format: ends the prompt; a space and the label come next (``label_text``)
VERDICT_TOKENS = 1  # the verdict is one generated token: the label (its distribution is read from logprobs)


class RenderError(DataError):
    """An item cannot be rendered within the spec's prompt budget."""


@dataclass
class Rendered:
    messages: list[dict[str, str]]
    prompt: str
    token_ids: list[int]
    order: Order = "ab"
    truncated: dict[str, int] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


def item_fields(item: Item, order: Order = "ab") -> dict[str, Any]:
    fields = {name: getattr(item, name) for name in TEXT_FIELDS}
    if order == "ba":
        if item.kind != "pairwise":
            raise ValueError("only pairwise items have a swapped order")
        fields["response_a"], fields["response_b"] = fields["response_b"], fields["response_a"]
    return fields


def _template(source: str) -> jinja2.Template:
    """A spec's template compiled once, in the sandbox (an LRU cache: compiling took ~3 ms a render, most of
    a render's time; a cached render takes ~0.5 ms)."""
    return compile_template(source)


def render_messages(
    spec: JudgeSpec, item: Item, order: Order = "ab", fields: dict | None = None
) -> list[dict[str, str]]:
    """Chat messages for an item (no truncation, no tokenizer needed)."""
    if item.kind != spec.kind:
        raise RenderError(f"item is {item.kind} but judge '{spec.name}' grades {spec.kind} items", field="kind")
    values = fields if fields is not None else item_fields(item, order)
    try:
        user = _template(spec.template).render(**template_values(values, spec))
    except SecurityError as exc:  # a spec that skipped validation: the sandbox refuses, nothing runs
        raise RenderError(
            f"judge '{spec.name}': the template is unsafe ({exc})",
            field="template",
            hint="a template shows the item fields, criteria, labels and label_descriptions; nothing else",
        ) from None
    return [{"role": "system", "content": spec.system.strip()}, {"role": "user", "content": user.strip()}]


def _defuse(fields: dict[str, Any], tokenizer) -> dict[str, Any]:
    """Item text cannot carry the model's special tokens (``<|im_start|>``, ``<|im_end|>``, ...):
    each occurrence gets a zero-width space after its first character, so it is tokenised as
    plain text and judged text can never open a turn or end the prompt's format."""
    specials = sorted(
        {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
        | set(getattr(tokenizer, "all_special_tokens", ())),
        key=len,
        reverse=True,
    )
    out = dict(fields)
    for name, value in fields.items():
        if isinstance(value, str):
            for tok in specials:
                if len(tok) > 1 and tok in value:
                    value = value.replace(tok, tok[0] + "\u200b" + tok[1:])
            out[name] = value
    return out


def chat_prompt(tokenizer, messages: list[dict[str, str]]) -> str:
    """The model's chat template with the assistant turn opened (where the verdict goes)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            "the base model has no chat template",
            field="prompt_format",
            hint="use an instruct/chat model, or set prompt_format: plain in the judge spec (a base model)",
        )
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def plain_prompt(tokenizer, messages: list[dict[str, str]]) -> str:
    """A base model's prompt (``prompt_format: plain``): the model's BOS token written out (``encode`` never adds
    special tokens, and Gemma's tokenizer would not add it either: without it Gemma-3 is garbage), the system
    message, the user message, then ``ANSWER_CUE``; the verdict is the next token."""
    body = "\n\n".join(m["content"] for m in messages if m["content"])
    return f"{tokenizer.bos_token or ''}{body}{ANSWER_CUE}"


def label_text(label: str, prompt_format: str = "chat") -> str:
    """A label as the model writes it right after the prompt: as is after the chat template's assistant
    prefix; after a space in plain format (a base model continues "Answer:" with " yes", not "yes": on
    Gemma-3-270M the untuned next-token mass on {" yes", " no"} was 0.36, on {"yes", "no"} 0.0005)."""
    return " " + label if prompt_format == "plain" else label


def format_prompt(spec: JudgeSpec, tokenizer, messages: list[dict[str, str]]) -> str:
    """The prompt text for rendered messages, in the spec's ``prompt_format``."""
    return plain_prompt(tokenizer, messages) if spec.prompt_format == "plain" else chat_prompt(tokenizer, messages)


def answer_suffix(spec: JudgeSpec, tokenizer, rendered: Rendered, answer: str) -> str:
    """The text that follows the prompt when the model answers ``answer`` (training targets it): the chat
    template's assistant message (answer and end of turn), or in plain format the answer and the EOS token."""
    if spec.prompt_format == "plain":
        return label_text(answer, "plain") + (tokenizer.eos_token or "")
    full = tokenizer.apply_chat_template(rendered.messages + [{"role": "assistant", "content": answer}], tokenize=False)
    if not full.startswith(rendered.prompt):
        raise ModelError(
            "the model's chat template renders the conversation with an answer differently from the "
            "prompt alone, so the trained prompt would not be the served one",
            field="base_model",
        )
    return full[len(rendered.prompt) :]


def encode(tokenizer, text: str) -> list[int]:
    # the prompt text already holds every special token the model expects (the chat template's, or plain's BOS)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _cut(tokenizer, text: str, keep: int, total: int) -> str:
    """``text`` (``total`` tokens) cut to ``keep`` tokens: its head and its tail around the marker."""
    ids = encode(tokenizer, text)
    tail = keep // 2
    head = keep - tail

    def decode(part: list[int]) -> str:
        return tokenizer.decode(part, skip_special_tokens=False) if part else ""

    return decode(ids[:head]) + CUT_MARKER.format(n=total - keep) + decode(ids[len(ids) - tail :] if tail else [])


@functools.lru_cache(maxsize=256)
def _shown_fields(template: str) -> frozenset[str]:
    """The item fields a template shows (cutting a field it does not show makes no room)."""
    try:
        return frozenset(jinja2.meta.find_undeclared_variables(TEMPLATE_ENV.parse(template)))
    except jinja2.TemplateError:
        return frozenset(TEXT_FIELDS)


def prompt_budget(spec: JudgeSpec, context: int | None, reserve: int = VERDICT_TOKENS) -> int:
    """The prompt budget a judge renders with: ``spec.max_prompt_tokens`` if set, else the whole ``context``
    (the model's, capped by the serving engine's ``max_model_len``) less ``reserve`` generated tokens; an
    explicit budget is also capped by the context, so an item is never refused by the engine for length."""
    room = None if context is None else context - reserve
    if spec.max_prompt_tokens is None:
        return room if room is not None else DEFAULT_BUDGET
    return spec.max_prompt_tokens if room is None else min(spec.max_prompt_tokens, room)


def render(spec: JudgeSpec, item: Item, tokenizer, order: Order = "ab") -> Rendered:
    """Render, then cut item text by the truncation policy if the prompt is over budget."""
    fields = _defuse(item_fields(item, order), tokenizer)
    prompt = format_prompt(spec, tokenizer, render_messages(spec, item, order, fields))
    ids = encode(tokenizer, prompt)
    budget = spec.max_prompt_tokens or DEFAULT_BUDGET
    if len(ids) <= budget:
        return Rendered(render_messages(spec, item, order, fields), prompt, ids, order)

    full_length = len(ids)
    shown = _shown_fields(spec.template) | ({"response"} if spec.kind != "pairwise" else set())
    lengths_all = {
        name: len(encode(tokenizer, fields[name])) for name in TEXT_FIELDS if fields.get(name) and name in shown
    }
    first = {name: n for name, n in lengths_all.items() if name in spec.truncatable}
    marker_cost = len(encode(tokenizer, CUT_MARKER.format(n=99999)))
    stages = [first] if first == lengths_all else [first, lengths_all]
    for stage, lengths in enumerate(stages):
        overflow = full_length - budget
        for _attempt in range(6):
            level = _water_level(lengths, overflow + marker_cost * len(lengths))
            if level is None or (stage < len(stages) - 1 and level < MIN_KEEP):
                break  # this stage cannot make room (or would leave a response under MIN_KEEP): cut more fields
            cut = {name: n for name, n in lengths.items() if n > level}
            new_fields = dict(fields)
            for name, n in cut.items():
                new_fields[name] = _cut(tokenizer, fields[name], level, n)
            messages = render_messages(spec, item, order, new_fields)
            prompt = format_prompt(spec, tokenizer, messages)
            ids = encode(tokenizer, prompt)
            if len(ids) <= budget:
                return Rendered(messages, prompt, ids, order, {name: n - level for name, n in cut.items()})
            overflow += len(ids) - budget  # decoding/re-encoding merged tokens differently: cut a little more
    fixed = full_length - sum(lengths_all.values())
    raise RenderError(
        f"item '{item.id}' cannot fit in {budget} prompt tokens even with every field cut "
        f"(the fixed parts alone need about {fixed})",
        field="max_prompt_tokens",
        hint="raise max_prompt_tokens in the judge spec (or the serving max_model_len), or shorten the rubric",
    )


def response_item(item: Item, side: Literal["a", "b"]) -> Item:
    """One response of a pairwise item as the binary item the separate-mode prompt shows (no labels)."""
    return Item(
        id=f"{item.id}/{side}",
        group=item.group,
        kind="binary",
        instruction=item.instruction,
        input=item.input,
        context=item.context,
        reference=item.reference,
        response=item.response_a if side == "a" else item.response_b,
    )


def render_response(spec: JudgeSpec, item: Item, tokenizer, side: Literal["a", "b"]) -> Rendered:
    """Separate mode: the prompt that asks whether response ``side`` of a pairwise item is good (yes/no),
    rendered by ``render`` with the spec's ``response_spec()``; a truncated field keeps its pairwise name."""
    if item.kind != "pairwise":
        raise RenderError(f"item is {item.kind} but judge '{spec.name}' grades pairwise items", field="kind")
    rendered = render(spec.response_spec(), response_item(item, side), tokenizer)
    rendered.order = side
    rendered.truncated = {(f"response_{side}" if k == "response" else k): n for k, n in rendered.truncated.items()}
    return rendered


def _water_level(lengths: dict[str, int], overflow: int) -> int | None:
    """The largest per-field length L with sum(max(0, n - L)) >= overflow, or None if impossible."""
    if not lengths or sum(lengths.values()) < overflow:
        return None
    lo, hi = 0, max(lengths.values())
    while lo < hi:  # binary search for the highest level that removes enough
        mid = (lo + hi + 1) // 2
        if sum(max(0, n - mid) for n in lengths.values()) >= overflow:
            lo = mid
        else:
            hi = mid - 1
    return lo
