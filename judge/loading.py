"""A judge: a spec, the model that answers it (base, base + LoRA adapter, or merged) and its fingerprint.

A judge directory (written by `judgeloop train` and `judgeloop merge`) holds ``judge.json``:
``{"name", "version", "spec": {...}, "base_model", "adapter": "adapter" | null, "fingerprint", ...}``
with paths relative to the directory. A spec name or file alone means the untuned base model.
``registry:NAME`` is the production version of NAME in the judge registry (``registry:NAME@VERSION``
a given version), so serving configs resolve "production" through the registry.

A judge directory is checked as it loads (so registry resolution, serving, merging and validation
all get a judge whose files are the ones its fingerprint names):

- its adapter must lie inside the directory, and its base model inside the directory, in the
  embedded/cached models (judgeloop's cache, the Hugging Face cache: a hub id) or under a directory
  declared trusted in ``$JUDGELOOP_TRUSTED_MODELS`` (``os.pathsep``-separated);
- its weights must be the ones fingerprinted (``verify_weights``): the fingerprint is recomputed from
  the files (a merged judge, which carries its adapter judge's fingerprint, is checked against the
  ``weights_sha256`` recorded at merge). File hashes are cached by path, size and mtime, so an unchanged
  judge costs a stat per weight file. Measured on the embedded SmolLM2-135M (538 MB of safetensors, 2
  CPU cores, file in the page cache): the first check hashes it in 0.65-0.9 s (about 1.5 s per GB; a
  7B model's 15 GB take ~25 s, once), each later check 0.4 ms (``load_judge`` as a whole ~8 ms, most
  of it validating the spec).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from data.embedded_model import resolve_model
from data.errors import ConfigError, ModelError
from data.paths import JUDGE_FILE, cache_dir
from data.render import VERDICT_TOKENS, prompt_budget
from data.schema import JudgeRef
from data.spec import JudgeSpec, load_spec, spec_from_dict
from judge.fingerprint import fingerprint, weights_hashes
from judge.registry import resolve

TRUSTED_MODELS_ENV = "JUDGELOOP_TRUSTED_MODELS"


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
    """The tokenizer of the first of ``paths`` that has one, ready for the renderer: it has a pad token (the eos
    token if it has none). A spec with ``prompt_format: chat`` needs its chat template; the renderer says so."""
    from transformers import AutoTokenizer  # deferred: transformers takes seconds to import

    problems = []
    for path in filter(None, paths):
        try:
            tok = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
            continue
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok
    raise ModelError(
        f"cannot load a tokenizer ({'; '.join(problems) or 'no path'})",
        path=next(filter(None, reversed(paths)), None),
        field="base_model",
    )


CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def model_context(model_path: str) -> int | None:
    """The model's context length in tokens (its ``config.json``; a multimodal model's text config), or
    None where the directory does not say."""
    try:
        config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for cfg in (config, config.get("text_config") or {}):
        for key in CONTEXT_KEYS:
            value = cfg.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def budgeted(judge: Judge, max_model_len: int | None = None, reserve: int = VERDICT_TOKENS) -> Judge:
    """The judge with its prompt budget resolved for an engine (``data.render.prompt_budget``): the spec's
    own, else the model's context capped by the engine's ``max_model_len``, less the ``reserve`` generated
    tokens. The fingerprint is the judge's (a spec without a budget fingerprints as such)."""
    context = min(filter(None, (model_context(judge.model_path), max_model_len)), default=None)
    budget = prompt_budget(judge.spec, context, reserve)
    if budget == judge.spec.max_prompt_tokens:
        return judge
    return dataclasses.replace(judge, spec=dataclasses.replace(judge.spec, max_prompt_tokens=budget))


def base_judge(spec: JudgeSpec, model: str | None = None) -> Judge:
    """The untuned base model answering a spec (the usual incumbent before any training)."""
    path = resolve_model(model or spec.base_model)
    return Judge(spec, path, None, fingerprint(spec, path), version="base")


REGISTRY_PREFIX = "registry:"
REVALIDATE = "the judge's files changed after it was fingerprinted: restore them, or re-validate and re-register it"
MOVED_ALIAS = "embedded"
MOVED_ALIAS_HINT = (
    "'embedded' names gemma3-270m since 2026-12-06 (smollm2-135m-instruct before): a judge trained on the old "
    'default loads with `"base_model": "smollm2-135m-instruct"` in its judge.json (the fingerprint checks it)'
)


