"""A judge's weights are the ones its fingerprint names: swapped weights do not keep the validated
fingerprint (at load, registry resolve and serve start), a judge directory's base model stays inside the
directory, the model caches or a declared trusted location, and weight files with other suffixes (or named
by a shard index, or a hub id's cached snapshot) are fingerprinted, never silently ignored."""

import json
import os
import shutil
from pathlib import Path

import pytest

from data.errors import ModelError
from data.spec import load_spec
from judge.fingerprint import fingerprint, weight_files, weights_hashes, weights_identity
from judge.loading import TRUSTED_MODELS_ENV, load_judge
from judge.registry import Registry
from tests.tiny_model import save_tiny_model

SPEC = load_spec("helpfulness-pairwise")


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory) -> Path:
    """Weights of the same architecture and size, other values: what a swap puts in place."""
    return save_tiny_model(tmp_path_factory.mktemp("other"), seed=7) / "model.safetensors"


def judge_dir(path: Path, model: Path, base_model: str = ".", **extra) -> Path:
    """A judge directory whose base model is ``model`` (copied in when ``base_model`` is '.')."""
    if base_model == ".":
        shutil.copytree(model, path)
        model = path
    else:
        path.mkdir(parents=True)
    meta = {
        "name": SPEC.name,
        "version": "1",
        "spec": SPEC.to_dict(),
        "base_model": base_model,
        "adapter": None,
        "fingerprint": fingerprint(SPEC, model),
        **extra,
    }
    (path / "judge.json").write_text(json.dumps(meta))
    return path


def swap(target: Path, weights: Path) -> None:
    assert target.stat().st_size == weights.stat().st_size  # same size: only the contents tell
    shutil.copyfile(weights, target)


def assert_refused_fingerprint(err, judge_file: Path):
    problem = err.value.first
    assert (problem.path, problem.field) == (str(judge_file), "fingerprint"), problem
    assert "re-validate and re-register" in problem.hint


# ------------------------------------------------------------------ swapped weights
def test_swapped_weights_are_refused_at_load(tmp_path, tiny_model_dir, other_weights):
    d = judge_dir(tmp_path / "judge", tiny_model_dir)
    assert load_judge(d).fingerprint == fingerprint(SPEC, tiny_model_dir)
    swap(d / "model.safetensors", other_weights)
    with pytest.raises(ModelError) as err:
        load_judge(d)
    assert_refused_fingerprint(err, d / "judge.json")
    assert "give fingerprint" in err.value.first.message


def test_swapped_weights_are_refused_at_registry_resolve(tmp_path, tiny_model_dir, other_weights, monkeypatch):
    monkeypatch.setenv("JUDGELOOP_REGISTRY", str(tmp_path / "registry"))
    d = judge_dir(tmp_path / "judge", tiny_model_dir)
    Registry().register(SPEC.name, "1", fingerprint(SPEC, tiny_model_dir), str(d), spec=SPEC.name)
    assert load_judge(f"registry:{SPEC.name}@1").version == "1"
    swap(d / "model.safetensors", other_weights)
    with pytest.raises(ModelError) as err:
        load_judge(f"registry:{SPEC.name}@1")
    assert_refused_fingerprint(err, d / "judge.json")


def test_swapped_weights_are_refused_at_serve_start_before_any_model_loads(
    tmp_path, tiny_model_dir, other_weights, monkeypatch
):
    import serve.service
    from serve.config import load_serve_config
    from serve.service import start_judges

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(serve.service.HFBackend, "load", no_model)
    d = judge_dir(tmp_path / "judge", tiny_model_dir)
    swap(d / "model.safetensors", other_weights)
    cfg = load_serve_config(None, ["--engine=transformers"])
    with pytest.raises(ModelError) as err:
        start_judges(cfg, judges=[str(d)], candidates=[], progress=lambda m: None)
    assert_refused_fingerprint(err, d / "judge.json")


