"""Items -> training examples, through the one renderer, with a report made before training starts.

An example is ``render(spec, item, tokenizer, order).token_ids`` followed by the target's ids: the
label (optionally a line of rationale) and the end-of-turn tokens, exactly as the renderer's
``answer_suffix`` writes them (the chat template's assistant message, or the EOS token in plain
format). The prompt ids are never re-tokenized from text, so what is trained is what
``judge.scoring`` scores. ``labels`` are -100 on every prompt token: the loss covers the verdict
and the end of turn only. Pairwise items are trained in both orders, the
label (or distribution) swapped with the responses.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import random
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from data.dataset_registry import check_trainable
from data.errors import ConfigError, DataError, ModelError, Problem
from data.grouping import item_keys
from data.jsonl import read_jsonl_lines
from data.labels import LabelSpace, aggregate
from data.prepare import prepare
from data.provenance import sha256_file
from data.render import Rendered, RenderError, answer_suffix, encode, format_prompt, render, render_response
from data.schema import Item
from data.spec import JudgeSpec
from data.splits import RESERVED, SPLITS
from judge.hf_backend import label_token_ids
from train.config import DataOptions, is_file_source
from train.negatives import OFF_INSTRUCTION, PADDED, Negative, negative_items

MAX_PROBLEMS_SHOWN = 10
IGNORE = -100
TOO_LONG, UNRENDERABLE = "longer than max_length", "cannot fit the prompt budget"  # why a pair is left out


@dataclass
class Example:
    item_id: str
    order: str
    label: str  # the target label, in this order's terms
    input_ids: list[int]
    labels: list[int]  # -100 on the prompt
    prompt_len: int
    target_probs: list[float] | None = None  # soft targets over spec.labels (distribution mode)
    truncated: dict[str, int] = field(default_factory=dict)
    # separate mode: input_ids = the group's distinct single-response prompts, one after another
    segments: list[int] | None = None  # each prompt's length, in input_ids order
    pairs: list[list[int]] | None = None  # [a, b] segment indices of each compared pair
    pair_targets: list[list[float]] | None = None  # each pair's target distribution over the spec's labels
    pair_weights: list[float] | None = None  # each pair's weight in the loss (length balance by weight)
    truncated_prompts: int | None = None  # how many of the segments were cut to fit
    segment_chars: list[int] | None = None  # each prompt's response length in characters (data.length_penalty)

    @property
    def n_truncated(self) -> int:
        """Prompts of this example that were cut to fit (a joint example is one prompt)."""
        return self.truncated_prompts if self.truncated_prompts is not None else int(bool(self.truncated))


@dataclass
class Source:
    """One named input of a split: a registered dataset's split file or the user's item file."""

    name: str
    split: str
    path: Path
    sha256: str
    items: list[Item]
    manifest_sha256: str | None = None
    lines: dict[str, int] = field(default_factory=dict)  # item id -> line of the file, for errors
    held_out: int = 0  # items dropped: their instruction is in a held-out source (data.exclude_instructions_of)


@dataclass
class SplitReport:
    split: str
    source: str
    items: int = 0
    used: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)  # target label of each used item
    examples: int = 0
    truncated: int = 0  # examples whose prompt was cut
    tokens_cut: int = 0
    lengths: dict[str, int] = field(default_factory=dict)  # min / median / max tokens
    longer_preferred: float | None = None  # pairwise: human winner is the longer one
    longer_weight: float | None = None  # ... its share of the loss (balance by weight)
    # synthetic pairs (training split only, train.negatives): made by kind; left out by reason. Every other figure
    # here (used, labels, longer_preferred, longer_weight) counts the human pairs alone.
    synthetic: dict[str, int] = field(default_factory=dict)
    synthetic_skipped: dict[str, int] = field(default_factory=dict)
    mixed: int | None = None  # training split with data.mix: the examples an epoch trains after the mix


# ------------------------------------------------------------------------- sources


def prepared_folder(name: str, opts: DataOptions, progress) -> Path:
    """A registered dataset's split folder, prepared on first use (with the config's split seed)."""
    folder = Path(opts.prepared_dir) / name
    manifest = folder / "manifest.json"
    if not manifest.exists():
        progress(f"preparing {name} splits (seed {opts.split_seed}) in {folder} ...")
        prepare(name, folder, seed=opts.split_seed, progress=progress)
    meta = json.loads(manifest.read_text())
    if meta.get("seed") != opts.split_seed:
        raise ConfigError(
            f"{folder} was prepared with seed {meta.get('seed')}, the config asks for {opts.split_seed}",
            field="data.split_seed",
            hint="set data.prepared_dir elsewhere or delete that folder",
        )
    return folder


def held_out_instructions(opts: DataOptions, progress=print) -> tuple[set[str], set[str]]:
    """The cross-source groups and normalised-prompt keys of every item of ``data.exclude_instructions_of`` (a
    registered dataset's every split, reserved included; an item file's items)."""
    groups: set[str] = set()
    keys: set[str] = set()
    for name in opts.exclude_instructions_of:
        if is_file_source(name):
            paths = [Path(name)]
        else:
            folder = prepared_folder(name, opts, progress)
            paths = [folder / f"{s}.jsonl" for s in (*SPLITS, RESERVED) if (folder / f"{s}.jsonl").exists()]
        for path in paths:
            for _, item in read_jsonl_lines(path, Item):
                groups.add(item.group)
                keys |= item_keys(item)
    return groups, keys


def load_sources(names: Sequence[str], split: str, opts: DataOptions, progress=print) -> list[Source]:
    """Read every source of a split; registered datasets are prepared on first use. Items sharing an
    instruction with a held-out source (``data.exclude_instructions_of``) are dropped and counted."""
    out = []
    held_groups, held_keys = held_out_instructions(opts, progress) if opts.exclude_instructions_of else (set(), set())
    for name in names:
        manifest_sha = None
        if is_file_source(name):
            path = Path(name)
        else:
            if split in ("train", "dev"):
                check_trainable(name, field=f"data.{split}")
            folder = prepared_folder(name, opts, progress)
            path = folder / f"{split}.jsonl"
            manifest_sha = sha256_file(folder / "manifest.json")
        numbered = list(read_jsonl_lines(path, Item))
        kept = [(n, it) for n, it in numbered if it.group not in held_groups and not item_keys(it) & held_keys]
        out.append(
            Source(
                name,
                split,
                path,
                sha256_file(path),
                [item for _, item in kept],
                manifest_sha,
                {item.id: line for line, item in kept},
                held_out=len(numbered) - len(kept),
            )
        )
    return out


# ------------------------------------------------------------------------- targets


def cap_groups(selected: list[tuple[Item, str, dict | None]], limit: int | None) -> tuple[list, int]:
    """At most ``limit`` of the usable items, whole groups in the order of a hash of the group (no seed to carry; a
    group that would pass the limit is skipped for smaller ones after it), the file's order kept; and how many were
    left out."""
    if limit is None or len(selected) <= limit:
        return selected, 0
    sizes = Counter(item.group for item, _, _ in selected)
    keep, n = set(), 0
    for group in sorted(sizes, key=lambda g: hashlib.sha256(g.encode()).hexdigest()):
        if n + sizes[group] <= limit:
            keep.add(group)
            n += sizes[group]
    kept = [s for s in selected if s[0].group in keep]
    return kept, len(selected) - len(kept)


def mix_examples(
    made: Sequence[tuple[list[Example], SplitReport]], shares: Mapping[str, float], seed: int
) -> list[Example]:
    """The training examples of every source (``build_examples``' results), each source named in ``shares``
    (``data.mix``) resized to its share of the result: whole copies of it, then a seeded sample of its examples for
    the fraction (or only a sample, when the share is smaller than its natural one); the sources not named are kept
    as they are and fill the rest. Each named source's report records its new count (``mixed``). The same seed
    gives the same examples."""
    if not shares:
        return [e for examples, _ in made for e in examples]
    rest = sum(len(examples) for examples, report in made if report.source not in shares)
    if rest == 0:
        raise DataError(
            "the sources data.mix does not name have no training examples left to fill the rest",
            field="data.mix",
            hint="see the data table above; drop data.mix or add a source",
        )
    total = rest / (1 - sum(shares.values()))
    out: list[Example] = []
    for examples, report in made:
        if report.source not in shares:
            out.extend(examples)
            continue
        if not examples:
            raise DataError(
                f"data.mix gives '{report.source}' a share, but it has no training examples left",
                field=f"data.mix.{report.source}",
                hint="see the data table above",
            )
        want = max(1, round(shares[report.source] * total))
        copies, extra = divmod(want, len(examples))
        rng = random.Random(f"{seed}:{report.source}")  # a string seed: stable across runs and processes
        out.extend(examples * copies)
        out.extend(examples[i] for i in sorted(rng.sample(range(len(examples)), extra)))
        report.mixed = want
    return out


def hard_target(item: Item, space: LabelSpace, target: str):
    """The item's target label before exclusion (may be outside the space: the caller checks)."""
    if target == "majority" or item.label is None:
        value = aggregate(item.kind, item.labels)
    else:
        value = item.label
    if value is None:
        return None
    if space.kind == "pointwise":
        return space.nearest_label(float(value))
    return value


def soft_target(item: Item, space: LabelSpace, exclude: set[str]) -> dict[str, float] | None:
    """The annotators' label distribution, excluded labels' votes dropped; the aggregate if none."""
    votes = [x for x in item.labels if x is not None and not (isinstance(x, str) and x in exclude)]
    if votes:
        return space.distribution(votes)
    value = item.label if item.label is not None else aggregate(item.kind, item.labels)
    if value is None or value in exclude:
        return None
    return space.distribution([value])  # a mean score splits between its two neighbouring labels


def select_items(
    items: Iterable[Item], spec: JudgeSpec, opts: DataOptions, where: str, lines: Mapping[str, int] | None = None
) -> tuple[list[tuple[Item, str, dict[str, float] | None]], dict[str, int]]:
    """``(item, target label, soft target or None)`` for every usable item, and skip counts by reason.

    A label outside the spec's label space is an error (the whole list, before training), not a skip;
    each names the file ``where`` and the item's line in it (``lines``: id -> line).
    """
    space = spec.label_space
    exclude = set(opts.exclude_labels)
    kept, skipped, problems = [], Counter(), []
    languages = set(opts.languages)
    for item in items:
        at = {"path": where, "line": (lines or {}).get(item.id)}
        language = item.meta.get("language")
        if languages and language is not None and language not in languages:
            skipped[f"language {language}"] += 1
            continue
        if item.kind != spec.kind:
            problems.append(
                Problem(
                    f"item '{item.id}' is {item.kind}, judge '{spec.name}' grades {spec.kind} items", field="kind", **at
                )
            )
            continue
        raw = hard_target(item, space, opts.target)
        if raw is None:
            skipped["no label"] += 1
            continue
        try:
            label = space.check(raw)
        except ValueError as exc:
            if str(raw) in exclude:
                skipped[f"label {raw} excluded"] += 1
                continue
            hint = "or add it to data.exclude_labels" if isinstance(raw, str) else None
            problems.append(Problem(f"item '{item.id}': {exc}", field="label", hint=hint, **at))
            continue
        if label in exclude:
            skipped[f"label {label} excluded"] += 1
            continue
        try:
            probs = soft_target(item, space, exclude) if opts.target == "distribution" else None
        except ValueError as exc:
            problems.append(
                Problem(
                    f"item '{item.id}': annotator {exc}", field="labels", **at, hint="or add it to data.exclude_labels"
                )
            )
            continue
        if opts.target == "distribution" and not probs:
            skipped["no label"] += 1
            continue
        if opts.rationale and not str(item.meta.get("rationale") or "").strip():
            skipped["no rationale"] += 1
            continue
        kept.append((item, str(label), probs))
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        if len(problems) > len(shown):
            shown.append(Problem(f"... and {len(problems) - len(shown)} more items like these", path=where))
        raise DataError(problems=shown)
    return kept, dict(skipped)


# ------------------------------------------------------------------------- token ids


def answer_text(label: str, item: Item, rationale: bool) -> str:
    """The assistant message: the label, then (optionally) a line of rationale."""
    if not rationale:
        return label
    return f"{label}\n{str(item.meta['rationale']).strip()}"


def target_ids(tokenizer, spec: JudgeSpec, rendered: Rendered, answer: str) -> list[int]:
    """The tokens that follow the prompt for this answer (the renderer's ``answer_suffix``: answer + end of turn)."""
    try:
        return encode(tokenizer, answer_suffix(spec, tokenizer, rendered, answer))
    except ModelError as exc:
        raise ConfigError(exc.first.message, field="base_model") from None


def label_first_ids(tokenizer, spec: JudgeSpec) -> list[int]:
    """The first token of each label the model answers with (separate mode: of 'yes' and 'no')."""
    return label_token_ids(tokenizer, spec.answer_spec().labels, spec.prompt_format)


def longest_label_target(tokenizer, spec: JudgeSpec) -> int:
    """Tokens of the longest label's target (label + end of turn), for the prompt budget."""
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    probe = Rendered(messages, format_prompt(spec, tokenizer, messages), [])
    return max(len(target_ids(tokenizer, spec, probe, label)) for label in spec.labels)


def build_examples(
    source: Source,
    spec: JudgeSpec,
    tokenizer,
    opts: DataOptions,
    max_length: int,
    both_orders: bool | None = None,
    balance_length: bool = False,
    negatives: bool = False,
) -> tuple[list[Example], SplitReport]:
    """Render every usable item (both orders for pairwise when asked) into an example.

    ``balance_length`` (the training split, with ``data.balance_length``): see ``balance_by_length``.
    ``negatives`` (the training split only): add the synthetic pairs ``data.off_instruction_negatives`` and
    ``data.padded_negatives`` ask for (``train.negatives``), each weighing ``data.negative_weight``.
    """
    both = opts.both_orders if both_orders is None else both_orders
    selected, skipped = select_items(source.items, spec, opts, str(source.path), source.lines)
    selected, capped = cap_groups(selected, opts.max_items.get(source.name) if source.split == "train" else None)
    if capped:
        skipped = {**skipped, f"over max_items ({opts.max_items[source.name]})": capped}
    weights = None
    if balance_length and spec.kind == "pairwise" and opts.balance_method == "weight":
        if not spec.separate:
            raise ConfigError(
                f"judge '{spec.name}' trains each order as a token (joint mode): only the pair loss of "
                "pairwise_mode: separate takes item weights",
                field="data.balance_method",
                hint="use data.balance_method=drop",
            )
        weights = length_weights(selected, opts.length_bins)
    elif balance_length and spec.kind == "pairwise":
        selected, dropped = balance_by_length(selected, opts.length_bins)
        if dropped:
            skipped = {**skipped, "length balance": dropped}
    kinds = ((OFF_INSTRUCTION, opts.off_instruction_negatives > 0), (PADDED, opts.padded_negatives))
    asked = [kind for kind, on in kinds if on and negatives]
    synthetic: list[Negative] = []
    if asked:
        if not spec.separate:
            raise ConfigError(
                f"judge '{spec.name}' does not score each response alone (pairwise_mode: separate): synthetic "
                "pairs are separate-mode pairs",
                field=f"data.{asked[0]}_negatives",
            )
        synthetic = negative_items(selected, opts.off_instruction_negatives, opts.padded_negatives)
    # each kind asked for is reported, even where none could be made
    if source.held_out:
        skipped = {**skipped, "instruction held out": source.held_out}
    report = SplitReport(source.split, source.name, items=len(source.items) + source.held_out, skipped=dict(skipped))
    report.synthetic = dict.fromkeys(asked, 0)
    if spec.separate:
        examples, used, too_long, unrenderable = response_groups(
            selected,
            spec,
            tokenizer,
            max_length,
            opts.max_group_responses,
            weights,
            synthetic,
            opts.negative_weight,
            report,
        )
    else:
        examples, used, too_long, unrenderable = order_examples(selected, spec, tokenizer, opts, max_length, both)
    report.used = len(used)
    report.labels = dict(Counter(used))
    if unrenderable:
        report.skipped[UNRENDERABLE] = unrenderable
    if too_long:
        report.skipped[TOO_LONG] = too_long
    report.examples = len(examples)
    report.truncated = sum(e.n_truncated for e in examples)  # prompts, in both modes
    report.tokens_cut = sum(sum(e.truncated.values()) for e in examples)
    if examples:
        lengths = [n for e in examples for n in (e.segments or [len(e.input_ids)])]  # per prompt
        report.lengths = {"min": min(lengths), "median": int(statistics.median(lengths)), "max": max(lengths)}
    if spec.kind == "pairwise":
        report.longer_preferred = longer_preferred([(it, lab) for it, lab, _ in selected])
        if weights is not None:
            sides = [(_winner_is_longer(it, lab), w) for (it, lab, _), w in zip(selected, weights)]
            decided = sum(w for side, w in sides if side is not None)
            report.longer_weight = sum(w for side, w in sides if side) / decided if decided else None
    return examples, report


def order_examples(
    selected: list[tuple[Item, str, dict[str, float] | None]],
    spec: JudgeSpec,
    tokenizer,
    opts: DataOptions,
    max_length: int,
    both: bool,
) -> tuple[list[Example], list[str], int, int]:
    """Joint mode (and every non-pairwise judge): one example per item and order, the prompt followed by the
    target label (swapped with the responses in order ``ba``).

    Returns ``(examples, target label of each used item, items too long, items that cannot be rendered)``."""
    space = spec.label_space
    first_ids = dict(zip(spec.labels, label_first_ids(tokenizer, spec)))
    examples: list[Example] = []
    used: list[str] = []
    too_long = unrenderable = 0
    for item, label, probs in selected:
        orders = ["ab", "ba"] if both and item.kind == "pairwise" else ["ab"]
        made = []
        for order in orders:
            try:
                rendered = render(spec, item, tokenizer, order)
            except RenderError:
                unrenderable += 1
                made = []
                break
            lab = space.swap(label) if order == "ba" else label
            answer = answer_text(lab, item, opts.rationale)
            tids = target_ids(tokenizer, spec, rendered, answer)
            if tids[:1] != [first_ids[lab]]:
                raise ConfigError(
                    f"the chat template puts {tokenizer.decode(tids[:1])!r} before the answer '{lab}': scoring reads "
                    "the verdict from the first answer token",
                    field="base_model",
                    hint="use an instruct model whose template starts the answer right after the prompt",
                )
            if len(rendered.token_ids) + len(tids) > max_length:
                too_long += 1
                made = []
                break
            soft = None
            if probs is not None:
                dist = space.swap_probs(probs) if order == "ba" else probs
                soft = [float(dist.get(x, 0.0)) for x in spec.labels]
            made.append(
                Example(
                    item.id,
                    order,
                    lab,
                    rendered.token_ids + tids,
                    [IGNORE] * len(rendered.token_ids) + tids,
                    len(rendered.token_ids),
                    soft,
                    dict(rendered.truncated),
                )
            )
        if made:
            examples.extend(made)
            used.append(label)
    return examples, used, too_long, unrenderable


class _Pair(NamedTuple):
    """One compared pair of a group, before its responses are laid out as the example's segments."""

    a: Rendered
    b: Rendered
    target: list[float]  # over the spec's labels
    weight: float
    chars_a: int  # the responses' lengths in characters
    chars_b: int


def response_groups(
    selected: list[tuple[Item, str, dict[str, float] | None]],
    spec: JudgeSpec,
    tokenizer,
    max_length: int,
    max_responses: int,
    weights: Sequence[float] | None = None,
    synthetic: Sequence[Negative] = (),
    synthetic_weight: float = 1.0,
    report: SplitReport | None = None,
) -> tuple[list[Example], list[str], int, int]:
    """Separate mode: the pairs as examples, one per group (the items sharing ``item.group``, the same instruction),
    split into examples of at most ``max_responses`` distinct responses. Each distinct single-response prompt is in
    the example once, so one forward pass scores it for every pair it is in; each pair carries its target
    distribution over the spec's labels (the annotators' in distribution mode, else the label's) and its weight in
    the loss (``weights``, one per selected item; 1 when None).

    ``synthetic`` pairs (``train.negatives``) join their item's group after its human pairs, each weighing
    ``synthetic_weight``, if that item's own pair was used; ``report.synthetic`` / ``synthetic_skipped`` count them.

    Returns ``(examples, target label of each used item, items too long, items that cannot be rendered)``."""
    by_group: dict[str, list] = {}
    used: list[str] = []
    used_ids: set[str] = set()
    too_long = unrenderable = 0
    for k, (item, label, probs) in enumerate(selected):
        pair = _pair(spec, tokenizer, item, probs if probs is not None else {label: 1.0}, max_length)
        if pair == TOO_LONG:
            too_long += 1
        elif pair == UNRENDERABLE:
            unrenderable += 1
        else:
            weight = 1.0 if weights is None else float(weights[k])
            by_group.setdefault(item.group, []).append(pair._replace(weight=weight))
            used.append(label)
            used_ids.add(item.id)
    made, lost = Counter(), Counter()
    for neg in synthetic:
        if neg.of not in used_ids:
            continue
        pair = _pair(spec, tokenizer, neg.item, {"A": 1.0}, max_length)
        if isinstance(pair, str):
            lost[f"{neg.kind}: {pair}"] += 1
        elif pair.a.token_ids == pair.b.token_ids:  # the same prompt after truncation: nothing to compare
            lost[f"{neg.kind}: the same prompt twice"] += 1
        else:
            by_group[neg.item.group].append(pair._replace(weight=synthetic_weight))
            made[neg.kind] += 1
    if report is not None:
        report.synthetic.update(made)
        report.synthetic_skipped = dict(lost)
    examples = [
        _group_example(group, chunk) for group, pairs in by_group.items() for chunk in _chunks(pairs, max_responses)
    ]
    return examples, used, too_long, unrenderable


def _pair(spec: JudgeSpec, tokenizer, item: Item, dist: Mapping[str, float], max_length: int) -> _Pair | str:
    """The item's two responses rendered as a pair (weight 1) with the target ``dist``, or why it cannot be one."""
    try:
        a, b = (render_response(spec, item, tokenizer, side) for side in ("a", "b"))
    except RenderError:
        return UNRENDERABLE
    if max(a.n_tokens, b.n_tokens) + 1 > max_length:
        return TOO_LONG
    target = [float(dist.get(x, 0.0)) for x in spec.labels]
    return _Pair(a, b, target, 1.0, len(item.response_a), len(item.response_b))


def _chunks(pairs: list[_Pair], cap: int):
    """Consecutive runs of pairs whose distinct responses number at most ``cap``."""
    chunk, seen = [], set()
    for pair in pairs:
        keys = {tuple(pair.a.token_ids), tuple(pair.b.token_ids)}
        if chunk and len(seen | keys) > cap:
            yield chunk
            chunk, seen = [], set()
        chunk.append(pair)
        seen |= keys
    if chunk:
        yield chunk


def _group_example(group: str, chunk: list[_Pair]) -> Example:
    index: dict[tuple, int] = {}
    ids, segments, chars, pairs, targets, truncated, n_cut = [], [], [], [], [], {}, 0
    for pair in chunk:
        sides = []
        for rendered, n_chars in ((pair.a, pair.chars_a), (pair.b, pair.chars_b)):
            key = tuple(rendered.token_ids)
            if key not in index:
                index[key] = len(segments)
                segments.append(rendered.n_tokens)
                chars.append(n_chars)
                ids.extend(rendered.token_ids)
                n_cut += bool(rendered.truncated)
                for name, cut in rendered.truncated.items():
                    truncated[name] = truncated.get(name, 0) + cut
            sides.append(index[key])
        pairs.append(sides)
        targets.append(pair.target)
    return Example(
        group,
        "ab",
        "",
        ids,
        [IGNORE] * len(ids),
        segments[0],
        None,
        truncated,
        segments=segments,
        pairs=pairs,
        pair_targets=targets,
        pair_weights=[p.weight for p in chunk],
        truncated_prompts=n_cut,
        segment_chars=chars,
    )


def _winner_is_longer(item: Item, label: str) -> bool | None:
    if label not in ("A", "B") or len(item.response_a) == len(item.response_b):
        return None
    return (label == "A") == (len(item.response_a) > len(item.response_b))


def length_gap_bins(selected: list[tuple[Item, str, dict | None]], bins: int) -> list[int | None]:
    """Each decided item's bin of the length gap |log(len_a / len_b)| (characters), ``bins`` equal-count bins in
    gap order (ties in the gap share a bin); None for ties and equal lengths."""
    gaps = {
        i: abs(math.log((len(item.response_a) + 1) / (len(item.response_b) + 1)))
        for i, (item, label, _) in enumerate(selected)
        if _winner_is_longer(item, label) is not None
    }
    ranked = sorted(gaps, key=lambda i: gaps[i])
    edges = [gaps[ranked[(k * len(ranked)) // bins]] for k in range(1, bins)] if ranked else []
    return [None if i not in gaps else bisect.bisect_right(edges, gaps[i]) for i in range(len(selected))]


def _sides_by_bin(selected: list[tuple[Item, str, dict | None]], bins: int) -> dict[tuple[int, bool], list[int]]:
    """Indices of the decided items by (length-gap bin, whether the longer response won)."""
    out: dict[tuple[int, bool], list[int]] = {}
    for i, ((item, label, _), b) in enumerate(zip(selected, length_gap_bins(selected, bins))):
        if b is not None:
            out.setdefault((b, _winner_is_longer(item, label)), []).append(i)
    return out


def balance_by_length(selected: list[tuple[Item, str, dict | None]], bins: int = 1) -> tuple[list, int]:
    """In each length-gap bin, drop items from the larger of {longer response won, shorter response won} until
    both are equal.

    Which items go is fixed by a hash of their ids (no seed to carry), and the order is kept.
    """
    sides = _sides_by_bin(selected, bins)
    drop: set[int] = set()
    for b in {b for b, _ in sides}:
        longer, shorter = sides.get((b, True), []), sides.get((b, False), [])
        big, small = (longer, shorter) if len(longer) >= len(shorter) else (shorter, longer)
        keyed = sorted(big, key=lambda i: hashlib.sha256(selected[i][0].id.encode()).hexdigest())
        drop.update(keyed[len(small) :])
    return [s for i, s in enumerate(selected) if i not in drop], len(drop)


def length_weights(selected: list[tuple[Item, str, dict[str, float] | None]], bins: int = 1) -> list[float]:
    """One weight per item such that, in each length-gap bin, the items whose human winner is the longer response
    weigh as much in total as those whose winner is the shorter, the bin's weights still summing to its number of
    items; ties and equal lengths weigh 1. A bin with no item on one side keeps weights 1 (nothing to balance)."""
    weights = [1.0] * len(selected)
    sides = _sides_by_bin(selected, bins)
    for b in {b for b, _ in sides}:
        longer, shorter = sides.get((b, True), []), sides.get((b, False), [])
        if longer and shorter:
            total = len(longer) + len(shorter)
            for members in (longer, shorter):
                for i in members:
                    weights[i] = total / (2 * len(members))
    return weights


def longer_preferred(pairs: list[tuple[Item, str]]) -> float | None:
    """Share of A/B-labelled items whose preferred response is the longer one (a length-bias warning)."""
    decided = [w for w in (_winner_is_longer(it, lab) for it, lab in pairs) if w is not None]
    return sum(decided) / len(decided) if decided else None


# ------------------------------------------------------------------------- the report


def report_table(reports: Sequence[SplitReport], spec: JudgeSpec, opts: DataOptions) -> str:
    if spec.separate:
        how = (
            f"each response judged alone, an instruction's pairs trained together (an example holds up to "
            f"{opts.max_group_responses} distinct responses)"
        )
    else:
        how = "both orders" if opts.both_orders and spec.kind == "pairwise" else "one order"
    head = f"data for judge '{spec.name}' ({spec.kind}: {', '.join(spec.labels)}), target={opts.target}, {how}"
    cols = [
        "split",
        "source",
        "items",
        "used",
        "skipped",
        "examples",
        *spec.labels,
        "truncated",
        "tokens min/med/max",
        "longer wins",
    ]
    synthetic = any(r.synthetic for r in reports)
    if synthetic:
        cols.append("synthetic pairs")
    rows = []
    for r in reports:
        skipped = ", ".join(f"{n} {why}" for why, n in r.skipped.items()) or "0"
        lens = "/".join(str(r.lengths.get(k, "-")) for k in ("min", "median", "max"))
        longer = "-" if r.longer_preferred is None else f"{r.longer_preferred:.0%}"
        if r.longer_weight is not None:
            longer += f" (weighted {r.longer_weight:.0%})"
        trunc = f"{r.truncated} ({r.tokens_cut} tok cut)" if r.truncated else "0"
        rows.append(
            [
                r.split,
                r.source,
                str(r.items),
                str(r.used),
                skipped,
                str(r.examples) if r.mixed is None else f"{r.examples} -> {r.mixed} (mix {opts.mix[r.source]:.0%})",
                *[str(r.labels.get(x, 0)) for x in spec.labels],
                trunc,
                lens,
                longer,
            ]
        )
        if synthetic:
            rows[-1].append(_synthetic_cell(r))
    widths = (
        [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)] if rows else [len(c) for c in cols]
    )
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    notes = [
        "label columns count items by target label (before the order swap); 'longer wins' is the share of "
        "A/B items where humans preferred the longer response: a judge can score that much by length alone"
    ]
    if opts.balance_length and opts.length_bins > 1:
        notes.append(
            f"length balance ({opts.balance_method}) holds in each of {opts.length_bins} bins of the length "
            "gap between the two responses, not only over the split"
        )
    if spec.separate:
        notes.append("'examples' are instruction groups; 'tokens' are per single-response prompt")
    if any(r.mixed is not None for r in reports):
        notes.append(
            "data.mix: 'a -> b (mix s)' = the source's a examples repeated or sampled to b, its share s of an "
            "epoch's training examples (the sampler keeps copies out of one step); the other columns count it once"
        )
    if synthetic:
        notes.append(
            f"synthetic pairs (training split only, each weighing {opts.negative_weight} against 1 for a human pair) "
            "are added to the human ones and counted in no other column: off-instruction = an item's preferred "
            "response against a similar instruction's, padded = against itself with another instruction's appended"
        )
    return "\n".join([head, line(cols), line(["-" * w for w in widths]), *map(line, rows), "", *notes])


def _synthetic_cell(r: SplitReport) -> str:
    if not r.synthetic:
        return "-"
    cell = ", ".join(f"{n} {kind.replace('_', '-')}" for kind, n in r.synthetic.items())
    lost = sum(r.synthetic_skipped.values())
    return cell + (
        f" ({lost} skipped: {', '.join(f'{n} {why}' for why, n in r.synthetic_skipped.items())})" if lost else ""
    )


def write_report(run_dir: Path, reports: Sequence[SplitReport], table: str) -> None:
    (run_dir / "data_report.json").write_text(json.dumps([asdict(r) for r in reports], indent=2) + "\n")
    (run_dir / "data_report.md").write_text("```\n" + table + "\n```\n")
