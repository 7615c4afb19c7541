"""The integrations' commands, added to the ``judgeloop`` tree by ``judgeloop.py``.

``groups`` are the command groups that ``workflows/cli.py`` built (``{"review": its actions}``): an
integration that extends a workflow adds its actions there (``judgeloop review push``). ``after_command``
runs once a command has finished: ``--mlflow`` logs what it wrote (the directories it put in
``args.outputs``).
"""

from __future__ import annotations

import logging

from data.cli_base import add_command, add_group, lazy, positive_hours

log = logging.getLogger("judgeloop")
TRACKED = ("train", "eval", "evaluate")  # the commands that take --mlflow


def add_commands(commands, groups: dict) -> None:
    """Adds every integration's commands (each runs lazily: the frameworks import only when used)."""
    for name in TRACKED:
        parser = commands.choices[name]
        parser.add_argument(
            "--mlflow", action="store_true", help="log the run to MLflow when it is done (integrations/mlflow.py)"
        )
        parser.add_argument(
            "--mlflow-uri", metavar="URI", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI, else ./mlruns)"
        )
    add_label_studio(groups["review"])
    mlflow = add_group(commands, "mlflow", help="log judgeloop runs to MLflow (training, validation, evaluation)")
    p = add_command(
        mlflow,
        "log",
        help="log run directories to MLflow: a training run, a validation or an evaluation",
        example="judgeloop mlflow log runs/helpfulness-pairwise/judgeloop-20261205-0101 runs/eval --mlflow-uri "
        "sqlite:///mlruns/mlflow.db",
        run=lazy("integrations.cli", "cmd_mlflow_log"),
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="directories judgeloop train, eval or evaluate wrote")
    p.add_argument("--mlflow-uri", metavar="URI", help="tracking URI (default $MLFLOW_TRACKING_URI, else ./mlruns)")
    p.add_argument("--experiment", default="judgeloop", help="MLflow experiment (default judgeloop)")


def _label_studio_flags(p) -> None:
    p.add_argument("--url", help="Label Studio's URL (default: $LABEL_STUDIO_URL)")
    p.add_argument("--token", help="a Label Studio access token (default: $LABEL_STUDIO_API_KEY)")
    p.add_argument(
        "--project",
        help="the project's id or title (default: the one this export was pushed to, else 'judgeloop review: JUDGE')",
    )
    p.add_argument("--review-dir", default="runs/review", help="the review export's directory (default runs/review)")


def add_label_studio(review) -> None:
    """`judgeloop review push` and `judgeloop review pull` (integrations/labelstudio.py)."""
    push = add_command(
        review,
        "push",
        help="send a review export's tasks to a Label Studio project (created or updated; no duplicates)",
        description="Create or update a Label Studio project (its labeling interface generated from the judge "
        "spec) and import the review export's tasks it does not hold yet. With --judge and --n, export first "
        "when --review-dir holds no export (the flags of judgeloop review export). Exit 2 for a refused token or "
        "a project that no longer matches the spec, 3 when Label Studio cannot be reached.",
        example="judgeloop review push --judge helpfulness-pairwise --n 100 --window-hours 24 --review-dir runs/review"
        "\n"
        "  (with LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY set, or --url URL --token TOKEN)",
        run=lazy("integrations.labelstudio", "cmd_push"),
    )
    _label_studio_flags(push)
    push.add_argument("--judge", help="export first: the judge (spec name) whose production verdicts to review")
    push.add_argument("--spec", help="judge spec name or path (default: the export's, else the judge name)")
    push.add_argument("--n", type=int, help="export first: items to review")
    push.add_argument("--log", help="export first: the verdict log (default: `judgeloop serve`'s)")
    push.add_argument("--window-hours", type=positive_hours, default=None, help="export first: the last H hours")
    push.add_argument("--random-share", type=float, default=0.3, help="export first: uniform random share (0.3)")
    push.add_argument("--seed", type=int, default=0)
    pull = add_command(
        review,
        "pull",
        help="fetch a Label Studio project's annotations -> reviewed items JSONL (as review import)",
        description="Fetch the annotations of the review export's tasks from its Label Studio project and write "
        "the reviewed items JSONL that judgeloop review import writes (labels checked against the spec; the "
        "JSONL is written only when all is well). Exit 2 for a refused token, a project that no longer matches "
        "the spec or labels outside the label space, 3 when Label Studio cannot be reached.",
        example="judgeloop review pull --review-dir runs/review --out runs/review/reviewed.jsonl",
        run=lazy("integrations.labelstudio", "cmd_pull"),
    )
    _label_studio_flags(pull)
    pull.add_argument("--spec", help="judge spec name or path (default: the export's)")
    pull.add_argument("--out", required=True, help="labelled items JSONL to write")


def cmd_mlflow_log(args) -> int:
    from integrations import mlflow  # deferred: imports MLflow

    for directory in args.dirs:
        run_id, new = mlflow.log_directory(directory, args.mlflow_uri, args.experiment)
        print(f"{directory}: {'logged as' if new else 'already logged as'} MLflow run {run_id}")
    return 0


def after_command(args, rc: int) -> None:
    """What a command asked to run after it: ``--mlflow`` logs the directories it wrote (a failed gate too)."""
    if not getattr(args, "mlflow", False) or rc not in (0, 1):
        return
    from integrations import mlflow  # deferred: imports MLflow

    for directory in getattr(args, "outputs", []):
        run_id, new = mlflow.log_directory(directory, args.mlflow_uri)
        print(f"MLflow: {directory} {'logged as' if new else 'already logged as'} run {run_id}")