def trusted_model_roots() -> list[Path]:
    """Where a judge directory's base model may live outside the directory: judgeloop's model cache (the
    embedded model), the Hugging Face hub cache, and each directory in ``$JUDGELOOP_TRUSTED_MODELS``."""
    hf_home = os.environ.get("HF_HOME") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    )
    roots = [cache_dir() / "models", Path(os.environ.get("HF_HUB_CACHE") or Path(hf_home) / "hub")]
    return roots + [Path(p) for p in os.environ.get(TRUSTED_MODELS_ENV, "").split(os.pathsep) if p]


def _base_model_path(directory: Path, base: str, judge_file: Path) -> str:
    """What a judge directory's ``base_model`` loads: a path inside the directory, the embedded model or a
    hub id (both in the caches), or a path under a trusted root; anything else is refused."""
    inside = directory / base
    try:
        path = inside if inside.exists() else Path(resolve_model(base))  # the embedded name -> its cached copy
    except ModelError as exc:
        if base != MOVED_ALIAS:
            raise
        raise ModelError(
            exc.first.message, path=str(judge_file), field="base_model", hint=f"{exc.first.hint}; {MOVED_ALIAS_HINT}"
        ) from None
    if not path.exists():
        if Path(base).is_absolute() or base.startswith("."):
            raise ModelError(f"the judge's base model '{base}' is missing", path=str(judge_file), field="base_model")
        return str(path)  # a hub id: loaded from the Hugging Face cache (fingerprinted over its snapshot's files)
    real = path.resolve()
    if not any(real.is_relative_to(root.resolve()) for root in [directory, *trusted_model_roots()]):
        raise ModelError(
            f"the judge's base model '{base}' is outside its judge directory and the model caches",
            path=str(judge_file),
            field="base_model",
            hint=f"declare its location trusted ({TRUSTED_MODELS_ENV}={real.parent}), "
            "or keep the model inside the judge directory",
        )
    return str(path)


def verify_weights(judge: Judge, meta: dict, judge_file: Path) -> None:
    """Refuse a judge directory whose weights are not the ones its fingerprint was computed from (weights
    swapped under a validated fingerprint). A merged judge is checked against ``weights_sha256`` (its
    fingerprint is its adapter judge's); any other against its fingerprint recomputed from its files."""
    recorded = meta.get("weights_sha256")
    if isinstance(recorded, dict) and judge.adapter_path is None:
        current = weights_hashes(judge.model_path)
        changed = sorted(name for name in recorded.keys() | current.keys() if recorded.get(name) != current.get(name))
        if changed:
            raise ModelError(
                f"the merged weights are not the ones recorded at merge ({', '.join(changed)}), so fingerprint "
                f"{judge.fingerprint[:16]} does not describe them",
                path=str(judge_file),
                field="fingerprint",
                hint=REVALIDATE,
            )
        return
    found = fingerprint(judge.spec, judge.model_path, judge.adapter_path)
    if found != judge.fingerprint:
        moved = meta.get("base_model") == MOVED_ALIAS
        raise ModelError(
            f"the judge's files give fingerprint {found[:16]}, not the {str(judge.fingerprint)[:16]} it carries",
            path=str(judge_file),
            field="base_model" if moved else "fingerprint",
            hint=MOVED_ALIAS_HINT if moved else REVALIDATE,
        )


def _unique_keys(pairs: list[tuple]) -> dict:
    """A JSON object whose keys are all different (json keeps the last of a repeated key silently)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"the key '{twice}' is given twice")
    return out


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
            meta = json.loads((p / JUDGE_FILE).read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
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
        try:
            spec = spec_from_dict(meta["spec"])
        except ConfigError as exc:  # name the file the spec came from (an unsafe template, a bad field)
            for problem in exc.problems:
                problem.path = problem.path or str(p / JUDGE_FILE)
                problem.field = f"spec.{problem.field}" if problem.field else "spec"
            raise ConfigError(problems=exc.problems) from None
        base_path = _base_model_path(p, str(meta["base_model"]), p / JUDGE_FILE)
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
        judge = Judge(spec, base_path, adapter, meta["fingerprint"], str(meta.get("version", "1")), p)
        verify_weights(judge, meta, p / JUDGE_FILE)
        return judge
    if p.is_dir():
        raise ModelError(
            f"not a judge directory (no {JUDGE_FILE})",
            path=str(p),
            hint="pass a run directory from `judgeloop train`, or a judge spec name",
        )
    return base_judge(load_spec(ref), model)
