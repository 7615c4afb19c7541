"""Dataclass configs: YAML file plus ``--key=value`` overrides, every error reported at once.

A config class is a dataclass whose fields carry ``metadata={"help": ...}`` (see ``option``).
Nested dataclasses are addressed with dots (``--lora.rank=8``). A class may define
``validate(self) -> list[Problem]`` for cross-field rules. A YAML file may start from another
with ``base: FILE`` (``load_config``). Errors name the YAML file and line of the offending key, or
the override that caused them.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from data.errors import ConfigError, Problem

T = TypeVar("T")


def option(default: Any = dataclasses.MISSING, help: str = "", **kw) -> Any:
    """A dataclass field with help text; mutable defaults are copied per instance.

    A nested config is given by its class: ``lora: LoraConfig = option(LoraConfig, help=...)``.
    """
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=default, metadata={"help": help}, **kw)
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kw)
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


def field_help(cls) -> dict[str, str]:
    """Help text of every field, dotted for nested configs (for --help and docs)."""
    out: dict[str, str] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.update({f"{f.name}.{k}": v for k, v in field_help(tp).items()})
        else:
            out[f.name] = f.metadata.get("help", "")
    return out


class _Refused(yaml.MarkedYAMLError):
    """A YAML construct judgeloop does not accept, with where it is (``field``: the dotted key, if any)."""

    def __init__(self, problem: str, mark, field: str | None = None, hint: str | None = None):
        super().__init__(problem=problem, problem_mark=mark)
        self.field, self.hint = field, hint


class StrictLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader without aliases: an alias (``*name``, ``<<: *name``) is refused where it
    stands, so a file of nested aliases (a "billion laughs" bomb: 871 bytes that expand beyond any
    memory) fails at its first alias instead of hanging every loader. No judgeloop file needs one."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(
                f"YAML aliases are not allowed (*{event.anchor})",
                event.start_mark,
                hint="write the value out where it is used",
            )
        return super().compose_node(parent, index)


def _check_keys(node, prefix: str, lines: dict[str, int]) -> None:
    """Record the line of every dotted mapping key; refuse a key given twice in one mapping (PyYAML keeps
    the last silently, so a second ``min_agreement:`` further down would loosen a gate unnoticed)."""
    stack = [(node, prefix, True)]
    while stack:  # iterative: nesting depth is bounded by the parser, not by Python's recursion limit
        n, pre, keyed = stack.pop()  # keyed: reached through mapping keys only (errors name those lines)
        if isinstance(n, yaml.MappingNode):
            first: dict[str, int] = {}
            for k, v in n.value:
                if not isinstance(k, yaml.ScalarNode):
                    continue
                key, line = f"{pre}{k.value}", k.start_mark.line + 1
                if k.value in first:
                    raise _Refused(
                        f"duplicate key '{k.value}' on lines {first[k.value]} and {line}",
                        k.start_mark,
                        field=key,
                        hint="keep one of them",
                    )
                first[k.value] = line
                if keyed:
                    lines[key] = line
                stack.append((v, key + ".", keyed))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend((v, f"{pre}{i}.", False) for i, v in enumerate(n.value))


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with the ``StrictLoader`` rules (no aliases, no duplicate keys)."""
    return _yaml_with_lines(text, None)[0]


def _yaml_with_lines(text: str, path: str | None) -> tuple[Any, dict[str, int]]:
    """Parse YAML and return the data plus the line of every (dotted) key (mapping keys only)."""
    loader = StrictLoader(text)
    lines: dict[str, int] = {}
    try:
        node = loader.get_single_node()
        if node is None:
            return None, lines
        _check_keys(node, "", lines)
        data = loader.construct_document(node)
    except _Refused as exc:
        raise ConfigError(
            exc.problem, path=path, line=exc.problem_mark.line + 1, field=exc.field, hint=exc.hint
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"invalid YAML: {getattr(exc, 'problem', exc)}", path=path, line=mark.line + 1 if mark else None
        ) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", path=path) from None
    finally:
        loader.dispose()
    return data, lines


def _is_mapping(tp: Any) -> bool:
    return tp is dict or get_origin(tp) is dict


def _with_entries(value: Any, entries: dict[str, str]) -> Any:
    """A mapping with dotted entries set (``{"lora.rank": "8"}`` -> ``value["lora"]["rank"] = "8"``)."""
    if not entries:
        return value
    out = _copy_mapping(value if isinstance(value, dict) else {})
    for dotted, entry in entries.items():
        *parents, last = dotted.split(".")
        node = out
        for key in parents:
            if not isinstance(node.get(key), dict):
                node[key] = {}
            node = node[key]
        node[last] = entry
    return out


def _copy_mapping(value: dict) -> dict:
    return {k: _copy_mapping(v) if isinstance(v, dict) else v for k, v in value.items()}


