"""The `judgeloop` command: dispatches `judgeloop COMMAND ...` to the package that owns it.

Every package has a ``cli.py`` with ``main(argv) -> int``. User-caused errors
(``JudgeloopError``) print one line per problem (file:line: field: what, and what to do) and
exit 2 with no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import importlib
import sys

from data.errors import JudgeloopError

# command -> (module, one-line help)
COMMANDS = {
    "data": ("data.cli", "list, prepare, import and validate labelled data"),
    "model": ("data.cli", "fetch the embedded default model (model fetch)"),
    "train": ("train.cli", "fine-tune a LoRA judge on human labels"),
    "merge": ("train.cli", "merge a LoRA judge into a plain model for serving"),
    "serve": ("serve.cli", "serve judges with vLLM and the judge API"),
    "score": ("serve.cli", "score an item file (batch, resumable)"),
    "eval": ("workflows.validate", "validate a judge against human labels (validation.json)"),
    "gate": ("eval.cli", "check a validation result against the promotion gate"),
    "report": ("eval.cli", "write the validation report (HTML, Markdown, JSON)"),
    "registry": ("workflows.cli", "list and register judge versions"),
    "promote": ("workflows.cli", "promote a judge version that passed its gate"),
    "rollback": ("workflows.cli", "return production to the previous version"),
    "evaluate": ("workflows.evaluate.cli", "evaluate systems with judges, corrected with human labels; history"),
    "monitor": ("workflows.monitor", "compare live verdicts with the validation baseline (drift; exit 1 on alert)"),
    "review": ("workflows.review", "export live items for human review, import the labels back"),
    "retrain": ("workflows.retrain", "train on original + reviewed labels, validate, gate, register"),
    "demo": ("workflows.demo", "the whole loop on the embedded default model (runs/demo)"),
    "bench": ("benchmarks.cli", "scoring and training speed against the usual ways (benchmarks/results)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return f"usage: judgeloop COMMAND [ARGS...]\n\ncommands:\n{rows}\n\n`judgeloop COMMAND --help` for more."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        print(
            f"judgeloop: error: unknown command '{command}'" + (f" (did you mean '{close[0]}'?)" if close else ""),
            file=sys.stderr,
        )
        print(usage(), file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    if command == "train" and "--all" in rest:  # every criterion: a workflow above train/
        module = importlib.import_module("workflows.all_criteria")
        module.main = module.train_main
    try:
        return int(module.main([command, *rest]) or 0)
    except JudgeloopError as exc:
        for problem in exc.problems:
            print(f"judgeloop: error: {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("judgeloop: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
