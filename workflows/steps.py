"""The loop's steps as resumable functions, shared by `judgeloop demo` and `judgeloop loso`: train in a child
process, merge the adapter, score items through vLLM. Each reuses what an earlier run finished (the same resolved
config, the same judge), so an interrupted workflow picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from data.config import to_dict
from data.errors import JudgeloopError
from data.jsonl import read_jsonl, write_jsonl
from data.paths import JUDGE_FILE
from data.provenance import sha256_json
from data.schema import Item, Verdict
from judge.loading import load_judge
from judge.merge import merge
from serve.batch import score_file
from serve.child import free_port
from serve.config import load_serve_config
from serve.service import start_judges
from train.config import load_train_config

log = logging.getLogger("judgeloop")
KEY_FILE = "run-key.txt"


def train_in_child(train_config: Path, overrides: Sequence[str], extra_key: dict | None = None) -> Path:
    """`judgeloop train CONFIG OVERRIDES` unless a finished run with the same resolved config (and ``extra_key``,
    e.g. the hashes of its item files) is in its output directory; returns that directory.

    A child process: what training allocates (11 GB resident after the demo recipe's 115 bf16 steps, measured)
    goes back to the system before vLLM starts, instead of staying in this process."""
    cfg = load_train_config(train_config, list(overrides))
    run_dir = Path(cfg.output_dir)
    key = sha256_json({"config": to_dict(cfg), **(extra_key or {})}, ensure_ascii=True)
    key_file = run_dir / KEY_FILE
    if (run_dir / JUDGE_FILE).exists() and key_file.exists() and key_file.read_text() == key:
        log.info(f"reusing the finished run {run_dir} (same config and data)")
        return run_dir
    if run_dir.exists():
        shutil.rmtree(run_dir)
    quiet = [] if log.isEnabledFor(logging.INFO) else ["-q"]
    cmd = [sys.executable, "-m", "judgeloop", *quiet, "train", str(train_config), *overrides]
    rc = subprocess.run(cmd, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}).returncode
    if rc != 0:
        raise JudgeloopError(f"training failed (exit {rc}); its output is above", hint=" ".join(cmd))
    key_file.write_text(key)
    return run_dir


def merged(run_dir: Path) -> Path:
    """The run's adapter merged into its base (``RUN/merged``), what vLLM serves; reused when it is this run's."""
    out = run_dir / "merged"
    if (out / JUDGE_FILE).exists() and load_judge(out).fingerprint == load_judge(run_dir).fingerprint:
        log.info(f"reusing {out}")
        return out
    return merge(run_dir, out, progress=log.info)


def serve_config_for(serve_config: Path, judges: list[str], overrides: Sequence[str] = ()):
    return load_serve_config(serve_config, [*overrides, f"--judges=[{','.join(judges)}]", "--candidates=[]"])


def finished_verdicts(path: Path, items: list[Item], fingerprint) -> list[Verdict] | None:
    """An earlier run's verdicts when they are complete, error-free and by this judge (``fingerprint()``);
    None when they are not, or the file is empty or torn by an interrupted run."""
    if not path.exists():
        return None
    try:
        done = list(read_jsonl(path, Verdict, unique_ids=False))
    except JudgeloopError:
        return None
    if not done or {v.id for v in done} != {i.id for i in items} or any(v.error for v in done):
        return None
    return done if done[0].judge.fingerprint == fingerprint() else None


class LazyVllm:
    """One judge on vLLM for several steps, started the first time one of them needs it (a rerun whose steps are
    all reused starts none) and stopped on leaving the ``with`` block."""

    def __init__(self, judge_ref: str, serve_config: Path):
        self.judge_ref, self.serve_config = judge_ref, serve_config
        self._stack = contextlib.ExitStack()
        self._serving = None

    def __enter__(self) -> LazyVllm:
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self._serving = None

    def service(self):
        """The judge's JudgeService (serve/service.py), vLLM started on the first call."""
        if self._serving is None:
            cfg = serve_config_for(self.serve_config, [self.judge_ref], [f"--vllm.port={free_port()}"])
            self._serving = self._stack.enter_context(start_judges(cfg, progress=log.info))  # never a busy port
        (service,) = self._serving.services.values()
        return service


def score_with_vllm(
    judge_ref: str, items: list[Item], verdicts_path: Path, serve_config: Path, engine: LazyVllm | None = None
) -> list[Verdict]:
    """Validation scoring: the same engine (vLLM) and dtype that serves production. Writes ``items.jsonl`` beside
    ``verdicts_path``; reuses finished verdicts of the same judge. ``engine``: a vLLM the caller keeps for later
    steps (else one is started for this call)."""
    done = finished_verdicts(verdicts_path, items, lambda: load_judge(judge_ref).fingerprint)
    if done is not None:
        log.info(f"reusing {verdicts_path}")
        return done
    verdicts_path.unlink(missing_ok=True)
    items_path = verdicts_path.with_name("items.jsonl")
    verdicts_path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(items_path, items)
    with contextlib.ExitStack() as stack:
        if engine is None:
            engine = stack.enter_context(LazyVllm(judge_ref, serve_config))
        service = engine.service()
        score_file(
            items_path,
            verdicts_path,
            lambda batch: list(service.score_stream(batch, True, len(batch))),
            service.ref,
            batch_size=32,
            progress=log.isEnabledFor(logging.INFO),  # the bar is progress: off with --quiet
        )
    return list(read_jsonl(verdicts_path, Verdict))
