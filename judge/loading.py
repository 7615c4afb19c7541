"""A judge: a spec, the model that answers it (base, base + LoRA adapter, or merged) and its fingerprint.

A judge directory (written by `judgeloop train` and `judgeloop merge`) holds ``judge.json``:
``{"name", "version", "spec": {...}, "base_model", "adapter": "adapter" | null, "fingerprint", ...}``
with paths relative to the directory. A spec name or file alone means the untuned base model.
``registry:NAME`` is the production version of NAME in the judge registry (``registry:NAME@VERSION``
a given version), so serving configs resolve "production" through the registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from data.embedded_model import resolve_model
from data.errors import ModelError
from data.paths import JUDGE_FILE
from data.schema import JudgeRef
from data.spec import JudgeSpec, load_spec, spec_from_dict
from judge.fingerprint import fingerprint
from judge.registry import resolve


@dataclass
class Judge:
    spec: JudgeSpec
    model_path: str
    adapter_path: str | None
    fingerprint: str
    version: str = "base"
    directory: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ref(self) -> JudgeRef:
        return JudgeRef(name=self.spec.name, fingerprint=self.fingerprint)

    def tokenizer(self):
        """The tokenizer the judge was trained with: the adapter's if it saved one, else the model's."""
        return load_tokenizer(self.adapter_path, self.model_path)


def load_tokenizer(*paths: str | None):
    """The tokenizer of the first of ``paths`` that has one, ready for the renderer: it has a chat
    template (the renderer builds every prompt with it) and a pad token (the eos token if it has none)."""
    from transformers import AutoTokenizer  # deferred: transformers takes seconds to import

    problems = []
    for path in filter(None, paths):
        try:
            tok = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
            continue
        if not tok.chat_template:
            raise ModelError(
                "the base model has no chat template: use an instruct/chat model", path=path, field="base_model"
            )
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok
    raise ModelError(
        f"cannot load a tokenizer ({'; '.join(problems) or 'no path'})",
        path=next(filter(None, reversed(paths)), None),
        field="base_model",
    )


def base_judge(spec: JudgeSpec, model: str | None = None) -> Judge:
    """The untuned base model answering a spec (the usual incumbent before any training)."""
    path = resolve_model(model or spec.base_model)
    return Judge(spec, path, None, fingerprint(spec, path), version="base")


REGISTRY_PREFIX = "registry:"


def registry_judge(ref: str) -> Judge:
    """The judge a registry entry names (``registry:NAME[@VERSION]``, production by default)."""

    name, _, version = ref[len(REGISTRY_PREFIX) :].partition("@")
    entry = resolve(name, version or "production")
    for candidate in (entry.get("model"), entry.get("adapter") and str(Path(entry["adapter"]).parent)):
        if candidate and (Path(candidate) / JUDGE_FILE).exists():
            judge = load_judge(candidate)
            break
    else:
        judge = base_judge(load_spec(entry.get("spec") or name), entry["model"])
    if judge.fingerprint != entry["fingerprint"]:
        raise ModelError(
            f"registry entry {name} {entry['version']} has fingerprint {entry['fingerprint'][:16]} but "
            f"its files give {judge.fingerprint[:16]}",
            path=entry.get("model"),
            hint="the files changed after registration: register them as a new version",
        )
    judge.version = entry["version"]
    return judge


def load_judge(ref: str | Path, model: str | None = None) -> Judge:
    """A judge from a judge directory, a registry reference, or the base model for a spec name/file."""
    if str(ref).startswith(REGISTRY_PREFIX):
        return registry_judge(str(ref))
    p = Path(ref)
    if (p / JUDGE_FILE).exists():
        try:
            meta = json.loads((p / JUDGE_FILE).read_text(encoding="utf-8"))
            missing = [k for k in ("spec", "base_model", "fingerprint") if k not in meta]
        except (ValueError, TypeError) as exc:
            raise ModelError(
                f"not a readable judge file ({type(exc).__name__}: {exc})", path=str(p / JUDGE_FILE)
            ) from None
        if missing:
            raise ModelError(
                "is missing",
                path=str(p / JUDGE_FILE),
                field=missing[0],
                hint="a judge directory is written by `judgeloop train` or `judgeloop merge`",
            )
        spec = spec_from_dict(meta["spec"])
        base = meta["base_model"]
        base_path = str(p / base) if (p / base).exists() else resolve_model(base)
        adapter = str(p / meta["adapter"]) if meta.get("adapter") else None
        if adapter and not Path(adapter).resolve().is_relative_to(p.resolve()):
            # adapters load only from the judge directories the config names: no ../, absolute path or symlink out
            raise ModelError(
                f"the judge's adapter '{meta['adapter']}' is outside its judge directory",
                path=str(p / JUDGE_FILE),
                field="adapter",
                hint="keep the adapter inside the judge directory (as `judgeloop train` writes it)",
            )
        if adapter and not Path(adapter).exists():
            raise ModelError("the judge's adapter directory is missing", path=adapter)
        return Judge(spec, base_path, adapter, meta["fingerprint"], str(meta.get("version", "1")), p)
    if p.is_dir():
        raise ModelError(
            f"not a judge directory (no {JUDGE_FILE})",
            path=str(p),
            hint="pass a run directory from `judgeloop train`, or a judge spec name",
        )
    return base_judge(load_spec(ref), model)
