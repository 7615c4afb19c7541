"""Where judgeloop keeps things: the repo's configs, the user cache, the dataset mirror."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS_DIR = REPO_ROOT / "configs"


def cache_dir() -> Path:
    """``$JUDGELOOP_CACHE``, else ``$XDG_CACHE_HOME/judgeloop``, else ``~/.cache/judgeloop``."""
    if os.environ.get("JUDGELOOP_CACHE"):
        return Path(os.environ["JUDGELOOP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "judgeloop"


def data_mirror() -> Path | None:
    """The offline dataset mirror named by ``$JUDGELOOP_DATA_MIRROR``, if set."""
    value = os.environ.get("JUDGELOOP_DATA_MIRROR")
    return Path(value) if value else None
