"""`judgeloop serve` as a child process: start it, wait until its API answers /health, stop it (and its vLLM).

Used by whatever drives the judge API from outside, as a user would (the demo, the benchmarks).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from data.errors import ServerError
from data.paths import REPO_ROOT

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def judge_api_child(
    serve_args: list[str],
    port: int,
    log_path: Path,
    env: dict[str, str] | None = None,
    startup_timeout_s: float = 300,
    stop_timeout_s: float = 60,
):
    """Run ``judgeloop serve SERVE_ARGS`` (which must listen on ``port``) in its own process group; yields its URL
    once /health answers 200. On exit: SIGTERM (it writes what is queued and stops its vLLM), SIGKILL to the
    group after ``stop_timeout_s``. Raises ServerError, naming the log, if it exits or does not come up in time."""

    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "judgeloop", "serve", *serve_args],
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                raise ServerError(f"`judgeloop serve` exited with {proc.returncode}; see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise ServerError(f"the judge API did not come up in {startup_timeout_s:.0f} s; see {log_path}")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=stop_timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
