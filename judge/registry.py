"""The judge registry: a directory of judge versions, which one serves production, and its history.

Layout (``$JUDGELOOP_REGISTRY``, else ``runs/registry`` under the working directory)::

    NAME/versions.json                   every version's entry, the production version, the history
    NAME/VERSION/validation-SHA12.json   copies of the validation results attached to a version

This module is the store: records, their locking and history, and ``resolve`` (what serving
loads). Which validation may promote a version is decided above it, in workflows/promotion.py:
a version is promoted only if one of its attached validation results carries a passing gate
for exactly the version's fingerprint. Attaching seals what was gated: the sha256 of the stored
copy and of the gate config its gate applied are kept in the version entry, and promotion
re-verifies both (a copy changed after attaching never counts). Registries written before
``versions.json`` kept the record in ``NAME/judge.json`` (the same name as a judge directory's
file); they are renamed on first read.

Registration order is the order of ``versions`` in the record (entries are only ever appended,
and the record is written back in order); each entry's ``seq`` states it too. ``registered``
has one-second resolution, so two versions registered within a second would tie on it:
``latest`` and the trend never order by it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

from data.errors import JudgeloopError, UnknownNameError
from data.provenance import sha256_file

STATUSES = ("candidate", "production", "retired")
RECORD_FILE = "versions.json"
LEGACY_RECORD_FILE = "judge.json"
ENV = "JUDGELOOP_REGISTRY"


class RegistryError(JudgeloopError):
    """A registry operation is not allowed (no passing gate, nothing to roll back, duplicate version)."""


def registry_root(path: str | Path | None = None) -> Path:
    """``path``, else ``$JUDGELOOP_REGISTRY``, else ``runs/registry``."""
    return Path(path or os.environ.get(ENV) or "runs/registry")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _read_record(path: Path) -> dict:
    """A judge's record, or a located error when the file was damaged (it is never rewritten then)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(
            f"not a readable registry record ({exc})",
            path=str(path),
            hint="restore it from a backup; the registry does not rewrite a damaged record",
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("versions"), dict):
        raise RegistryError("not a registry record (no 'versions' mapping)", path=str(path), field="versions")
    return record


