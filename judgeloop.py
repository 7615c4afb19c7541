"""The `judgeloop` command: one argparse tree, built from every package's ``cli.py``.

Each ``*/cli.py`` adds its commands with ``add_commands(subparsers)`` (``data/cli_base.py``); a
command's ``run(args) -> int`` builds its config and calls one function. Progress goes to the
``judgeloop`` logger (stderr; ``-q`` keeps warnings and errors and turns progress bars off); the
lines that say where outputs are stay on stdout. Exit codes are in ``EXIT_CODES`` (and
``judgeloop --help``, docs/cli.md). User-caused errors (``JudgeloopError``) print one line per
problem (file:line: field: what, and what to do) with no traceback; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
from importlib import metadata

from benchmarks import cli as benchmarks_cli
from data import cli as data_cli
from data.cli_base import OVERRIDE_SYNTAX, Parser
from data.errors import JudgeloopError, ServerUnavailable
from eval import cli as eval_cli
from integrations import cli as integrations_cli
from serve import cli as serve_cli
from train import cli as train_cli
from workflows import cli as workflows_cli

OK, FAILED, USER_ERROR, UNAVAILABLE, INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = {
    OK: "ok",
    FAILED: "a gate failed (gate, retrain) or the monitor raised an alert",
    USER_ERROR: "a user error: bad input, config or arguments (each problem named: file:line: field)",
    UNAVAILABLE: "the engine or a server is unavailable: vLLM cannot start, the judge API or Label Studio unreachable",
    INTERRUPTED: "interrupted (Ctrl-C)",
}
log = logging.getLogger("judgeloop")


def version() -> str:
    try:
        return metadata.version("judgeloop")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> Parser:
    exit_codes = "\n".join(f"  {code:<3}  {what}" for code, what in EXIT_CODES.items())
    root = Parser(
        prog="judgeloop",
        description="Fine-tune an LLM judge on your human labels, validate it against them, gate, serve and "
        "monitor it.",
        epilog=f"Config-backed commands (train, serve, score, gate, monitor, retrain) take a CONFIG and\n"
        f"overrides: {OVERRIDE_SYNTAX}.\n`judgeloop COMMAND --help` for a command's flags, "
        f"config fields and an example; docs/cli.md for all of them.\n\nexit codes:\n{exit_codes}",
    )
    root.add_argument("--version", action="version", version=f"judgeloop {version()}")
    root.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors; no progress bars")
    commands = root.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)
    # the order of `judgeloop --help`: data, model; train, merge; serve, score; eval; gate, report;
    # the registry; the live loop (monitor, review, retrain); demo, bench
    data_cli.add_commands(commands)
    train_cli.add_commands(commands)
    serve_cli.add_commands(commands)
    workflows_cli.add_eval_commands(commands)  # eval, eval all, train all (workflows above train/ and eval/)
    eval_cli.add_commands(commands)
    groups = workflows_cli.add_commands(commands)
    integrations_cli.add_commands(commands, groups)
    benchmarks_cli.add_commands(commands)
    return root


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (pytest and redirections swap it between calls)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return text if record.levelno < logging.WARNING else f"judgeloop: {record.levelname.lower()}: {text}"


@contextlib.contextmanager
def progress_output(quiet: bool):
    """Progress to the ``judgeloop`` logger on stderr; ``quiet``: warnings and errors only, no tqdm bars."""
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_Formatter())
        log.addHandler(handler)
    previous_level, previous_tqdm = log.level, os.environ.get("TQDM_DISABLE")
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm's own switch: every bar (ours, Hugging Face's) honours it
    try:
        yield
    finally:
        log.setLevel(previous_level)
        if quiet:
            if previous_tqdm is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = previous_tqdm


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return FAILED


def _report(exc: JudgeloopError) -> None:
    for problem in exc.problems:
        print(f"judgeloop: error: {problem}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        parser.print_help()
        return OK
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (exit 2): argparse has printed them
        return _exit_code(exc)
    args.command_line = "judgeloop " + shlex.join(argv)  # recorded in the outputs' provenance
    with progress_output(args.quiet):
        try:
            rc = int(args.run(args) or 0)
            integrations_cli.after_command(args, rc)  # e.g. --mlflow: log what the command wrote
            return rc
        except ServerUnavailable as exc:  # not the user's mistake: retry later, or fix the machine
            _report(exc)
            return UNAVAILABLE
        except JudgeloopError as exc:
            _report(exc)
            return USER_ERROR
        except OSError as exc:
            if exc.filename is None:  # not about a path the user gave: a bug or the machine, keep the traceback
                raise
            # a path the user named that cannot be used as asked: a directory where a file is expected, an
            # output under a regular file, a missing or unreadable file
            print(f"judgeloop: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
            return USER_ERROR
        except KeyboardInterrupt:
            print("judgeloop: interrupted", file=sys.stderr)
            return INTERRUPTED
        except SystemExit as exc:  # a usage error found while running, or a signal turned into an exit
            return _exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