def test_a_merged_judge_is_checked_against_its_recorded_weights(tmp_path, tiny_model_dir, other_weights):
    """A merged judge carries its adapter judge's fingerprint; `weights_sha256` (written at merge) binds it."""
    d = judge_dir(tmp_path / "merged", tiny_model_dir, fingerprint="a" * 64, weights_sha256={})
    meta = json.loads((d / "judge.json").read_text())
    meta["weights_sha256"] = weights_hashes(d)
    (d / "judge.json").write_text(json.dumps(meta))
    assert load_judge(d).fingerprint == "a" * 64
    swap(d / "model.safetensors", other_weights)
    with pytest.raises(ModelError, match=r"model\.safetensors") as err:
        load_judge(d)
    assert_refused_fingerprint(err, d / "judge.json")
    shutil.copyfile(tiny_model_dir / "model.safetensors", d / "model.safetensors")
    assert load_judge(d).fingerprint == "a" * 64  # restored: loads again
    (d / "extra.pth").write_bytes(b"pickled tensors")  # a weight file with another suffix, added
    with pytest.raises(ModelError, match=r"extra\.pth"):
        load_judge(d)


# ------------------------------------------------------------------ where the base model may live
@pytest.fixture
def untrusted(monkeypatch):
    monkeypatch.delenv(TRUSTED_MODELS_ENV, raising=False)


def test_a_base_model_outside_the_judge_directory_is_refused_unless_trusted(tmp_path, tiny_model_dir, monkeypatch):
    outside = shutil.copytree(tiny_model_dir, tmp_path / "models" / "tiny")
    d = judge_dir(tmp_path / "judge", outside, base_model=str(outside))
    monkeypatch.delenv(TRUSTED_MODELS_ENV, raising=False)
    with pytest.raises(ModelError) as err:
        load_judge(d)
    problem = err.value.first
    assert (problem.path, problem.field) == (str(d / "judge.json"), "base_model")
    assert "outside its judge directory" in problem.message and TRUSTED_MODELS_ENV in problem.hint
    monkeypatch.setenv(TRUSTED_MODELS_ENV, os.pathsep.join(["/nonexistent", str(tmp_path / "models")]))
    assert load_judge(d).model_path == str(outside)


@pytest.mark.parametrize("how", ["relative ../", "symlink inside"])
def test_a_base_model_that_escapes_by_path_or_symlink_is_refused(tmp_path, tiny_model_dir, untrusted, how):
    outside = shutil.copytree(tiny_model_dir, tmp_path / "elsewhere")
    if how == "relative ../":
        d = judge_dir(tmp_path / "judge", outside, base_model="../elsewhere")
    else:
        d = judge_dir(tmp_path / "judge", outside, base_model="base")
        (d / "base").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ModelError, match="outside its judge directory") as err:
        load_judge(d)
    assert err.value.first.field == "base_model"


def test_a_missing_base_model_path_is_named(tmp_path, tiny_model_dir):
    d = judge_dir(tmp_path / "judge", tiny_model_dir)
    meta = json.loads((d / "judge.json").read_text())
    (d / "judge.json").write_text(json.dumps({**meta, "base_model": str(tmp_path / "gone")}))
    with pytest.raises(ModelError, match="base model .* is missing") as err:
        load_judge(d)
    assert err.value.first.field == "base_model"


def test_the_embedded_model_is_a_trusted_base(tmp_path, untrusted):
    from data import embedded_model

    if not embedded_model.is_fetched(embedded_model.SMOLLM2):
        pytest.skip("the embedded model is not fetched")
    d = tmp_path / "judge"
    d.mkdir()
    path = embedded_model.model_dir(embedded_model.SMOLLM2)
    meta = {"spec": SPEC.to_dict(), "base_model": embedded_model.SMOLLM2, "adapter": None}
    (d / "judge.json").write_text(json.dumps({**meta, "fingerprint": fingerprint(SPEC, path)}))
    assert load_judge(d).model_path == str(path)


