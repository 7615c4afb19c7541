"""Cross-source split groups: one normalised instruction decides its split in every dataset it appears in.

Each converter gives its items a ``group`` (what a split keeps together inside one source: PandaLM's
instruction and input, an hh-rlhf conversation's first turn, a SummEval article). The same instruction
recurs across sources (tulu1-human shares 165 prompts with PandaLM; the Vicuna-80 questions recur in
tulu1-human, mtbench-human and LLMEval2's MT-Bench rows), so groups alone would let a test instruction be
trained on. Here groups are linked through their items' normalised prompts:

* ``normalise``: Unicode NFKC, case-folded, every run of whitespace one space, and any non-alphanumeric
  characters (punctuation, symbols, spaces) stripped from both ends. "Rewrite the sentence." and
  "rewrite the  sentence" are one prompt; inner punctuation and wording still tell prompts apart.
* A prompt is the item's instruction, input and context together (a dataset may name other texts, e.g.
  hh-rlhf's first human turn, see ``Dataset.prompts``); an empty prompt links nothing.
* Groups that share a prompt, directly or through other groups, form one component. Its **canonical
  group** is the first of its groups in registry order (then file order), and a split is decided by
  the canonical group's hash (``data.splits.split_of``). So the datasets registered first keep exactly
  the splits they had before any later dataset was linked to them, and a later dataset's item follows
  the earlier one's split wherever they share a prompt.
* A component that holds any item of a reserved dataset (``Dataset.reserved``: vicuna80-human, kept for
  model evaluation) is reserved as a whole: its items go to the ``reserved`` split of every dataset, never
  to train, dev or test.

Computing the components needs every registered dataset, so the registry's result is committed as
``data/split_groups.json`` (only the groups that differ from their canonical group, and the reserved
ones); ``python scripts/split_groups.py`` rebuilds it from the mirror and a test checks it is current.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from data.errors import DataError
from data.schema import Item

SPLIT_GROUPS_FILE = Path(__file__).with_name("split_groups.json")
NORMALISATION = "nfkc-casefold-whitespace-ends/1"  # changes when ``normalise`` does

_SPACE = re.compile(r"\s+")
_ENDS = re.compile(r"^[\W_]+|[\W_]+$")


def normalise(text: str) -> str:
    """The form in which two prompts count as the same instruction (see the module docstring)."""
    text = _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold())
    return _ENDS.sub("", text)


def prompt_key(text: str) -> str | None:
    """A short, stable key of a prompt's normalised form; None for a prompt that normalises to nothing."""
    norm = normalise(text)
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()[:16] if norm else None


def item_prompt(item: Item) -> str:
    """An item's prompt: its instruction, input and context (the reference is an answer, not a prompt)."""
    return "\n".join(x for x in (item.instruction, item.input, item.context) if x)


def default_prompts(item: Item) -> list[str]:
    return [item_prompt(item)]


def item_keys(item: Item, prompts: Callable[[Item], Sequence[str]] = default_prompts) -> set[str]:
    return {k for k in map(prompt_key, prompts(item)) if k}


@dataclass(frozen=True)
class Source:
    """One dataset's items for linking, in registry order."""

    name: str
    items: Iterable[Item]
    prompts: Callable[[Item], Sequence[str]] = default_prompts
    reserved: bool = False


@dataclass
class SplitGroups:
    """Which group decides each group's split (``aliases``: only those that differ), and the reserved groups."""

    aliases: dict[str, str] = field(default_factory=dict)
    reserved: set[str] = field(default_factory=set)

    def canonical(self, group: str) -> str:
        return self.aliases.get(group, group)

    def is_reserved(self, group: str) -> bool:
        return group in self.reserved

    def to_json(self) -> dict:
        return {
            "about": "written by scripts/split_groups.py from the registered datasets; see data/grouping.py",
            "normalisation": NORMALISATION,
            "aliases": dict(sorted(self.aliases.items())),
            "reserved": sorted(self.reserved),
        }


class _UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def link(sources: Iterable[Source]) -> SplitGroups:
    """The components of groups linked by shared normalised prompts (see the module docstring)."""
    uf = _UnionFind()
    order: dict[str, int] = {}  # group -> first position seen
    reserved_groups: set[str] = set()
    for src in sources:
        for item in src.items:
            g = "g\x00" + item.group
            order.setdefault(item.group, len(order))
            uf.find(g)
            for key in item_keys(item, src.prompts):
                uf.union(g, "k\x00" + key)
            if src.reserved:
                reserved_groups.add(item.group)
    canonical: dict[str, str] = {}  # component root -> its first group
    for group in order:  # in first-seen order, so the first group of a component wins
        canonical.setdefault(uf.find("g\x00" + group), group)
    reserved_roots = {uf.find("g\x00" + g) for g in reserved_groups}
    out = SplitGroups()
    for group in order:
        root = uf.find("g\x00" + group)
        if canonical[root] != group:
            out.aliases[group] = canonical[root]
        if root in reserved_roots:
            out.reserved.add(group)
    return out


def load_split_groups(path: Path = SPLIT_GROUPS_FILE) -> SplitGroups:
    """The committed registry table (see the module docstring)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        groups = SplitGroups(dict(raw["aliases"]), set(raw["reserved"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"unreadable split groups: {exc}", path=str(path), hint="python scripts/split_groups.py"
        ) from None
    if raw.get("normalisation") != NORMALISATION:
        raise DataError(
            f"written with normalisation {raw.get('normalisation')!r}, the code has {NORMALISATION!r}",
            path=str(path),
            field="normalisation",
            hint="rebuild it: python scripts/split_groups.py",
        )
    return groups
