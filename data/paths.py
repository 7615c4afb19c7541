"""Where judgeloop keeps things: the repo's configs, the user cache, the dataset mirror."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS_DIR = REPO_ROOT / "configs"
JUDGE_FILE = "judge.json"  # a judge directory's manifest (written by `judgeloop train` and `judgeloop merge`)


def cache_dir() -> Path:
    """``$JUDGELOOP_CACHE``, else ``$XDG_CACHE_HOME/judgeloop``, else ``~/.cache/judgeloop``."""
    if os.environ.get("JUDGELOOP_CACHE"):
        return Path(os.environ["JUDGELOOP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "judgeloop"


# the shared dataset folder beside a checkout (the layout of the project's machines), used when no mirror is named
SHARED_MIRROR = REPO_ROOT.parent / "shared" / "datasets"


def data_mirror() -> Path | None:
    """The offline dataset mirror: ``$JUDGELOOP_DATA_MIRROR`` when set (empty: none), else ``../shared/datasets``
    beside the checkout when it holds a MANIFEST.md, else None (files come from the cache or are downloaded)."""
    value = os.environ.get("JUDGELOOP_DATA_MIRROR")
    if value is not None:
        return Path(value) if value else None
    return SHARED_MIRROR if (SHARED_MIRROR / "MANIFEST.md").is_file() else None