def overrides_from(mapping: dict, prefix: str = "") -> list[str]:
    """A (nested) mapping of config fields as ``--key=value`` overrides, the inverse of ``parse_overrides``:
    ``{"max_steps": 100, "lora": {"rank": 8}, "data": {"dev": ["a", "b"]}}`` ->
    ``["--max_steps=100", "--lora.rank=8", '--data.dev=["a", "b"]']``."""
    out = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            out += overrides_from(value, f"{prefix}{key}.")
        elif isinstance(value, str):
            out.append(f"--{prefix}{key}={value}")
        else:  # YAML flow text: null, true, 5e-3, ["a", "b"]
            out.append(f"--{prefix}{key}={json.dumps(value, default=str)}")
    return out


def parse_overrides(args: list[str]) -> dict[str, str]:
    """``["--a.b=1", "--c=x"]`` -> ``{"a.b": "1", "c": "x"}`` (values still strings)."""
    out = {}
    problems = []
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            problems.append(Problem(f"override '{arg}' is not of the form --key=value", field=arg))
            continue
        key, value = arg[2:].split("=", 1)
        out[key] = value
    if problems:
        raise ConfigError(problems=problems)
    return out


def _load_override(text: str) -> Any:
    """An override's YAML value (``--labels=[a, b]``); a refused or invalid one is a ValueError (named
    by its override)."""
    try:
        return safe_load(text)
    except ConfigError as exc:
        raise ValueError(exc.first.message) from None


def _coerce(value: Any, tp: Any, from_string: bool) -> Any:
    """Convert ``value`` to type ``tp`` or raise ValueError with a readable reason."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None or (from_string and value in ("null", "None", "none", "")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, from_string)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(" or ".join(errors) or "must not be null")
    if origin is Literal:
        choices = get_args(tp)
        if from_string:
            for c in choices:
                if str(c) == value:
                    return c
        if value in choices:
            return value
        raise ValueError(f"must be one of {', '.join(map(str, choices))}, got {value!r}")
    if origin in (list, tuple):
        (item_tp, *_) = get_args(tp) or (Any,)
        if from_string:
            value = _load_override(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
            from_string = False
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"must be a list, got {value!r}")
        return [_coerce(v, item_tp, from_string) for v in value]
    if origin is dict or tp is dict:
        if from_string:
            value = _load_override(value)
        if not isinstance(value, dict):
            raise ValueError(f"must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if from_string:
            low = value.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ValueError(f"must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError(f"must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if from_string or isinstance(value, str):
            try:
                return int(str(value).replace("_", ""))
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError(f"must be a number, got {value!r}")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number, got {value!r}") from None
        if out != out:
            raise ValueError("must be a number, got NaN")
        return out
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ValueError(f"must be a string, got {value!r}")
        return str(value)
    if tp is Path:
        return Path(str(value))
    raise TypeError(f"unsupported config field type {tp!r}")


def build_config(
    cls: type[T],
    values: dict,
    *,
    path: str | None = None,
    lines: dict[str, int] | None = None,
    overrides: dict[str, str] | None = None,
) -> T:
    """Build ``cls`` from a nested dict plus dotted string overrides; collect every problem."""
    problems: list[Problem] = []
    lines = lines or {}
    overrides = dict(overrides or {})

    def build(kls, raw: Any, prefix: str):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            problems.append(
                Problem("must be a mapping", path, lines.get(prefix.rstrip(".")), prefix.rstrip(".") or None)
            )
            raw = {}
        hints = typing.get_type_hints(kls)
        names = {f.name: f for f in dataclasses.fields(kls)}
        for key in raw:
            if key not in names:
                close = difflib.get_close_matches(str(key), list(names), n=1)
                problems.append(
                    Problem(
                        "unknown key",
                        path,
                        lines.get(prefix + str(key)),
                        prefix + str(key),
                        f"did you mean '{prefix + close[0]}'?" if close else None,
                    )
                )
        kwargs = {}
        for name, f in names.items():
            dotted = prefix + name
            tp = hints[name]
            if dataclasses.is_dataclass(tp):
                kwargs[name] = build(tp, raw.get(name), dotted + ".")
                continue
            # --field.key=value: one entry of a mapping field, set over the field's whole value
            entries = [k for k in overrides if k.startswith(dotted + ".")] if _is_mapping(tp) else []
            entries = {k[len(dotted) + 1 :]: overrides.pop(k) for k in entries}
            if dotted in overrides:
                source, from_string, line, where = overrides.pop(dotted), True, None, f"--{dotted}"
            elif name in raw:
                source, from_string, line, where = raw[name], False, lines.get(dotted), path
            else:
                if entries:
                    factory = f.default_factory
                    kwargs[name] = _with_entries(f.default if factory is dataclasses.MISSING else factory(), entries)
                elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    problems.append(Problem("is required", path, None, dotted, f.metadata.get("help") or None))
                continue
            try:
                kwargs[name] = _with_entries(_coerce(source, tp, from_string), entries)
            except ValueError as exc:
                problems.append(Problem(str(exc), where, line, dotted))
        try:
            return kls(**kwargs)
        except TypeError:
            return None  # missing fields already reported

    cfg = build(cls, values, "")
    known = set(field_help(cls))
    for key in overrides:
        close = difflib.get_close_matches(key, known, n=1)
        problems.append(Problem("unknown key", f"--{key}", None, key, f"did you mean '{close[0]}'?" if close else None))
    if cfg is not None and not problems and hasattr(cfg, "validate"):
        for p in cfg.validate():
            if p.path is None:
                p.path = path
            if p.line is None and p.field:
                p.line = lines.get(p.field)
            problems.append(p)
    if problems:
        raise ConfigError(problems=problems)
    return cfg


def load_yaml(path: str | Path) -> tuple[Any, dict[str, int]]:
    """Read a YAML file, returning its data and the line of each dotted key."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", path=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", path=str(p)) from None
    return _yaml_with_lines(text, str(p))


