"""judgeloop serve package."""
