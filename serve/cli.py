"""`judgeloop serve [CONFIG] [--key=value ...]` and `judgeloop score --judge NAME --in ITEMS --out VERDICTS`.

The implementations are imported when a command runs, not here: judgeloop builds the whole parser
tree on every call (``judgeloop --help`` too), and serving imports FastAPI, uvicorn, torch... (seconds).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal

from data.cli_base import add_command
from data.errors import ConfigError, ServerError

log = logging.getLogger("judgeloop")


def serve_fields() -> dict[str, str]:
    from data.config import field_help  # deferred: module docstring
    from serve.config import ServeConfig

    return field_help(ServeConfig)


def cmd_serve(args) -> int:
    from serve.config import load_serve_config  # deferred: module docstring

    cfg = load_serve_config(args.config, args.overrides)
    run_serve(cfg, quiet=args.quiet)
    return 0


def run_serve(cfg, quiet: bool = False) -> None:
    """Start vLLM (or the in-process engine), then the judge API; stop both on SIGINT/SIGTERM."""
    import uvicorn  # deferred: uvicorn takes seconds to import; only this path needs it

    from serve.api import create_app  # deferred: module docstring
    from serve.launcher import check_port_free
    from serve.service import start_judges

    api_key = cfg.api.api_key()  # fail before spending a minute on vLLM
    check_port_free(cfg.api.port, cfg.api.host, field="api.port")
    serving = live = None
    try:
        with sigterm_as_interrupt():
            serving = start_judges(cfg, progress=log.info)
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
                    log_level="warning" if quiet else "info",
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
            log.info("stopping vLLM ...")
            serving.close()
    log.info("judgeloop serve: stopped")


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


def cmd_score(args) -> int:
    from data.jsonl import iter_json_lines  # deferred: module docstring

    if not args.judge and not args.endpoint:
        raise ConfigError("give --judge NAME|DIR, or --endpoint URL of a judge API")
    if args.batch_size < 1:
        raise ConfigError("must be at least 1", field="--batch-size")
    if args.endpoint and (args.overrides or args.serve_config):
        raise ConfigError(
            "a serve config and its --key=value fields set up a local engine: not used with --endpoint",
            field=args.overrides[0] if args.overrides else "--serve-config",
        )

    next(iter(iter_json_lines(args.in_path)), None)  # a missing or empty input fails now, not after startup
    both = not args.one_order
    from judge.loading import load_judge  # deferred: module docstring
    from serve.batch import check_output_judge, claim_output

    # the output is checked before any model loads: a directory, another run writing it (a lock held to the
    # end), or another judge's verdicts in it (the judge's fingerprint needs its files, not its model)
    with claim_output(args.out_path):
        if args.endpoint:
            summary = _score_via_api(args, both)
        else:
            from serve.config import load_serve_config  # deferred: module docstring

            cfg = load_serve_config(args.serve_config, args.overrides)
            check_output_judge(args.out_path, load_judge(args.judge).ref)
            summary = _score_locally(args, cfg, both)
    print(summary.text())
    return 0


def _score_locally(args, cfg, both: bool):
    from serve.batch import score_file  # deferred: module docstring
    from serve.service import start_judges

    with (
        sigterm_as_interrupt(),
        start_judges(cfg, judges=[args.judge], candidates=[], progress=log.info) as serving,
    ):
        (service,) = serving.services.values()
        log.info(f"judge {service.key} (fingerprint {service.ref.fingerprint[:16]}, {service.served.served_as})")
        return score_file(
            args.in_path,
            args.out_path,
            lambda batch: list(service.score_stream(batch, both, batch_size=len(batch))),
            service.ref,
            batch_size=args.batch_size,
            progress=not args.quiet,
        )


def _score_via_api(args, both: bool):
    from data.schema import JudgeRef  # deferred: module docstring
    from serve.batch import check_output_judge, score_file
    from serve.client import JudgeClient

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
            progress=not args.quiet,
        )


def add_commands(commands) -> None:
    serve = add_command(
        commands,
        "serve",
        help="serve judges with vLLM and the judge API",
        description="Start vLLM for the configured judges, then the judge API; Ctrl-C or SIGTERM stops both. "
        "The API key is read from the variable api.api_key_env names (JUDGELOOP_API_KEY).",
        example="JUDGELOOP_API_KEY=... judgeloop serve configs/serve/cpu.yaml --api.port=9000",
        run=cmd_serve,
        overrides=True,
        config_help=serve_fields,
    )
    serve.add_argument("config", nargs="?", metavar="CONFIG", help="serve config YAML (default configs/serve/cpu.yaml)")

    score = add_command(
        commands,
        "score",
        help="score an item file (batch, resumable)",
        description="Score an item JSONL file into a verdict JSONL file (append-only; a rerun resumes where the "
        "last one stopped), on a local engine set up by a serve config (--key=value: its fields) or "
        "through a running judge API (--endpoint).",
        example="judgeloop score --judge helpfulness-pairwise --in items.jsonl --out verdicts.jsonl \\\n"
        "    --engine=transformers",
        run=cmd_score,
        overrides=True,
        config_help=serve_fields,
    )
    score.add_argument("--judge", help="judge: spec name or judge directory; with --endpoint, its name on the API")
    score.add_argument("--endpoint", help="URL of a running judge API (`judgeloop serve`) to score through")
    score.add_argument("--in", dest="in_path", required=True, metavar="ITEMS", help="items JSONL")
    score.add_argument(
        "--out", dest="out_path", required=True, metavar="VERDICTS", help="verdicts JSONL (appended to; resumable)"
    )
    score.add_argument(
        "--serve-config", metavar="CONFIG", help="serve config for the engine settings (default configs/serve/cpu.yaml)"
    )
    score.add_argument("--batch-size", type=int, default=64, help="items per batch (default 64)")
    score.add_argument("--one-order", action="store_true", help="pairwise: score only the given order")
    score.add_argument(
        "--api-key-env", default="JUDGELOOP_API_KEY", help="with --endpoint: env var holding the API key"
    )
