"""The parser pieces every ``*/cli.py`` uses to add its commands to the one ``judgeloop`` parser tree.

``judgeloop.py`` builds the root parser and calls each cli module's ``add_commands(subparsers)``;
each command is made with ``add_command``, which sets ``run`` (a function ``(args) -> int``).

Spelling: flags are spelled with dashes (``--serve-config``, ``--n-boot``). A config-backed
command (``overrides=True``) also takes ``--key=value`` overrides of its config's fields, spelled
as in the YAML (underscores, dots for nesting: ``--output_dir=runs/x``, ``--lora.rank=8``, lists
as ``[a,b]``): every ``--key`` that is not one of the command's own flags is collected, in order,
in ``args.overrides`` for ``data.config.load_config``, which reports unknown keys and bad values,
every one at once and located.

This module is imported on every ``judgeloop`` call (``--help`` too): standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import math
import shutil
import sys
import textwrap
from collections.abc import Callable

OVERRIDE_SYNTAX = "--key=value (the field's name as in the YAML; dots for nesting: --lora.rank=8; lists: --x=[a,b])"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser with ``--key=value`` config overrides, nested subcommands beside positionals
    (``judgeloop train all`` next to ``judgeloop train CONFIG``), an example and a config field list in
    ``--help`` (the field list is computed only when shown: it imports the config class)."""

    def __init__(
        self,
        *args,
        overrides: bool = False,
        example: str | None = None,
        config_help: Callable[[], dict[str, str]] | None = None,
        **kwargs,
    ):
        # no prefix matching: an override --out=x must never be taken for a flag --output, nor --ver for --version
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.takes_overrides = overrides
        self.example = example
        self.config_help = config_help
        self.subcommands: dict[str, Parser] = {}
        self.subcommand_help: dict[str, str] = {}

    def add_subcommand(self, name: str, *, help: str, example: str, run: Callable, **kwargs) -> Parser:
        """``PROG NAME ...``: a subcommand beside this command's own positionals; chosen when NAME comes first."""
        sub = Parser(prog=f"{self.prog} {name}", description=kwargs.pop("description", help), example=example, **kwargs)
        _quiet_flag(sub)
        sub.set_defaults(run=run)
        self.subcommands[name] = sub
        self.subcommand_help[name] = help
        return sub

    # --- parsing ----------------------------------------------------------------------------------

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        if args and args[0] in self.subcommands:
            return self.subcommands[args[0]].parse_known_args(args[1:], namespace)
        if not self.takes_overrides:
            return super().parse_known_args(args, namespace)
        # every --key[=value] that is not a flag of this command is a config override; taken out before
        # argparse sees it, so a value with spaces (--system=Be terse) is never read as a positional
        overrides, rest = [], []
        for i, arg in enumerate(args):
            if arg == "--":
                rest += args[i:]
                break
            key = arg.split("=", 1)[0]
            if arg.startswith("--") and key not in self._option_string_actions:
                if key.replace("_", "-") in self._option_string_actions:
                    self.error(f"{key}: flags are spelled with dashes: {key.replace('_', '-')}")
                after = args[i + 1] if i + 1 < len(args) else None
                if "=" not in arg and after is not None and not after.startswith("-"):  # --key value
                    flags = [f for f in self._option_string_actions if f.startswith("--")]
                    close = difflib.get_close_matches(key, flags, n=1, cutoff=0.8)
                    if close:
                        self.error(f"unknown flag {key} (did you mean {close[0]}?)")
                    self.error(f"override '{arg}' is not of the form --key=value: write {arg}={after}")
                overrides.append(arg)
            else:
                rest.append(arg)
        ns, extras = super().parse_known_args(rest, namespace)
        ns.overrides = overrides
        return ns, extras

    def _check_value(self, action, value):
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            close = difflib.get_close_matches(value, list(action.choices), n=1)
            raise argparse.ArgumentError(
                action,
                f"unknown command '{value}'"
                + (f" (did you mean '{close[0]}'?)" if close else f"; one of {', '.join(action.choices)}"),
            )
        super()._check_value(action, value)

    # --- help -------------------------------------------------------------------------------------

    def format_usage(self):
        with self._full_usage():
            return super().format_usage()

    def format_help(self):
        width = min(shutil.get_terminal_size().columns - 2, 100)

        def rows(title: str, entries: dict[str, str]) -> str:
            keyw = min(max(map(len, entries)), 32)
            lines = [title]
            for key, text in entries.items():
                lead = f"  {key:<{keyw}}  "
                if len(lead) > keyw + 4:  # a long key: its text on the next line
                    lines.append(lead.rstrip())
                    lead = " " * (keyw + 4)
                lines.append(
                    textwrap.fill(text, width, initial_indent=lead, subsequent_indent=" " * (keyw + 4))
                    if text
                    else lead.rstrip()
                )
            return "\n".join(lines)

        parts = []
        if self.subcommands:
            parts.append(rows("subcommands:", {f"{self.prog} {n}": h for n, h in self.subcommand_help.items()}))
        if self.takes_overrides:
            parts.append(textwrap.fill(f"config overrides: {OVERRIDE_SYNTAX}", width, subsequent_indent="  "))
        if self.config_help:
            parts.append(rows("config fields:", {f"--{k}": v for k, v in self.config_help().items()}))
        if self.example:
            parts.append("example:\n" + "\n".join(f"  {line}" for line in self.example.strip().splitlines()))
        if self.epilog:
            parts.append(self.epilog)
        saved = self.epilog, self.description
        self.epilog = "\n\n".join(parts) or None
        if self.description:
            self.description = "\n\n".join(textwrap.fill(p, width) for p in self.description.split("\n\n"))
        try:
            with self._full_usage():
                return super().format_help()
        finally:
            self.epilog, self.description = saved

    @contextlib.contextmanager
    def _full_usage(self):
        """The generated usage plus ``[--key=value ...]`` and a line per subcommand, while help is formatted."""
        saved = self.usage
        if self.usage is None and (self.takes_overrides or self.subcommands):
            formatter = self._get_formatter()
            formatter.add_usage(None, self._actions, self._mutually_exclusive_groups, prefix="")
            usage = formatter.format_help().strip()
            if self.takes_overrides:
                usage += " [--key=value ...]"
            for name in self.subcommands:
                usage += f"\n       {self.prog} {name} ..."
            self.usage = usage.replace("%", "%%")
        try:
            yield
        finally:
            self.usage = saved


