"""Synthetic systems and fake judges for the evaluate workflow: no model, deterministic."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from data.errors import ServerUnavailable
from data.schema import Item, JudgeRef, Verdict
from data.spec import load_spec
from workflows.evaluate.run import JudgeHandle

QUALITY = {"v1": 0.0, "v2": 0.4, "v3": 1.0}


def write_responses(path: Path, systems=("v1", "v2", "v3"), n_prompts: int = 40, skip=(), extra_lines=()) -> Path:
    lines = []
    for p in range(n_prompts):
        for s in systems:
            if (f"p{p}", s) in skip:
                continue
            lines.append(
                {"prompt_id": f"p{p}", "system": s, "response": f"answer of {s} to {p}", "instruction": f"question {p}"}
            )
    lines.extend(extra_lines)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _u(*parts) -> float:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _sys_of(response: str) -> str:
    return response.split()[2]


class FakeJudge:
    """Pairwise: P(A) from the systems' QUALITY (+ a bias towards A); pointwise: quality-driven 1-5 scores."""

    def __init__(self, spec_name="helpfulness-pairwise", fingerprint="ab" * 32, bias=0.0, fail_after=None, shift=None):
        self.spec = load_spec(spec_name)
        self.ref = JudgeRef(name=f"fake-{spec_name}", fingerprint=fingerprint)
        self.bias = bias
        self.calls = 0
        self.scored = 0
        self.fail_after = fail_after
        self.shift = shift or {}

    def q(self, system: str) -> float:
        return QUALITY.get(system, 0.5) + self.shift.get(system, 0.0)

    def score_batch(self, batch: list[Item]) -> list[Verdict]:
        self.calls += 1
        if self.fail_after is not None and self.scored >= self.fail_after:
            raise ServerUnavailable("no engine reachable (fake)")
        self.scored += len(batch)
        out = []
        for it in batch:
            if it.kind == "pairwise":
                d = 2.0 * (self.q(_sys_of(it.response_a)) - self.q(_sys_of(it.response_b))) + self.bias
                pa = 1 / (1 + math.exp(-d))
                probs = {"A": 0.85 * pa, "B": 0.85 * (1 - pa), "tie": 0.15}
                u = _u(it.id, "v")
                verdict = "A" if u < probs["A"] else ("tie" if u < probs["A"] + probs["tie"] else "B")
            else:
                base = 2.5 + 2 * self.q(_sys_of(it.response)) + (_u(it.id) - 0.5) * 2
                score = float(np.clip(base, 1, 5))
                verdict = str(int(round(score)))
                probs = {lab: (1.0 if lab == verdict else 0.0) for lab in self.spec.labels}
            out.append(Verdict(id=it.id, verdict=verdict, probs=probs, judge=self.ref, score=None))
        return out

    def handle(self) -> JudgeHandle:
        return JudgeHandle(self.ref.name, self.spec, self.ref, self.score_batch)


def human_labels_for(path: Path, responses: Path, frac: float = 0.3, seed: int = 0, criterion: str | None = None):
    """Human votes on a random subset of the pairwise (vs v1) items: the truth by QUALITY, no bias."""
    from workflows.evaluate.run import _orient, load_responses, pair_id

    resp = load_responses(responses)
    rng = np.random.default_rng(seed)
    lines = []
    for p in resp.common:
        for s in resp.systems:
            if s == "v1" or rng.random() > frac:
                continue
            a, b = _orient(p, s, "v1")
            d = 2.0 * (QUALITY.get(a, 0.5) - QUALITY.get(b, 0.5))
            pa = 1 / (1 + math.exp(-d))
            u = rng.random()
            label = "A" if u < 0.85 * pa else ("tie" if u < 0.85 * pa + 0.15 else "B")
            rec = {"id": pair_id(p, s, "v1"), "label": label}
            if criterion:
                rec["criterion"] = criterion
            lines.append(rec)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path
