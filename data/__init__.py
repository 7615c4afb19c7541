"""judgeloop data: the data model, judge specs and prompt rendering, the dataset registry, splits,
the embedded model."""
