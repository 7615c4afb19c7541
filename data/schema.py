"""The data model: items with every annotator's label, and verdicts with the full distribution.

One JSON object per line in JSONL; both models forbid unknown fields so a typo is an error.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Label = Union[str, int, float]

PROMPT_FIELDS = ("instruction", "input", "context", "reference")  # what an item asks, in the order shown
RESPONSE_FIELDS = {"pairwise": ("response_a", "response_b"), "pointwise": ("response",), "binary": ("response",)}
TEXT_FIELDS = (*PROMPT_FIELDS, "response", "response_a", "response_b")  # every text field of an item


class Item(BaseModel):
    """One thing to judge: a prompt and one or two responses, plus the human labels."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="unique within a file")
    group: str = Field(min_length=1, description="what a split keeps together (the prompt, the article)")
    kind: Literal["pairwise", "pointwise", "binary"]
    instruction: str = Field(description="the task the response(s) answer")
    input: Optional[str] = Field(None, description="extra input to the instruction")
    context: Optional[str] = Field(None, description="a source document or dialogue the response must follow")
    reference: Optional[str] = Field(None, description="a reference answer")
    response: Optional[str] = None
    response_a: Optional[str] = None
    response_b: Optional[str] = None
    labels: list[Optional[Label]] = Field(
        default_factory=list, description="every annotator's label; null where one gave none"
    )
    label: Optional[Label] = Field(None, description="the aggregate (majority or mean)")
    meta: dict[str, Any] = Field(default_factory=dict, description="slices: source, language, ...")

    @field_validator("labels", "label", mode="after")
    @classmethod
    def _finite(cls, v):
        for x in v if isinstance(v, list) else [v]:
            if isinstance(x, float) and not math.isfinite(x):
                raise ValueError("must be a finite number, not NaN or infinity")
        return v

    @model_validator(mode="after")
    def _responses_match_kind(self):
        need = RESPONSE_FIELDS[self.kind]
        for name in need:
            if getattr(self, name) is None:
                raise ValueError(f"a {self.kind} item needs '{name}'")
        for name in {"response", "response_a", "response_b"} - set(need):
            if getattr(self, name) is not None:
                raise ValueError(f"a {self.kind} item must not have '{name}'")
        return self

    def swapped(self) -> Item:
        """The pairwise item with responses (and labels) exchanged."""
        swap = {"A": "B", "B": "A"}
        return self.model_copy(
            update={
                "response_a": self.response_b,
                "response_b": self.response_a,
                "labels": [swap.get(x, x) if isinstance(x, str) else x for x in self.labels],
                "label": swap.get(self.label, self.label) if isinstance(self.label, str) else self.label,
            }
        )


class JudgeRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    fingerprint: str
    engine: Optional[str] = Field(
        None,
        description="what computed the verdict: engine/dtype (vllm/float32, transformers/bfloat16); the same judge "
        "in another dtype flips near-tie verdicts, so validation and serving must name the same",
    )


class Verdict(BaseModel):
    """A judge's answer for one item, from any backend."""

    model_config = ConfigDict(extra="forbid")

    id: str
    verdict: Optional[Label] = Field(None, description="the label with the highest probability")
    probs: Optional[dict[str, float]] = Field(None, description="distribution over the label space")
    score: Optional[float] = Field(None, description="expected value for ordinal labels")
    confidence: Optional[float] = Field(None, description="probability of the verdict")
    consistent: Optional[bool] = Field(None, description="pairwise: same winner in both orders")
    order_probs: Optional[dict[str, dict[str, float]]] = Field(
        None, description="pairwise: the distribution in each order ('ab', 'ba'), in the item's A/B terms"
    )
    judge: JudgeRef
    latency_ms: Optional[float] = None
    truncated: Optional[dict[str, int]] = Field(None, description="tokens cut from each field, if any")
    error: Optional[str] = Field(None, description="null, or why this item has no verdict")

    @field_validator("verdict", "probs", "score", "confidence", "order_probs", "latency_ms", mode="after")
    @classmethod
    def _finite(cls, v):
        """``1e999`` parses as infinity and NaN would follow from it: either blanks every correlation."""
        if not _all_finite(v):
            raise ValueError("must be a finite number, not NaN or infinity")
        return v


def _all_finite(v) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, dict):
        return all(_all_finite(x) for x in v.values())
    return True
