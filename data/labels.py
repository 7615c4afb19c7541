"""Label spaces: the one place that checks, parses, swaps and aggregates labels.

Pairwise labels are ``A`` (response_a is better), ``B`` and optionally ``tie``; binary labels
are ``yes``/``no``; pointwise labels are numbers whose judge-side labels are the strings of an
ordinal scale (``"1"`` .. ``"5"``). Human aggregates of pointwise data may be means (floats).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from data.errors import DataError

KINDS = ("pairwise", "pointwise", "binary")


class LabelError(DataError, ValueError):
    """A label or label space is invalid. Also a ValueError, so callers that add the file, line and
    field (``except ValueError``) keep working."""


class LabelSpace:
    """The labels a judge may output for one kind of item."""

    def __init__(self, kind: str, labels: Sequence[str]):
        if kind not in KINDS:
            raise LabelError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        labels = [str(x) for x in labels]
        if len(labels) < 2:
            raise LabelError("a label space needs at least two labels")
        if len(set(labels)) != len(labels):
            raise LabelError(f"labels repeat: {labels}")
        firsts = [lab[:1].lower() for lab in labels]
        if len(set(firsts)) != len(firsts):
            # guided choice scores only each label's first token (PLATFORM.md)
            raise LabelError(f"labels must start with distinct characters, got {labels}")
        self.kind = kind
        self.labels = labels
        self.values: dict[str, float] = {}
        if kind == "pairwise":
            if labels[:2] != ["A", "B"] or (len(labels) == 3 and labels[2] != "tie") or len(labels) > 3:
                raise LabelError(f"pairwise labels must be [A, B] or [A, B, tie], got {labels}")
        elif kind == "binary":
            if sorted(x.lower() for x in labels) != ["no", "yes"]:
                raise LabelError(f"binary labels must be yes and no, got {labels}")
        else:
            try:
                self.values = {lab: float(lab) for lab in labels}
            except ValueError:
                raise LabelError(f"pointwise labels must be numbers, got {labels}") from None

    @property
    def has_tie(self) -> bool:
        return self.kind == "pairwise" and "tie" in self.labels

    @property
    def score_range(self) -> tuple[float, float]:
        return min(self.values.values()), max(self.values.values())

    def check(self, value):
        """Return the canonical form of a human label, or raise LabelError saying why."""
        if self.kind == "pointwise":
            if isinstance(value, bool) or value is None:
                raise LabelError(f"score must be a number, got {value!r}")
            try:
                x = float(value)
            except (TypeError, ValueError, OverflowError):
                raise LabelError(f"score must be a number, got {value!r}") from None
            if math.isnan(x) or math.isinf(x):
                raise LabelError(f"score must be a finite number, got {value!r}")
            lo, hi = self.score_range
            if not lo <= x <= hi:
                raise LabelError(f"score {x:g} is outside the label range {lo:g}..{hi:g}")
            return int(x) if x.is_integer() else x
        text = str(value).strip() if isinstance(value, str) else value
        for lab in self.labels:
            if isinstance(text, str) and text.lower() == lab.lower():
                return lab
        raise LabelError(f"label {value!r} is not one of {', '.join(self.labels)}")

    def parse_output(self, text: str) -> str | None:
        """The label a model's free text names (first word, case-insensitive), else None."""
        word = text.strip().split(maxsplit=1)[0].strip(".,:;!\"'()[]*") if text.strip() else ""
        for lab in self.labels:
            if word.lower() == lab.lower():
                return lab
        return None

    def swap(self, label):
        """The same judgement seen with responses A and B exchanged."""
        if self.kind != "pairwise":
            return label
        return {"A": "B", "B": "A"}.get(label, label)

    def swap_probs(self, probs: dict[str, float]) -> dict[str, float]:
        return {self.swap(k): v for k, v in probs.items()}

    def expected_score(self, probs: dict[str, float]) -> float | None:
        """The expected value of an ordinal distribution (None for other kinds)."""
        if not self.values:
            return None
        return sum(self.values[k] * p for k, p in probs.items() if k in self.values)

    def normalise(self, probs: dict[str, float]) -> dict[str, float]:
        """Renormalise a (partial) distribution over this label space, in label order."""
        total = sum(max(probs.get(lab, 0.0), 0.0) for lab in self.labels)
        if total <= 0 or not math.isfinite(total):
            return {lab: 1.0 / len(self.labels) for lab in self.labels}
        return {lab: max(probs.get(lab, 0.0), 0.0) / total for lab in self.labels}

    def argmax(self, probs: dict[str, float]) -> str:
        return max(self.labels, key=lambda lab: probs.get(lab, 0.0))

    def nearest_label(self, score: float) -> str:
        """The ordinal label closest to a (mean) score."""
        return min(self.labels, key=lambda lab: (abs(self.values[lab] - score), -self.values[lab]))

    def distribution(self, labels: Iterable) -> dict[str, float]:
        """Share of each label among annotators (soft targets); numbers split between neighbours."""
        counts = dict.fromkeys(self.labels, 0.0)
        n = 0
        for raw in labels:
            if raw is None:
                continue
            n += 1
            if self.kind == "pointwise":
                try:
                    x = float(raw)
                except (TypeError, ValueError, OverflowError):
                    raise LabelError(f"score must be a number, got {raw!r}") from None
                ordered = sorted(self.labels, key=lambda lab: self.values[lab])
                lo = max(
                    (lab for lab in ordered if self.values[lab] <= x),
                    key=lambda lab: self.values[lab],
                    default=ordered[0],
                )
                hi = min(
                    (lab for lab in ordered if self.values[lab] >= x),
                    key=lambda lab: self.values[lab],
                    default=ordered[-1],
                )
                if lo == hi:
                    counts[lo] += 1
                else:
                    w = (x - self.values[lo]) / (self.values[hi] - self.values[lo])
                    counts[lo] += 1 - w
                    counts[hi] += w
            else:
                counts[self.check(raw)] += 1
        return {k: v / n for k, v in counts.items()} if n else {}


def aggregate(kind: str, labels: Iterable):
    """The human aggregate: majority for categories (None when no single winner), mean for scores.

    For pairwise data an A/B split with no majority counts as ``tie``; a three-way split is too.
    """
    given = [lab for lab in labels if lab is not None]
    if not given:
        return None
    if kind == "pointwise":
        try:
            return round(sum(float(x) for x in given) / len(given), 6)
        except (TypeError, ValueError, OverflowError):
            raise LabelError(f"scores must be numbers, got {given!r}") from None
    counts = Counter(given).most_common()
    if len(counts) == 1 or counts[0][1] > counts[1][1]:
        return counts[0][0]
    return "tie" if kind == "pairwise" else None
