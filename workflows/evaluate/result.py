"""``evaluation.json``: what `judgeloop evaluate` found about the systems, as a versioned pydantic model.

Every figure carries its interval and the number it rests on. Figures from the judge alone are
called ``judge``; figures corrected with human labels (PPI++) are ``corrected``; figures from the
human labels alone are ``human``. ``corrected`` is null where no human labels were given, and the
``notice`` at the top then says that the figures are the judge's, not the truth.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

TIE_CONVENTION = "a tie counts as half a win (win rate = P(win) + P(tie)/2); the tie rate is reported beside it"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_Model):
    estimate: Optional[float]
    lo: Optional[float]
    hi: Optional[float]
    n: int = Field(description="prompts (or labelled items) the figure rests on")


class Corrected(_Model):
    """The judge's figure corrected with human labels on a random subset (PPI++), beside the human-only one."""

    corrected: Optional[Interval] = Field(None, description="PPI++: judge on all items + rectifier from the labelled")
    human: Optional[Interval] = Field(None, description="the labelled items alone (classical interval)")
    n_labelled: int
    n_effective: Optional[float] = Field(
        None, description="human labels the corrected interval is worth: n_labelled * var(human) / var(corrected)"
    )


class SystemScore(_Model):
    system: str
    judge: Interval
    correction: Optional[Corrected] = None


class WinRate(_Model):
    system: str
    opponent: str
    judge: Interval = Field(description="win rate, a tie counting half")
    wins: int
    ties: int
    losses: int
    tie_rate: Optional[float]
    correction: Optional[Corrected] = None


class RankRow(_Model):
    system: str
    strength: Interval = Field(description="Bradley-Terry log-strength (baseline at 0, else mean 0)")
    rank: int
    rank_lo: int
    rank_hi: int


class CorrectedRanking(_Model):
    """The Bradley-Terry ranking corrected with human labels (prediction-powered bootstrap), beside the
    ranking from the labelled items alone."""

    corrected: list[RankRow]
    human: list[RankRow] = Field(description="the labelled items alone (bootstrap over them)")
    n_labelled: int
    n_effective: Optional[float] = Field(
        None, description="median over systems of n_labelled * (human-only width / corrected width)^2"
    )
    lam: Optional[float] = Field(None, description="PPI++ power tuning (0: human only, 1: plain PPI)")
    method: str = "ppi_py.ppboot (prediction-powered bootstrap, PPI++ power tuning), rank intervals from overlap"


class PairedDifference(_Model):
    system: str
    other: str
    difference: Interval = Field(description="mean over shared prompts of system minus other")
    p_not_better: float = Field(description="share of bootstrap replicates with difference <= 0")


class JudgeInfo(_Model):
    name: str
    spec: str
    kind: Literal["pairwise", "pointwise", "binary"]
    labels: list[str]
    fingerprint: Optional[str] = None
    version: Optional[str] = None
    validated_on: Optional[str] = Field(None, description="the human data the judge was validated on, if known")


class CriterionResult(_Model):
    criterion: str
    judge: JudgeInfo
    metric: Literal["mean_score", "pass_rate", "win_rate"]
    mode: Literal["pointwise", "baseline", "all_pairs"]
    n_prompts: int
    systems: list[SystemScore] = Field(default_factory=list, description="mean score or pass rate per system")
    win_rates: list[WinRate] = Field(default_factory=list, description="pairwise: each compared pair")
    ranking: list[RankRow] = Field(default_factory=list, description="pairwise, several systems: Bradley-Terry")
    ranking_correction: Optional[CorrectedRanking] = Field(
        None, description="the ranking corrected with human labels, when there are some"
    )
    paired_differences: list[PairedDifference] = Field(default_factory=list)
    n_verdict_errors: int = 0


class DatasetInfo(_Model):
    path: Optional[str] = None
    sha256: Optional[str] = None
    systems: list[str]
    n_prompts: int = Field(description="prompts any system answered")
    n_common: int = Field(description="prompts every system answered: the ones evaluated")
    missing: dict[str, list[str]] = Field(default_factory=dict, description="system -> prompt ids it lacks")


class Provenance(_Model):
    command: Optional[str] = None
    git_commit: Optional[str] = None
    created_at: str
    seed: int
    n_boot: int
    alpha: float = 0.05


class Evaluation(_Model):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    corrected: bool = Field(description="whether human labels corrected the judge's figures")
    notice: str = Field(description="what the figures are: said first in every report")
    conventions: list[str] = Field(default_factory=list)
    baseline: Optional[str] = None
    dataset: DatasetInfo
    criteria: list[CriterionResult]
    labels: Optional[dict] = Field(None, description="the human labels file, if any: path, sha256, items")
    warnings: list[str] = Field(default_factory=list)
    provenance: Provenance

    def write(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=2, allow_nan=False) + "\n")
        tmp.replace(p)
        return p

    @classmethod
    def read(cls, path: str | Path) -> Evaluation:
        return cls.model_validate_json(Path(path).read_text())


def schema_text() -> str:
    """The JSON Schema of evaluation.json (committed as docs/schemas/evaluation.schema.json)."""
    schema = Evaluation.model_json_schema()
    schema["$id"] = "https://judgeloop.dev/schemas/evaluation.schema.json"
    schema["title"] = "judgeloop evaluation.json"
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--schema"]:
        sys.exit("usage: python -m workflows.evaluate.result --schema")
    sys.stdout.write(schema_text())
