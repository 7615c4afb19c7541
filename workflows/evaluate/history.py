"""Every evaluation run, recorded: SQLite by default (``runs/evaluate/history.db``), any SQLAlchemy URL.

A run keeps what it was (judges' fingerprints, the responses' hash, systems, git commit), its
``evaluation.json`` whole, and the per-prompt values of every series (a system's scores, or its
outcomes against an opponent), so a later run can be compared with it on the same prompts, paired.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import JSON, Column, DateTime, Integer, String, Text, create_engine, select
from sqlalchemy.orm import Session, declarative_base

from data.errors import JudgeloopError
from workflows.evaluate import EVALUATION_HISTORY
from workflows.evaluate import estimators as est
from workflows.evaluate.result import Evaluation

DEFAULT_DB = EVALUATION_HISTORY

Base = declarative_base()


class RunRow(Base):
    __tablename__ = "evaluation_runs"

    id = Column(Integer, primary_key=True, autoincrement=True)
    run_id = Column(String(64), unique=True, nullable=False, index=True)
    created_at = Column(DateTime(timezone=True), nullable=False)
    dataset_sha256 = Column(String(64))
    dataset_path = Column(Text)
    systems = Column(JSON, nullable=False)
    judges = Column(JSON, nullable=False)  # [{criterion, name, spec, fingerprint}]
    git_commit = Column(String(64))
    corrected = Column(Integer, nullable=False)
    evaluation = Column(JSON, nullable=False)  # evaluation.json
    per_prompt = Column(JSON, nullable=False)  # criterion -> series -> prompt_id -> value


def db_url(arg: str | None) -> str:
    """A SQLAlchemy URL; a plain path (or nothing: the default file) is a SQLite file."""
    if arg and "://" in arg:
        return arg
    path = Path(arg or DEFAULT_DB)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class History:
    def __init__(self, url: str | None = None):
        self.url = db_url(url)
        self.engine = create_engine(self.url)
        Base.metadata.create_all(self.engine)

    def record(self, evaluation: Evaluation, per_prompt: dict[str, dict[str, dict[str, float]]]) -> None:

        with Session(self.engine) as s:
            s.add(
                RunRow(
                    run_id=evaluation.run_id,
                    created_at=datetime.fromisoformat(evaluation.provenance.created_at),
                    dataset_sha256=evaluation.dataset.sha256,
                    dataset_path=evaluation.dataset.path,
                    systems=evaluation.dataset.systems,
                    judges=[
                        {
                            "criterion": c.criterion,
                            "name": c.judge.name,
                            "spec": c.judge.spec,
                            "fingerprint": c.judge.fingerprint,
                        }
                        for c in evaluation.criteria
                    ],
                    git_commit=evaluation.provenance.git_commit,
                    corrected=int(evaluation.corrected),
                    evaluation=evaluation.model_dump(mode="json"),
                    per_prompt=per_prompt,
                )
            )
            s.commit()

    def runs(self, system: str | None = None) -> list[RunRow]:
        with Session(self.engine) as s:
            rows = list(s.scalars(select(RunRow).order_by(RunRow.created_at, RunRow.id)))
            s.expunge_all()
        return [r for r in rows if system is None or system in r.systems]

    def get(self, run_id: str) -> RunRow:
        rows = self.runs()
        if run_id == "last" and rows:
            return rows[-1]
        if run_id == "previous" and len(rows) >= 2:
            return rows[-2]
        match = [r for r in rows if r.run_id == run_id or r.run_id.startswith(run_id)]
        if len(match) != 1:
            known = ", ".join(r.run_id for r in rows[-5:]) or "none yet"
            raise JudgeloopError(
                f"no run '{run_id}' in {self.url}" if not match else f"'{run_id}' names {len(match)} runs",
                field="--against",
                hint=f"latest runs: {known} (judgeloop evaluate history)",
            )
        return match[0]


def listing(rows: list[RunRow]) -> list[str]:
    out = [f"{'run':<24} {'created':<20} {'systems':<30} {'criteria':<28} {'corr':<4} commit"]
    for r in rows:
        systems = ",".join(r.systems)
        crits = ",".join(j["criterion"] for j in r.judges)
        out.append(
            f"{r.run_id:<24} {r.created_at.strftime('%Y-%m-%d %H:%M:%S'):<20} {systems[:30]:<30} "
            f"{crits[:28]:<28} {'yes' if r.corrected else 'no':<4} {(r.git_commit or '-')[:10]}"
        )
    return out


def compare(
    current: dict[str, dict[str, dict[str, float]]],
    earlier: RunRow,
    system: str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> list[dict]:
    """``system`` now against the same system in an earlier run, per criterion and series, on the prompts
    both have: the paired mean difference (now - then) with its bootstrap interval."""
    out = []
    for crit, series in current.items():
        then_series = (earlier.per_prompt or {}).get(crit)
        if not then_series:
            continue
        for name, now_vals in series.items():
            if name != system and not name.startswith(f"{system} vs "):
                continue
            then_vals = then_series.get(name)
            if not then_vals:
                continue
            shared = sorted(set(now_vals) & set(then_vals))
            if len(shared) < 2:
                continue
            diff = np.array([now_vals[p] - then_vals[p] for p in shared])
            w = est.bootstrap_weights(len(shared), n_boot, seed)
            (iv,) = est.mean_intervals(diff[None, :], w, alpha)
            out.append(
                {
                    "criterion": crit,
                    "series": name,
                    "now": float(np.mean([now_vals[p] for p in shared])),
                    "then": float(np.mean([then_vals[p] for p in shared])),
                    "difference": iv.as_dict(),
                    "n_shared": len(shared),
                }
            )
    return out


def regressions(comparisons: list[dict], max_drop: float) -> list[dict]:
    """Comparisons whose whole interval lies below ``-max_drop`` (a significant drop larger than allowed)."""
    return [c for c in comparisons if c["difference"]["hi"] < -max_drop]


def dump(comparisons: list[dict]) -> str:
    return json.dumps(comparisons, indent=2)