class Registry:
    def __init__(self, root: str | Path | None = None):
        self.root = registry_root(root)

    # --- storage ----------------------------------------------------------------------------------
    def _file(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name.startswith("."):  # never a path out of the registry
            raise RegistryError(f"'{name}' is not a usable judge name", field="name")
        path = self.root / name / RECORD_FILE
        legacy = self.root / name / LEGACY_RECORD_FILE
        if not path.exists() and legacy.exists() and "versions" in legacy.read_text(encoding="utf-8"):
            legacy.replace(path)  # a registry written before the record had its own name
        return path

    def names(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(
            {
                p.parent.name
                for pattern in (RECORD_FILE, LEGACY_RECORD_FILE)
                for p in self.root.glob(f"*/{pattern}")
                if self._file(p.parent.name).exists()
            }
        )

    def load(self, name: str) -> dict:
        path = self._file(name)
        if not path.exists():
            raise UnknownNameError("judge", name, self.names(), path=str(self.root))
        return _read_record(path)

    @contextlib.contextmanager
    def _edit(self, name: str, create: bool = False):
        """Load, modify and atomically save one judge's record under an exclusive lock."""
        folder = self.root / name
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        elif not self._file(name).exists():
            raise UnknownNameError("judge", name, self.names(), path=str(self.root))
        with open(folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self._file(name)
            record = (
                _read_record(path)
                if path.exists()
                else {"name": name, "production": None, "versions": {}, "history": []}
            )
            yield record
            tmp = path.with_name(f"{RECORD_FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(tmp, path)

    @staticmethod
    def in_registration_order(record: dict) -> list[dict]:
        """A record's versions, first registered first (records without ``seq``: their order in the file)."""
        entries = list(record["versions"].values())
        return [e for _, e in sorted(enumerate(entries), key=lambda ie: (ie[1].get("seq", ie[0]), ie[0]))]

    @staticmethod
    def _version(record: dict, version: str) -> dict:
        if version not in record["versions"]:
            raise UnknownNameError(f"version of judge '{record['name']}'", version, record["versions"])
        return record["versions"][version]

    @staticmethod
    def _event(record: dict, entry: dict | None, action: str, **detail) -> None:
        event = {"time": _now(), "action": action, **({"version": entry["version"]} if entry else {}), **detail}
        record["history"].append(event)
        if entry is not None:
            entry["history"].append(event)

    # --- operations -------------------------------------------------------------------------------
    def register(
        self,
        name: str,
        version: str,
        fingerprint: str,
        model: str,
        adapter: str | None = None,
        spec: str | None = None,
        card: str | None = None,
    ) -> dict:
        """Add a candidate version."""
        if not name or "/" in name or name.startswith("."):
            raise RegistryError(f"'{name}' is not a usable judge name", field="name")
        if not version or "/" in version or version.startswith("."):
            raise RegistryError(f"'{version}' is not a usable version", field="version")
        with self._edit(name, create=True) as record:
            if version in record["versions"]:
                raise RegistryError(
                    f"judge '{name}' already has version '{version}'",
                    field="version",
                    hint="versions are immutable: register a new version",
                )
            entry = {
                "name": name,
                "version": version,
                "fingerprint": fingerprint,
                "model": model,
                "adapter": adapter,
                "spec": spec,
                "card": card,
                "card_sha256": sha256_file(card) if card and Path(card).is_file() else None,
                "status": "candidate",
                "registered": _now(),
                "seq": 1 + max((e.get("seq", i) for i, e in enumerate(record["versions"].values())), default=-1),
                "validations": [],
                "history": [],
            }
            record["versions"][version] = entry
            self._event(record, entry, "register", fingerprint=fingerprint)
        return entry

    def attach(
        self,
        name: str,
        version: str,
        validation: str | Path,
        summary: dict,
        *,
        content: bytes | None = None,
        gate_config_sha256: str | None = None,
    ) -> dict:
        """Copy a validation result into the version's folder and record ``summary`` (its headline
        figures and gate, read by workflows/promotion.py) beside the seal of what was gated: the
        copy's sha256 and ``gate_config_sha256`` (the hash of the gate config its gate applied, null
        when it is not gated). ``content``: the file's bytes as the caller read and checked them (the
        copy is of those bytes, not of the file read again)."""
        data = Path(validation).read_bytes() if content is None else content
        digest = hashlib.sha256(data).hexdigest()
        with self._edit(name) as record:
            entry = self._version(record, version)
            dest = self.root / name / version / f"validation-{digest[:12]}.json"
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, dest)
            info = {
                "file": str(dest.relative_to(self.root)),
                "sha256": digest,
                "gate_config_sha256": gate_config_sha256,
                "attached": _now(),
                "source": str(validation),
                **summary,
            }
            entry["validations"] = [v for v in entry["validations"] if v["sha256"] != digest] + [info]
            self._event(record, entry, "attach", validation=info["file"], gate_passed=info.get("gate_passed"))
        return entry

    def link(self, name: str, version: str, **links: str) -> dict:
        """Records where else a version is tracked (``mlflow_run_id=...``): kept in its ``links``, with an event."""
        with self._edit(name) as record:
            entry = self._version(record, version)
            entry["links"] = {**entry.get("links", {}), **{k: str(v) for k, v in links.items()}}
            self._event(record, entry, "link", **links)
        return entry

    def attached(self, entry: dict) -> list[tuple[dict, Path]]:
        """A version's attached validations, newest first, whose stored copy is unchanged since attaching."""
        out = []
        for info in reversed(entry["validations"]):
            path = self.root / info["file"]
            if path.exists() and sha256_file(path) == info["sha256"]:
                out.append((info, path))  # a copy changed or removed after it was attached does not count
        return out

    def promote(self, name: str, version: str, validation: dict, overrides: dict | None = None) -> dict:
        """Make a version production on the strength of one attached ``validation`` (checked by the
        caller); the previous production version is retired. ``overrides`` (what the caller let pass
        and the reason given) are recorded in the promote event of the history."""
        with self._edit(name) as record:
            entry = self._version(record, version)
            if record["production"] == version:
                raise RegistryError(f"{name} {version} is already production")
            previous = record["production"]
            if previous:
                record["versions"][previous]["status"] = "retired"
                self._event(record, record["versions"][previous], "retire", replaced_by=version)
            entry["status"] = "production"
            record["production"] = version
            self._event(
                record,
                entry,
                "promote",
                previous=previous,
                validation=validation["file"],
                fingerprint=entry["fingerprint"],
                **(overrides or {}),
            )
        return entry

    def rollback(self, name: str) -> dict:
        """Return production to the version that served before the current one."""
        with self._edit(name) as record:
            current = record["production"]
            if current is None:
                raise RegistryError(f"judge '{name}' has no production version to roll back")
            # replay the history as a stack of production versions: promote pushes, rollback pops
            stack: list[str] = []
            for event in record["history"]:
                if event["action"] == "promote":
                    stack.append(event["version"])
                elif event["action"] == "rollback" and stack:
                    stack.pop()
            earlier = [v for v in reversed(stack[:-1]) if v != current]
            if not earlier:
                raise RegistryError(
                    f"{name} {current} is the first production version: nothing to roll back to",
                    hint="promote another version that passed its gate",
                )
            target = record["versions"][earlier[0]]
            record["versions"][current]["status"] = "retired"
            self._event(record, record["versions"][current], "rollback", to=target["version"])
            target["status"] = "production"
            record["production"] = target["version"]
            self._event(record, target, "restore", replaced=current)
        return target

    def resolve(self, name: str, ref: str = "production") -> dict:
        """The entry for ``production``, ``latest`` (newest registered) or an explicit version."""
        record = self.load(name)
        if ref == "production":
            if record["production"] is None:
                raise RegistryError(
                    f"judge '{name}' has no production version", hint=f"promote one: judgeloop promote {name} VERSION"
                )
            return record["versions"][record["production"]]
        if ref == "latest":
            if not record["versions"]:
                raise RegistryError(f"judge '{name}' has no versions", hint="register one: judgeloop registry register")
            return self.in_registration_order(record)[-1]
        return self._version(record, ref)

    def find_fingerprint(self, fingerprint: str) -> dict | None:
        """The registered version with this fingerprint, if any (to name a version in a result)."""
        for name in self.names():
            for entry in self.load(name)["versions"].values():
                if entry["fingerprint"] == fingerprint:
                    return entry
        return None

    def history(self, name: str) -> list[dict]:
        return self.load(name)["history"]

    def trend(self, name: str) -> list[dict]:
        """Each version's newest attached result, in registration order (for the report's trend plot)."""
        out = []
        for entry in self.in_registration_order(self.load(name)):
            if entry["validations"]:
                v = entry["validations"][-1]
                out.append(
                    {
                        "version": entry["version"],
                        "status": entry["status"],
                        "registered": entry["registered"],
                        "fingerprint": entry["fingerprint"],
                        "metric": v["metric"],
                        "value": v["value"],
                        "ci_low": v["ci_low"],
                        "ci_high": v["ci_high"],
                        "dataset": v["dataset"],
                    }
                )
        return out


def resolve(name: str, ref: str = "production", root: str | Path | None = None) -> dict:
    """The registry entry serving should load: ``resolve("helpful")`` is the production version."""
    return Registry(root).resolve(name, ref)
