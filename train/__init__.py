"""judgeloop train package."""
