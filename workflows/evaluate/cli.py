"""`judgeloop evaluate`: evaluate systems with judges; `judgeloop evaluate history`: the recorded runs.

    judgeloop evaluate --responses R.jsonl --judge helpfulness-pairwise --baseline v1 [--labels L.jsonl]
    judgeloop evaluate --responses R.jsonl --judge J --baseline v1 --against last --system v2 --max-drop 0.02
    judgeloop evaluate --prompts P.jsonl --endpoint v1=http://host:8000/v1 --endpoint v2=URL,model=M --judge J ...
    judgeloop evaluate history [--system S]

The arguments are defined with the other workflow commands in workflows/cli.py; ``run(args) -> int`` runs
them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data.errors import JudgeloopError
from workflows.evaluate import generate as gen
from workflows.evaluate import history as hist
from workflows.evaluate.run import RunOptions, check_options, evaluate_run, load_responses, open_judges


def run(args: argparse.Namespace) -> int:
    if getattr(args, "evaluate_command", None) == "history":
        rows = hist.History(args.db).runs(args.system)
        for line in hist.listing(rows):
            print(line)
        return 0
    if args.prompts and args.responses:
        raise JudgeloopError("give either --responses or --prompts with --endpoint, not both", field="--prompts")
    if args.endpoint and not args.prompts:
        raise JudgeloopError("--endpoint generates responses to the prompts of --prompts FILE", field="--prompts")
    if args.prompts and not args.endpoint:
        raise JudgeloopError(
            "is required with --prompts: NAME=URL[,model=M][,key_env=VAR] for each system", field="--endpoint"
        )
    if not args.responses and not args.prompts:
        raise JudgeloopError("is required (or --prompts with --endpoint)", field="--responses")
    if not args.judge:
        raise JudgeloopError("is required (a spec name or a judge directory)", field="--judge")
    if args.n_boot < 100:
        raise JudgeloopError("must be at least 100", field="--n-boot")
    if args.against:
        hist.History(args.db).get(args.against)  # a bad RUN fails before anything is scored
    opts = RunOptions(
        baseline=args.baseline,
        all_pairs=args.all_pairs,
        labels=args.labels or None,
        label_sample=args.label_sample,
        soft=args.judge_score == "soft",
        seed=args.seed,
        n_boot=args.n_boot,
        command=args.command_line,
        registry=args.registry,
    )
    if args.prompts:
        endpoints = gen.parse_endpoints(args.endpoint, max_tokens=args.max_tokens, temperature=args.temperature)
        gen.load_prompts(args.prompts)  # a bad prompts file fails before any request
        args.responses = str(gen.generate_responses(args.prompts, endpoints, args.out, concurrency=args.concurrency))
    resp = load_responses(args.responses)  # bad responses or baseline fail before a judge is started
    if opts.baseline is not None:
        check_options(resp, opts, [])
    with open_judges(args.judge, args.engine, args.serve_config) as judges:
        evaluation, datas = evaluate_run(resp, judges, args.out, opts, progress=sys.stderr.isatty())
    return finish(evaluation, datas, args)


def finish(evaluation, datas, args) -> int:
    """Report, record, compare: what follows evaluation.json (shared by tests that score with fakes)."""
    out = Path(args.out)
    args.outputs = [str(out)]  # what it wrote, for what runs after the command (judgeloop.py)
    per_prompt = {d.criterion: d.per_prompt for d in datas}
    for line in summary_lines(evaluation):
        print(line)
    if not args.no_report:
        from workflows.evaluate.report import write_report  # deferred: matplotlib takes seconds to import

        history_rows = [] if args.no_history else hist.History(args.db).runs()
        paths = write_report(evaluation, out / "report", history_rows)
        print(f"report: {paths['html']}")
    rc = 0
    if args.against:
        db = hist.History(args.db)
        earlier = db.get(args.against)
        systems = [args.system] if args.system else evaluation.dataset.systems
        comps = [c for s in systems for c in hist.compare(per_prompt, earlier, s, n_boot=args.n_boot, seed=args.seed)]
        if not comps:
            print(f"against {earlier.run_id}: no shared prompts and series to compare", file=sys.stderr)
        for c in comps:
            d = c["difference"]
            print(
                f"against {earlier.run_id}: {c['criterion']} {c['series']}: {c['then']:.3f} -> {c['now']:.3f} "
                f"(paired difference {d['estimate']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}], {c['n_shared']} prompts)"
            )
        bad = hist.regressions(comps, args.max_drop)
        (out / "comparison.json").write_text(hist.dump(comps) + "\n")
        if bad:
            for c in bad:
                print(
                    f"REGRESSION: {c['criterion']} {c['series']} dropped by more than {args.max_drop} "
                    f"with 95% confidence (upper end {c['difference']['hi']:+.3f})",
                    file=sys.stderr,
                )
            rc = 1
    if not args.no_history:
        hist.History(args.db).record(evaluation, per_prompt)
        print(f"recorded run {evaluation.run_id} in {hist.db_url(args.db)}")
    print(f"wrote {out / 'evaluation.json'}")
    return rc


def _fmt(iv) -> str:
    if iv is None or iv.estimate is None:
        return "n/a"
    lo = "?" if iv.lo is None else f"{iv.lo:.3f}"
    hi = "?" if iv.hi is None else f"{iv.hi:.3f}"
    return f"{iv.estimate:.3f} [{lo}, {hi}]"


def summary_lines(ev) -> list[str]:
    lines = [ev.notice]
    for w in ev.warnings:
        lines.append(f"warning: {w}")
    for c in ev.criteria:
        lines.append(f"{c.criterion} ({c.metric}, {c.n_prompts} prompts, judge {c.judge.name}):")
        for s in c.systems:
            corr = s.correction.corrected if s.correction else None
            lines.append(f"  {s.system:<24} judge {_fmt(s.judge)}" + (f"  corrected {_fmt(corr)}" if corr else ""))
        for w in c.win_rates:
            corr = w.correction.corrected if w.correction else None
            lines.append(
                f"  {w.system} vs {w.opponent}: win rate {_fmt(w.judge)} ({w.wins}W {w.ties}T {w.losses}L)"
                + (f"  corrected {_fmt(corr)}" if corr else "")
            )
        if c.ranking:
            lines.append("  ranking (Bradley-Terry): " + " > ".join(r.system for r in c.ranking))
    return lines