BASE_KEY = "base"


def _merge_bases(
    base: dict,
    child: dict,
    prefix: str,
    base_where: dict[str, tuple[str, int]],
    child_where: dict[str, tuple[str, int]],
) -> tuple[dict, dict[str, tuple[str, int]]]:
    """Deep-merge ``child`` over ``base`` (mappings merge, anything else is replaced by the child's value).

    ``*_where`` map each dotted key to the (file, line) it was written at; the result's map says, for
    every key of the merged mapping, which file and line its value came from.
    """

    def subtree(where: dict[str, tuple[str, int]], key: str) -> dict[str, tuple[str, int]]:
        return {k: v for k, v in where.items() if k == key or k.startswith(key + ".")}

    out: dict = {}
    where: dict[str, tuple[str, int]] = {}
    for k, v in base.items():
        if k not in child:
            out[k] = v
            where.update(subtree(base_where, prefix + str(k)))
    for k, v in child.items():
        key = prefix + str(k)
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            if key in child_where:
                where[key] = child_where[key]
            out[k], inner = _merge_bases(base[k], v, key + ".", base_where, child_where)
            where.update(inner)
        else:
            out[k] = v
            where.update(subtree(child_where, key))
    return out, where


def load_merged(path: str | Path) -> Any:
    """A YAML config with its ``base:`` chain merged, not built or checked (to read a key before building)."""
    return _load_with_bases(Path(path), [Path(path)])[0]


def _load_with_bases(path: Path, chain: list[Path]) -> tuple[Any, dict[str, tuple[str, int]]]:
    """A YAML file with its ``base:`` chain resolved: the data and the (file, line) of every dotted key."""
    data, lines = load_yaml(path)
    where = {k: (str(path), line) for k, line in lines.items()}
    if not isinstance(data, dict) or BASE_KEY not in data:
        return data, where
    ref = data.pop(BASE_KEY)
    line = lines.get(BASE_KEY)
    where = {k: v for k, v in where.items() if k != BASE_KEY and not k.startswith(BASE_KEY + ".")}
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(
            f"must be the path of a YAML file, relative to this one; got {ref!r}",
            path=path,
            line=line,
            field=BASE_KEY,
        )
    base_path = path.parent / ref
    if not base_path.is_file():
        raise ConfigError(
            f"base config '{ref}' not found", path=path, line=line, field=BASE_KEY, hint=f"looked for {base_path}"
        )
    seen = [p.resolve() for p in chain]
    if base_path.resolve() in seen:
        cycle = " -> ".join(str(p) for p in [*chain[seen.index(base_path.resolve()) :], base_path])
        raise ConfigError(f"base configs form a cycle: {cycle}", path=path, line=line, field=BASE_KEY)
    base, base_where = _load_with_bases(base_path, [*chain, base_path])
    if base is None:
        base = {}
    if not isinstance(base, dict):
        raise ConfigError("a base config must be a mapping of keys", path=base_path, line=1)
    return _merge_bases(base, data, "", base_where, where)


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Load a dataclass config from an optional YAML file and ``--key=value`` overrides.

    A file may start from another: ``base: other.yaml`` (a path relative to the file) deep-merges
    that file's mapping under this one's keys. This file wins; nested mappings merge key by key;
    lists and scalars are replaced whole; a base may have a base of its own (a cycle is an error).
    Every error names the file and line where the offending key was written, base or child.
    """
    if not path:
        data, where = {}, {}
    else:
        data, where = _load_with_bases(Path(path), [Path(path)])
    lines = {k: line for k, (_, line) in where.items()}
    try:
        return build_config(
            cls, data or {}, path=str(path) if path else None, lines=lines, overrides=parse_overrides(overrides or [])
        )
    except ConfigError as err:
        for p in err.problems:
            # build_config names the top file; a key inherited from a base was written in the base
            if path and p.path == str(path) and p.field in where:
                p.path = where[p.field][0]
        raise ConfigError(problems=err.problems) from None


def to_dict(cfg) -> dict:
    """A config as plain data (for the resolved-config file in a run directory)."""

    def conv(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return {k: conv(v) for k, v in dataclasses.asdict(cfg).items()}
