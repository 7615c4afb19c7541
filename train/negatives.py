"""Synthetic pairs that teach a separate-mode judge to follow the instruction, made from the training split's own
items (``data.off_instruction_negatives``, ``data.padded_negatives``); never built for dev or test.

* off-instruction: an item's human-preferred response against the preferred response of one of the ``k`` most
  similar other prompts of the split (TF-IDF cosine over instruction, input and context, English stop words
  left out), both read with THIS
  item's instruction: a fluent answer to a neighbouring question must lose.
* padded: the preferred response against itself with another prompt's preferred response appended (a pick fixed
  by a hash of the item's id): irrelevant content must cost, so adding text is no way to win.

A synthetic pair is a copy of the item with its responses replaced (the preferred one as ``response_a``, label A),
so ``train.data`` renders and lays it out exactly as a human pair, in the item's group. Only decided items (a
winner, not a tie) give or get a negative. A prompt's neighbours are other prompts: never its own normalised
prompt (``data.grouping.prompt_key``) nor any prompt of a group it is in. Nothing is random (no seed to carry).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from data.grouping import item_prompt, prompt_key
from data.schema import Item

OFF_INSTRUCTION, PADDED = "off_instruction", "padded"
PAD_SEPARATOR = "\n\n"


class Negative(NamedTuple):
    """One synthetic pair: ``item`` (its response_a must win), its kind, the id of the item it was made for, and
    the prompt whose preferred response it borrowed (to inspect the neighbours)."""

    item: Item
    kind: str
    of: str
    borrowed_from: str


@dataclass
class _Prompt:
    text: str
    groups: set[str] = field(default_factory=set)
    winner: str = ""  # the preferred response of its first decided item


def preferred_response(item: Item, label: str) -> str | None:
    """The response the humans preferred; None for a tie or any label that names no response."""
    return {"A": item.response_a, "B": item.response_b}.get(label)


def negative_items(selected: Sequence[tuple[Item, str, object]], k: int, padded: bool) -> list[Negative]:
    """The synthetic pairs of ``selected`` (``(item, target label, _)``, as ``train.data.select_items`` gives):
    for every decided item ``k`` off-instruction ones (fewer where the split has fewer other prompts) and, with
    ``padded``, one padded one; in the order of ``selected``."""
    decided = [
        (item, key, win)
        for item, label, _ in selected
        if (win := preferred_response(item, label)) is not None and (key := prompt_key(item_prompt(item)))
    ]
    prompts: dict[str, _Prompt] = {}
    for item, key, win in decided:
        prompts.setdefault(key, _Prompt(item_prompt(item), winner=win)).groups.add(item.group)
    keys = list(prompts)
    by_group: dict[str, set[str]] = {}
    for key in keys:
        for group in prompts[key].groups:
            by_group.setdefault(group, set()).add(key)
    excluded = {key: set().union(*(by_group[g] for g in prompts[key].groups)) for key in keys}
    near = _neighbours(keys, prompts, excluded, k) if k > 0 else {}
    out: list[Negative] = []
    for item, key, win in decided:
        for j, other in enumerate(near.get(key, [])):
            out.append(_negative(item, win, prompts[other], OFF_INSTRUCTION, j))
        pad = _hashed_pick(item.id, keys, excluded[key]) if padded else None
        if pad is not None:
            out.append(_negative(item, win, prompts[pad], PADDED, 0))
    return out


def _negative(item: Item, good: str, other: _Prompt, kind: str, j: int) -> Negative:
    bad = good + PAD_SEPARATOR + other.winner if kind == PADDED else other.winner
    copy = item.model_copy(
        update={"id": f"{item.id}~{kind}{j}", "response_a": good, "response_b": bad, "label": "A", "labels": ["A"]}
    )
    return Negative(copy, kind, item.id, other.text)


def _neighbours(keys: list[str], prompts: dict[str, _Prompt], excluded: dict[str, set[str]], k: int):
    """Each prompt's ``k`` nearest other prompts by TF-IDF cosine similarity, nearest first."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # deferred: only these options need scikit-learn
    from sklearn.neighbors import NearestNeighbors

    if len(keys) < 2:
        return {}
    # every word but English stop words ("you", "make", ...: they matched a colour palette with a YouTube hook on
    # PandaLM), one-letter ones too ("Q?")
    vectorizer = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b", stop_words="english")
    try:
        vectors = vectorizer.fit_transform([prompts[q].text for q in keys])
    except ValueError:  # nothing but stop words in every prompt: no similarity to go by
        return {}
    n = min(len(keys), k + max(map(len, excluded.values())))  # enough to leave k after the exclusions
    _, index = NearestNeighbors(n_neighbors=n, metric="cosine", algorithm="brute").fit(vectors).kneighbors(vectors)
    return {q: [keys[j] for j in row if keys[j] not in excluded[q]][:k] for q, row in zip(keys, index.tolist())}


def _hashed_pick(item_id: str, keys: list[str], excluded: set[str]) -> str | None:
    """A prompt outside ``excluded``, fixed by a hash of the item's id."""
    start = int(hashlib.sha256(item_id.encode()).hexdigest()[:12], 16) % len(keys)
    return next((q for q in keys[start:] + keys[:start] if q not in excluded), None)
