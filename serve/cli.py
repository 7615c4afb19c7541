"""`judgeloop serve [CONFIG] [--key=value ...]` and `judgeloop score ... --in ITEMS --out VERDICTS`."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

from data.config import field_help
from data.errors import ConfigError, ServerError
from data.jsonl import iter_json_lines
from data.schema import JudgeRef
from judge.loading import load_judge
from serve.api import create_app
from serve.batch import check_output_judge, claim_output, score_file
from serve.client import JudgeClient
from serve.config import ServeConfig, load_serve_config
from serve.launcher import check_port_free
from serve.service import start_judges


def _config_help() -> str:

    return "config keys (--key=value):\n" + "\n".join(f"  {k}: {v}" for k, v in field_help(ServeConfig).items())


def serve_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="judgeloop serve",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="start vLLM for the configured judges, then the judge API; Ctrl-C or SIGTERM stops both",
        epilog=_config_help(),
    )
    p.add_argument("config", nargs="?", help="serve config YAML (default configs/serve/cpu.yaml)")
    args, overrides = p.parse_known_args(argv)

    cfg = load_serve_config(args.config, overrides)
    run_serve(cfg)
    return 0


def run_serve(cfg) -> None:
    """Start vLLM (or the in-process engine), then the judge API; stop both on SIGINT/SIGTERM."""
    import uvicorn  # deferred: uvicorn takes seconds to import; only this path needs it

    api_key = cfg.api.api_key()  # fail before spending a minute on vLLM
    check_port_free(cfg.api.port, cfg.api.host, field="api.port")
    serving = live = None
    try:
        with sigterm_as_interrupt():
            serving = start_judges(cfg)
            if cfg.live.log:
                # deferred: SQLAlchemy (the verdict log) would add ~0.5 s to every `judgeloop serve`/`score` start
                from serve.live import start_live

                live = start_live(cfg.live, serving.services, cfg.log_dir)
            app = create_app(
                serving.services,
                api_key=api_key,
                max_body_bytes=cfg.api.max_body_bytes,
                max_batch_items=cfg.api.max_batch_items,
                verdict_logger=live.logger if live else None,
                max_concurrent_requests=cfg.api.max_concurrent_requests,
                max_queued_requests=cfg.api.max_queued_requests,
                request_timeout_s=cfg.api.request_timeout_s,
                allowed_hosts=cfg.api.allowed_hosts,
            )
            if live:
                live.register_metrics(app.state.metrics.registry)
            url = f"http://{cfg.api.host}:{cfg.api.port}"
            print(
                f"judge API on {url} (docs {url}/docs), judges: {', '.join(serving.services)}"
                + ("" if api_key else "  [no API key: loopback only]"),
                flush=True,
            )
            if live:
                shadows = ", ".join(
                    s.key for group in (live.shadow.shadows.values() if live.shadow else []) for s in group
                )
                print(
                    f"verdict log: {live.verdict_log.url}" + (f"; shadow candidates: {shadows}" if shadows else ""),
                    flush=True,
                )
            # uvicorn handles SIGINT/SIGTERM itself (graceful shutdown), then re-raises them here
            # the listen backlog holds every admitted request's connection (429s come from the app, not drops)
            backlog = max(2048, cfg.api.max_concurrent_requests + cfg.api.max_queued_requests)
            uvicorn.Server(
                uvicorn.Config(
                    app,
                    host=cfg.api.host,
                    port=cfg.api.port,
                    log_level="info",
                    timeout_graceful_shutdown=30,
                    backlog=backlog,
                )
            ).run()
    except KeyboardInterrupt:
        pass  # SIGINT or SIGTERM: stop vLLM below
    finally:
        if live is not None:
            live.close()  # writes what is still queued
        if serving is not None:
            print("stopping vLLM ...", file=sys.stderr, flush=True)
            serving.close()
    print("judgeloop serve: stopped", file=sys.stderr)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt like SIGINT, so `finally` blocks stop vLLM either way."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def score_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="judgeloop score",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="score an item JSONL file into a verdict JSONL file (append-only; "
        "a rerun resumes where the last one stopped)",
        epilog=_config_help(),
    )
    p.add_argument("--judge", help="judge: spec name or judge directory; with --endpoint, its name on the API")
    p.add_argument("--endpoint", help="URL of a running judge API (`judgeloop serve`) to score through")
    p.add_argument("--in", dest="in_path", required=True, help="items JSONL")
    p.add_argument("--out", dest="out_path", required=True, help="verdicts JSONL (appended to; resumable)")
    p.add_argument("--config", help="serve config for the vLLM settings (default configs/serve/cpu.yaml)")
    p.add_argument("--engine", choices=["vllm", "transformers"], help="override the config's engine")
    p.add_argument("--batch-size", type=int, default=64, help="items per batch (default 64)")
    p.add_argument("--one-order", action="store_true", help="pairwise: score only the given order")
    p.add_argument("--api-key-env", default="JUDGELOOP_API_KEY", help="with --endpoint: env var holding the API key")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args, overrides = p.parse_known_args(argv)
    if not args.judge and not args.endpoint:
        raise ConfigError("give --judge NAME|DIR, or --endpoint URL of a judge API")
    if args.batch_size < 1:
        raise ConfigError("must be at least 1", field="--batch-size")

    next(iter(iter_json_lines(args.in_path)), None)  # a missing or empty input fails now, not after startup
    both = not args.one_order
    # the output is checked before any model loads: a directory, another run writing it (a lock held to the
    # end), or another judge's verdicts in it (the judge's fingerprint needs its files, not its model)
    with claim_output(args.out_path):
        if args.endpoint:
            summary = _score_via_api(args, both)
        else:
            if args.engine:
                overrides = [*overrides, f"--engine={args.engine}"]
            cfg = load_serve_config(args.config, overrides)
            check_output_judge(args.out_path, load_judge(args.judge).ref)
            summary = _score_locally(args, cfg, both)
    print(summary.text())
    return 0


def _score_locally(args, cfg, both: bool):

    with (
        sigterm_as_interrupt(),
        start_judges(cfg, judges=[args.judge], candidates=[], progress=lambda m: print(m, file=sys.stderr)) as serving,
    ):
        (service,) = serving.services.values()
        print(
            f"judge {service.key} (fingerprint {service.ref.fingerprint[:16]}, {service.served.served_as})",
            file=sys.stderr,
        )
        return score_file(
            args.in_path,
            args.out_path,
            lambda batch: list(service.score_stream(batch, both, batch_size=len(batch))),
            service.ref,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )


def _score_via_api(args, both: bool):

    with JudgeClient(args.endpoint, api_key=os.environ.get(args.api_key_env)) as client:
        listed = client.judges()
        names = [j["name"] for j in listed]
        name = args.judge or (names[0] if len(names) == 1 else None)
        if name not in names:
            raise ServerError(
                f"the judge API at {args.endpoint} serves {', '.join(names) or 'no judge'}"
                + (f", not '{args.judge}'" if args.judge else ""),
                hint="pass --judge NAME",
            )
        info = next(j for j in listed if j["name"] == name)
        ref = JudgeRef(name=info["spec"], fingerprint=info["fingerprint"])
        check_output_judge(args.out_path, ref)
        return score_file(
            args.in_path,
            args.out_path,
            lambda batch: client.judge_batch(batch, name, both_orders=both),
            ref,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    if command == "serve":
        return serve_main(rest)
    if command == "score":
        return score_main(rest)
    raise SystemExit(f"serve.cli: unknown command {command!r}")
