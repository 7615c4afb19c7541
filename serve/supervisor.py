"""Keeps launched vLLM servers running: one that exits is started again, the judge API stays up.

A thread polls every server's process. When one has exited (a crash, the OOM killer, kill -9 of
its process group) it stops what is left of the group, starts the server again on the same port
and waits for ``/health``, at most ``max_restarts`` times per server. Meanwhile the vLLM backend
fails fast with ``ServerUnavailable`` (the judge API answers 503 with the reason) or uses the
other replicas; once the server is healthy, requests reach it again within the backend's
``DOWN_FOR_S``. A restarted child is tied to the thread that started it (PR_SET_PDEATHSIG, see
launcher.py), so this thread starts it and lives until ``stop``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from data.errors import ServerError
from serve.launcher import VLLMServer


class Supervisor:
    def __init__(
        self,
        servers: list[VLLMServer],
        *,
        max_restarts: int,
        startup_timeout_s: float,
        poll_s: float = 0.5,
        progress: Callable[[str], None] = print,
    ):
        self.servers = servers
        self.max_restarts = max_restarts
        self.startup_timeout_s = startup_timeout_s
        self.poll_s = poll_s
        self.progress = progress
        self.restarts = {server.url: 0 for server in servers}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vllm-supervisor", daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            for server in self.servers:
                if self._stop.is_set() or server.child.alive() or self.restarts[server.url] >= self.max_restarts:
                    continue
                self.restarts[server.url] += 1
                code = server.child.proc.returncode if server.child.proc else None
                self.progress(
                    f"vLLM on {server.url} exited (code {code}); restarting it "
                    f"({self.restarts[server.url]} of {self.max_restarts}), log {server.child.log_path}"
                )
                server.child.stop(grace_s=5.0)  # the rest of its process group (engine, workers)
                try:
                    server.start().wait_healthy(self.startup_timeout_s)
                    self.progress(f"vLLM on {server.url} is back")
                except ServerError as exc:
                    self.progress(f"vLLM on {server.url} did not come back: {exc.first.message.splitlines()[0]}")

    def stop(self) -> None:
        """Stop watching (the caller stops the servers); a restart in progress fails once they are stopped."""
        self._stop.set()
        self._thread.join(timeout=2.0)