def _quiet_flag(p: argparse.ArgumentParser) -> None:
    # also after the command (judgeloop score ... -q); SUPPRESS: absent here, the root's value stands
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="only warnings and errors; no progress bars",
    )


def add_command(
    subparsers,
    name: str,
    *,
    help: str,
    example: str,
    run: Callable,
    description: str | None = None,
    **kwargs,
) -> Parser:
    """A command (or a group's action): one-line ``help`` for the list, an ``example`` for its ``--help``."""
    p = subparsers.add_parser(name, help=help, description=description or help, example=example, **kwargs)
    _quiet_flag(p)
    p.set_defaults(run=run)
    return p


def add_group(subparsers, name: str, *, help: str, dest: str = "action"):
    """A command with actions of its own (``judgeloop data list``); returns the actions' subparsers."""
    p = subparsers.add_parser(name, help=help, description=help)
    return p.add_subparsers(dest=dest, metavar="ACTION", required=True)


def moved_flag(p: argparse.ArgumentParser, flag: str, to: str) -> None:
    """A flag that became a subcommand: using it is a usage error (exit 2) that names the subcommand."""

    class Moved(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            parser.error(f"{flag} is now a subcommand: {to} (see `{to} --help`)")

    p.add_argument(flag, nargs=0, action=Moved, help=argparse.SUPPRESS)


def lazy(module: str, function: str) -> Callable:
    """``run`` that imports ``module`` only when the command runs: the parser tree is built on every
    call (``judgeloop --help`` too), and the workflow modules import torch, vLLM clients, SciPy... (seconds)."""

    def run(args) -> int:
        return getattr(importlib.import_module(module), function)(args)

    run.__qualname__ = f"lazy({module}:{function})"
    return run


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts (bootstrap replicates, items): a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_hours(text: str) -> float:
    """An argparse ``type`` for a time window: a positive, finite number of hours."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of hours") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive, finite number of hours, got {text}")
    return value
