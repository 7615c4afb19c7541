"""The serve config: shipped files load, every mistake is reported with its field."""

import pytest

from data.errors import ConfigError
from serve.config import SERVE_CONFIGS, load_serve_config


@pytest.mark.parametrize("name", ["cpu.yaml", "gpu.yaml"])
def test_shipped_configs_load(name):
    cfg = load_serve_config(SERVE_CONFIGS / name)
    assert cfg.judges and cfg.vllm.device == name.removesuffix(".yaml")


def test_default_is_the_cpu_config():
    assert load_serve_config().vllm.device == "cpu"


def test_all_problems_at_once_with_fields():
    with pytest.raises(ConfigError) as err:
        load_serve_config(
            None, ["--vllm.port=0", "--client.concurrency=0", "--api.host=0.0.0.0", "--api.no_auth_on_loopback=true"]
        )
    fields = {p.field for p in err.value.problems}
    assert {"vllm.port", "client.concurrency", "api.no_auth_on_loopback"} <= fields


def test_unknown_key_suggests(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_serve_config(None, ["--vllm.dtypo=float32"])
    assert "did you mean 'vllm.dtype'" in str(err.value)


def test_yaml_errors_name_the_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("judges: [a]\nvllm:\n  replicas: many\n")
    with pytest.raises(ConfigError) as err:
        load_serve_config(path)
    assert f"{path}:3" in str(err.value) and "vllm.replicas" in str(err.value)


def test_api_key_comes_from_the_environment(monkeypatch):
    cfg = load_serve_config(None, ["--api.api_key_env=JL_TEST_KEY"])
    monkeypatch.delenv("JL_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="JL_TEST_KEY"):
        cfg.api.api_key()
    monkeypatch.setenv("JL_TEST_KEY", "s3cret")
    assert cfg.api.api_key() == "s3cret"
    assert load_serve_config(None, ["--api.no_auth_on_loopback=true"]).api.api_key() is None
