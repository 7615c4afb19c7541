"""Serving resolves judges through the registry: registry:NAME is production, registry:NAME@V a version."""

import json

import pytest

from data.errors import JudgeloopError, ModelError
from data.spec import load_spec
from judge.fingerprint import fingerprint
from judge.loading import load_judge
from judge.registry import Registry
from tests.tiny_model import save_tiny_model


def test_registry_reference_loads_the_registered_files(tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGELOOP_REGISTRY", str(tmp_path / "registry"))
    spec = load_spec("helpfulness-pairwise")
    judge_dir = save_tiny_model(tmp_path / "judge")
    fp = fingerprint(spec, judge_dir)
    (judge_dir / "judge.json").write_text(
        json.dumps(
            {
                "name": spec.name,
                "version": "x",
                "spec": spec.to_dict(),
                "base_model": ".",
                "adapter": None,
                "fingerprint": fp,
            }
        )
    )
    Registry().register(spec.name, "7", fp, str(judge_dir), spec=spec.name)
    judge = load_judge(f"registry:{spec.name}@7")
    assert (judge.fingerprint, judge.version, judge.model_path) == (fp, "7", str(judge_dir / "."))
    with pytest.raises(JudgeloopError, match="no production version"):
        load_judge(f"registry:{spec.name}")
    Registry().register(spec.name, "8", "0" * 64, str(judge_dir), spec=spec.name)
    with pytest.raises(ModelError, match="files changed after registration"):
        load_judge(f"registry:{spec.name}@8")
