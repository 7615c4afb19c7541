"""judgeloop where evaluation engineers already work: Label Studio, Inspect AI, DeepEval, promptfoo, MLflow.

The top layer (beside ``benchmarks``): each integration is one module here, importing the judge API
client, the review loop or the run artefacts below it; nothing below imports this package, and each
third-party framework is imported only inside its own module (``pip install 'judgeloop[integrations]'``).
"""
