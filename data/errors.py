"""Typed errors for mistakes a user can cause (bad file, bad config, unknown name).

The CLI turns any ``JudgeloopError`` into one line per problem naming file:line and field,
then exits with code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class Problem:
    """One thing wrong with one place in one input."""

    message: str
    path: str | None = None
    line: int | None = None
    field: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.path:
            where = self.path + (f":{self.line}" if self.line else "")
        elif self.line:
            where = f"line {self.line}"
        parts = [p for p in (where, f"field '{self.field}'" if self.field else "") if p]
        text = ": ".join(parts + [self.message])
        return text + (f" ({self.hint})" if self.hint else "")


class JudgeloopError(Exception):
    """A problem the user can fix. Carries one or more located problems."""

    def __init__(
        self,
        message: str | None = None,
        *,
        path=None,
        line=None,
        field=None,
        hint=None,
        problems: Iterable[Problem] | None = None,
    ):
        self.problems = list(problems or [])
        if message is not None:
            self.problems.insert(0, Problem(message, str(path) if path else None, line, field, hint))
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def first(self) -> Problem:
        return self.problems[0]


class DataError(JudgeloopError):
    """A data file (JSONL, CSV, Parquet, dataset source) is unreadable or invalid."""


class ConfigError(JudgeloopError):
    """A config or judge spec is invalid."""


class UnknownNameError(JudgeloopError):
    """A dataset, judge spec, backend or metric name is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str], **where):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(known)}"
        super().__init__(f"unknown {kind} '{name}'", hint=hint, **where)
        self.name = name
        self.suggestion = close[0] if close else None


class ModelError(JudgeloopError):
    """A model cannot be found, fetched or loaded."""


class ServerError(JudgeloopError):
    """A server (vLLM, the judge API) is down, unhealthy or answered badly."""


class ServerUnavailable(ServerError):
    """No engine can answer now (every vLLM endpoint is down or restarting); the judge API answers 503."""
