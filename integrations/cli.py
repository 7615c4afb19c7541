"""The integrations' commands, added to the ``judgeloop`` tree by ``judgeloop.py``.

``groups`` are the command groups that ``workflows/cli.py`` built (``{"review": its actions}``): an
integration that extends a workflow adds its actions there (``judgeloop review push``).
"""

from __future__ import annotations


def add_commands(commands, groups: dict) -> None:
    """Adds every integration's commands (each runs lazily: the frameworks import only when used)."""
