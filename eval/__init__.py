"""judgeloop eval package."""
