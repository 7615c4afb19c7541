"""`judgeloop evaluate`: your systems ranked and scored by judges, corrected with human labels (docs/evaluate.md)."""

EVALUATION_HISTORY = "runs/evaluate/history.db"  # the default history database (SQLite)
