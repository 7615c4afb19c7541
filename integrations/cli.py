"""The integrations' commands, added to the ``judgeloop`` tree by ``judgeloop.py``.

``groups`` are the command groups that ``workflows/cli.py`` built (``{"review": its actions}``): an
integration that extends a workflow adds its actions there (``judgeloop review push``). ``after_command``
runs once a command has finished: ``--mlflow`` logs what it wrote (the directories it put in
``args.outputs``).
"""

from __future__ import annotations

import logging

from data.cli_base import add_command, add_group, lazy

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
    _review_commands(groups["review"])
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


def _review_commands(review) -> None:
    """`judgeloop review push|pull`: the review export in a running Label Studio (integrations/labelstudio.py)."""
    push = add_command(
        review,
        "push",
        help="create or update a Label Studio project from a review export and import its tasks",
        example="judgeloop review push runs/review --url http://127.0.0.1:8080 --token $LABEL_STUDIO_API_KEY",
        run=lazy("integrations.labelstudio", "cmd_push"),
    )
    pull = add_command(
        review,
        "pull",
        help="fetch the Label Studio project's annotations -> reviewed items JSONL (as review import)",
        example="judgeloop review pull runs/review --spec helpfulness-pairwise --out runs/review/reviewed.jsonl",
        run=lazy("integrations.labelstudio", "cmd_pull"),
    )
    for p in (push, pull):
        p.add_argument("dir", metavar="DIR", help="the folder `judgeloop review export` wrote")
        p.add_argument("--url", help="Label Studio's URL (default $LABEL_STUDIO_URL)")
        p.add_argument("--token", help="a Label Studio API or personal access token (default $LABEL_STUDIO_API_KEY)")
    push.add_argument("--title", help="the project's title (default: judgeloop review: JUDGE EXPORT)")
    pull.add_argument("--spec", required=True, help="judge spec name or path (its labels are checked)")
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
