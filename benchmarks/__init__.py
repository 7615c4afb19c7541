"""Benchmarks: scoring and training speed against the usual ways, side by side in one run (`judgeloop bench`)."""
