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
    monkeypatch.setenv("JL_TEST_KEY", "s3cret-0123456789abcdef")
    assert cfg.api.api_key() == "s3cret-0123456789abcdef"
    assert load_serve_config(None, ["--api.no_auth_on_loopback=true"]).api.api_key() is None


@pytest.mark.parametrize("key", ["Q", "s3cret", "x" * 15])
def test_a_short_api_key_is_refused_with_how_to_make_one(monkeypatch, key):
    cfg = load_serve_config(None, ["--api.api_key_env=JL_TEST_KEY"])
    monkeypatch.setenv("JL_TEST_KEY", key)
    with pytest.raises(ConfigError) as err:
        cfg.api.api_key()
    problem = err.value.first
    assert problem.field == "api.api_key_env" and f"is {len(key)} character(s)" in problem.message
    assert "at least 16" in problem.message and key not in str(err.value)  # the key itself is never shown
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in problem.hint
    monkeypatch.setenv("JL_TEST_KEY", "x" * 16)
    assert cfg.api.api_key() == "x" * 16


def test_allowed_hosts_are_host_names():
    assert load_serve_config(None, ["--api.allowed_hosts=[judge.internal,10.0.0.5]"]).api.allowed_hosts == [
        "judge.internal",
        "10.0.0.5",
    ]
    with pytest.raises(ConfigError, match="'http://x/' is not a host name") as err:
        load_serve_config(None, ["--api.allowed_hosts=[http://x/]"])
    assert err.value.first.field == "api.allowed_hosts"