# ------------------------------------------------------------------ which files are weights
def test_weight_files_with_other_suffixes_are_fingerprinted(tmp_path, tiny_model_dir):
    d = shutil.copytree(tiny_model_dir, tmp_path / "m")
    before = weights_identity(d)
    (d / "README.md").write_text("docs are not weights")
    (d / "notes.json").write_text("{}")
    assert weights_identity(d) == before  # tokenizer, config and doc files are not weights
    for name in ("consolidated.pth", "flax_model.msgpack", "tf_model.h5", "model.ckpt", "weights.npz"):
        (d / name).write_bytes(b"tensors")
        changed = weights_identity(d)
        assert changed != before, name
        (d / name).write_bytes(b"other tensors")
        assert weights_identity(d) != changed, name
        (d / name).unlink()
    assert weights_identity(d) == before


def test_files_a_shard_index_names_are_fingerprinted_whatever_their_suffix(tmp_path, tiny_model_dir):
    d = shutil.copytree(tiny_model_dir, tmp_path / "m")
    (d / "shard-1.data").write_bytes(b"one")
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "shard-1.data", "b": "../outside.data"}})
    )
    assert "shard-1.data" in {f.name for f in weight_files(d)}
    assert not [f for f in weight_files(d) if f.parent != d]  # a name that leaves the directory is ignored
    before = weights_identity(d)
    (d / "shard-1.data").write_bytes(b"two")
    assert weights_identity(d) != before


def test_a_hub_id_is_fingerprinted_by_its_cached_snapshot(tmp_path, tiny_model_dir, monkeypatch):
    """A hub id is not its name: the files of its snapshot in the local Hugging Face cache are hashed."""
    cache = tmp_path / "hf"
    repo = cache / "models--acme--tiny-judge"
    snapshot = repo / "snapshots" / ("c" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("c" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    identity = weights_identity("acme/tiny-judge")
    assert identity == weights_identity(tiny_model_dir)  # the same files: the same identity as a local copy
    assert weights_identity("acme/not-downloaded") == "id:acme/not-downloaded"
    (snapshot / "model.safetensors").write_bytes(b"swapped")
    assert weights_identity("acme/tiny-judge") != identity


# ------------------------------------------------------------------ the moved 'embedded' alias
def test_a_judge_on_the_embedded_alias_says_the_alias_moved(tmp_path, tiny_model_dir, other_weights, monkeypatch):
    """'embedded' named SmolLM2-135M before 2026-12-06 and names Gemma-3-270M now: a judge trained on the old
    default is refused (never silently loaded on the other model), naming base_model and what to write there,
    whether or not Gemma is fetched."""
    from data.embedded_model import GEMMA, MARKER, SMOLLM2, model_dir

    monkeypatch.setenv("JUDGELOOP_CACHE", str(tmp_path / "cache"))
    d = judge_dir(tmp_path / "judge", tiny_model_dir, base_model="embedded")
    for fetched in (False, True):
        if fetched:  # 'gemma' fetched: weights other than the ones the judge was fingerprinted on
            gemma = model_dir(GEMMA)
            shutil.copytree(tiny_model_dir, gemma)
            shutil.copyfile(other_weights, gemma / "model.safetensors")
            (gemma / MARKER).write_text("{}")
        with pytest.raises(ModelError) as err:
            load_judge(d)
        problem = err.value.first
        assert (problem.path, problem.field) == (str(d / "judge.json"), "base_model"), problem
        assert f'"base_model": "{SMOLLM2}"' in problem.hint
    # following the hint loads it: the fingerprint is over the files, not the recorded name
    smollm2 = model_dir(SMOLLM2)
    shutil.copytree(tiny_model_dir, smollm2)
    (smollm2 / MARKER).write_text("{}")
    meta = json.loads((d / "judge.json").read_text())
    (d / "judge.json").write_text(json.dumps({**meta, "base_model": SMOLLM2}))
    assert load_judge(d).model_path == str(smollm2)
