"""The one `judgeloop` parser tree: every documented exit code through ``judgeloop.main``, one override
syntax, `train all`/`eval all` as subcommands, `--help` (an example per command), cheap imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

import judgeloop
from data.cli_base import Parser
from serve.child import free_port
from tests.eval.test_gate import DEFAULT, passing_result

REPO = Path(__file__).resolve().parent.parent


def commands(parser: Parser | None = None, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Parser]:
    """Every runnable command of the tree (``("data", "list")``, ``("train",)``, ``("train", "all")``...)."""
    parser = parser or judgeloop.build_parser()
    found = {}
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            if sub._subparsers:
                found.update(commands(sub, (*prefix, name)))
            else:
                found[(*prefix, name)] = sub
            for subname, nested in sub.subcommands.items():
                found[(*prefix, name, subname)] = nested
    return found


# --- the exit codes (judgeloop --help's epilog, docs/cli.md) -----------------------------------------


def test_exit_0_ok_version_and_help(capsys):
    assert judgeloop.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"judgeloop {metadata.version('judgeloop')}"
    assert judgeloop.main(["--help"]) == 0
    out = capsys.readouterr().out
    for code in judgeloop.EXIT_CODES:
        assert re.search(rf"^  {code}\s", out, re.M), code


def test_exit_1_a_gate_that_fails(tmp_path, capsys):
    path = tmp_path / "validation.json"
    path.write_text(passing_result().to_json())
    assert judgeloop.main(["gate", str(path), "--gates", str(DEFAULT), "--min_n=600"]) == 1
    assert "FAIL  min_n" in capsys.readouterr().out


def test_exit_2_user_errors_every_problem_located_and_usage_errors(tmp_path, capsys):
    path = tmp_path / "validation.json"
    path.write_text(passing_result().to_json())
    # unknown --key=value: the config loader's located error, every one at once
    assert judgeloop.main(["gate", str(path), "--min_nn=600", "--max_ece=lots"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "judgeloop: error: --min_nn: field 'min_nn': unknown key (did you mean 'min_n'?)" in err
    assert any("field 'max_ece': must be a number" in line for line in err)
    # argparse's own usage errors
    assert judgeloop.main(["gate"]) == 2
    assert "the following arguments are required: VALIDATION" in capsys.readouterr().err
    assert judgeloop.main(["report", str(path), "--bogus"]) == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_exit_3_when_the_server_is_unavailable(tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "1", "instruction": "x", "response_a": "a", "response_b": "b"}) + "\n")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    argv = ["score", "--endpoint", url, "--in", str(items), "--out", str(tmp_path / "v.jsonl")]
    assert judgeloop.main(argv) == 3
    assert f"judgeloop: error: cannot reach the judge API at {url}" in capsys.readouterr().err


def test_exit_130_when_interrupted(tmp_path, capsys, monkeypatch):
    import eval.gate

    def interrupted(path):
        raise KeyboardInterrupt

    monkeypatch.setattr(eval.gate, "read_result", interrupted)
    assert judgeloop.main(["gate", str(tmp_path / "validation.json")]) == 130
    assert "judgeloop: interrupted" in capsys.readouterr().err


# --- the tree -------------------------------------------------------------------------------------


def test_all_is_a_subcommand_and_the_old_flag_says_where_it_went(capsys):
    args = judgeloop.build_parser().parse_args(["train", "all", "--only", "a,b", "--dry-run"])
    assert args.run.__qualname__ == "lazy(workflows.all_criteria:cmd_train_all)" and args.dry_run
    args = judgeloop.build_parser().parse_args(["eval", "all", "--max-items", "5"])
    assert args.run.__qualname__ == "lazy(workflows.all_criteria:cmd_eval_all)" and args.max_items == 5
    for command in ("train", "eval"):
        assert judgeloop.main([command, "--all"]) == 2
        assert f"--all is now a subcommand: judgeloop {command} all" in capsys.readouterr().err


def test_overrides_are_every_other_double_dash_key_in_order():
    parse = judgeloop.build_parser().parse_args
    args = parse(["train", "--output_dir=/runs/a b", "cfg.yaml", "--lora.rank=8", "--resume", "--data.dev=[x,y]"])
    assert args.config == "cfg.yaml" and args.resume
    assert args.overrides == ["--output_dir=/runs/a b", "--lora.rank=8", "--data.dev=[x,y]"]
    args = parse(["score", "--in", "i.jsonl", "--out", "o.jsonl", "--engine=transformers", "--vllm.port=9"])
    assert (args.in_path, args.out_path) == ("i.jsonl", "o.jsonl")
    assert args.overrides == ["--engine=transformers", "--vllm.port=9"]
    args = parse(["monitor", "--baseline=v.json", "--compare", "j@2", "-q"])
    assert args.compare == "j@2" and args.overrides == ["--baseline=v.json"] and args.quiet


def test_an_override_without_a_value_is_a_located_error(capsys):
    assert judgeloop.main(["train", "--lora.rank", "8"]) == 2
    assert "override '--lora.rank' is not of the form --key=value: write --lora.rank=8" in capsys.readouterr().err
    assert judgeloop.main(["serve", "--vllm.port"]) == 2
    assert "override '--vllm.port' is not of the form --key=value" in capsys.readouterr().err
    # a flag spelled like a field, or misspelt: said so, not taken for an override
    assert judgeloop.main(["score", "--in", "i", "--out", "o", "--batch_size=3"]) == 2
    assert "--batch_size: flags are spelled with dashes: --batch-size" in capsys.readouterr().err
    assert judgeloop.main(["score", "--in", "i", "--out", "o", "--batchsize", "3"]) == 2
    assert "unknown flag --batchsize (did you mean --batch-size?)" in capsys.readouterr().err


def test_every_command_has_help_and_an_example():
    found = commands()
    assert {("train",), ("train", "all"), ("eval",), ("eval", "all"), ("data", "list"), ("bench",)} <= set(found)
    for path, parser in found.items():
        text = parser.format_help()
        assert re.search(r"example:\n  .*judgeloop " + re.escape(" ".join(path)), text), path


def test_docs_cover_every_command_and_exit_code():
    docs = (REPO / "docs" / "cli.md").read_text()
    for path in commands():
        assert f"judgeloop {' '.join(path)}" in docs, path
    for code in judgeloop.EXIT_CODES:
        assert f"| {code} |" in docs, code


def test_help_is_fast_and_imports_no_heavy_library():
    heavy = "{'torch', 'transformers', 'vllm', 'scipy', 'pandas', 'fastapi', 'matplotlib'}"
    code = f"import sys, judgeloop; judgeloop.build_parser(); print(sorted({heavy} & set(sys.modules)))"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
    assert time.perf_counter() - start < 5  # ~0.2 s here; the old tree imported every command module (3+ s)


def test_quiet_keeps_warnings_and_turns_bars_off(monkeypatch, capsys):
    import os

    seen = {}

    def run(args):
        judgeloop.log.info("progress")
        judgeloop.log.warning("careful")
        seen["tqdm"] = os.environ.get("TQDM_DISABLE")
        return 0

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr("eval.cli.cmd_report", run)
    assert judgeloop.main(["-q", "report", "v.json"]) == 0
    err = capsys.readouterr().err
    assert "progress" not in err and "judgeloop: warning: careful" in err and seen["tqdm"] == "1"
    assert "TQDM_DISABLE" not in os.environ
    assert judgeloop.main(["report", "v.json"]) == 0
    assert "progress" in capsys.readouterr().err and seen["tqdm"] is None


@pytest.mark.parametrize("argv", [["serv"], ["data", "lst"]])
def test_a_misspelt_command_suggests_the_nearest(argv, capsys):
    assert judgeloop.main(argv) == 2
    assert f"unknown command '{argv[-1]}' (did you mean" in capsys.readouterr().err


def test_retrain_takes_training_fields_as_dotted_overrides(tmp_path, capsys):
    for name in ("train.yaml", "eval.jsonl", "gates.yaml"):
        (tmp_path / name).write_text("{}\n")
    config = tmp_path / "retrain.yaml"
    config.write_text(
        f"train: {tmp_path / 'train.yaml'}\neval_items: {tmp_path / 'eval.jsonl'}\ngates: {tmp_path / 'gates.yaml'}\n"
        "train_overrides: {lora: {rank: 4}}\n"
    )
    assert judgeloop.main(["retrain", str(config), "--train_overrides.max_stpes=5", "--train_overrides.seed=1"]) == 2
    (err,) = capsys.readouterr().err.splitlines()  # lora.rank and seed are training fields: one problem
    assert err.endswith(
        "field 'train_overrides.max_stpes': not a field of the training config (did you mean 'max_steps'?)"
    )


def _one_located_line(capsys, *fragments) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])


def test_paths_that_cannot_be_used_as_asked_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("")
    Path("v.json").write_text(passing_result().to_json())
    # a directory where a file is expected
    assert judgeloop.main(["eval", "--verdicts", "d", "--items", "d", "--spec", "helpfulness-pairwise"]) == 2
    _one_located_line(capsys, "d:", "directory")
    assert judgeloop.main(["gate", "v.json", "--gates", "d"]) == 2
    _one_located_line(capsys, "d:", "directory")
    # an output under a regular file
    assert judgeloop.main(["report", "v.json", "--out", "f/report"]) == 2
    _one_located_line(capsys, "f/report", "Not a directory")


def test_a_damaged_registry_record_is_named_not_a_traceback(tmp_path, capsys):
    (tmp_path / "reg" / "helpful").mkdir(parents=True)
    (tmp_path / "reg" / "helpful" / "versions.json").write_text("{damaged")
    assert judgeloop.main(["registry", "show", "helpful", "--registry", str(tmp_path / "reg")]) == 2
    _one_located_line(capsys, "versions.json", "not a readable registry record")


def test_an_item_label_outside_the_label_space_names_file_line_and_field(tmp_path, capsys):
    items = [
        {
            "id": f"i{i}",
            "group": f"g{i}",
            "kind": "pairwise",
            "instruction": "q",
            "response_a": "a",
            "response_b": "b",
            "label": lab,
        }
        for i, lab in enumerate(["A", "tie", "Z", "B"])
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in items))
    verdicts = tmp_path / "v.jsonl"
    ref = {"name": "helpfulness-pairwise", "fingerprint": "f" * 64}
    verdicts.write_text("".join(json.dumps({"id": it["id"], "verdict": "A", "judge": ref}) + "\n" for it in items))
    argv = ["eval", "--verdicts", str(verdicts), "--items", str(path), "--spec", "helpfulness-pairwise"]
    assert judgeloop.main([*argv, "--out", str(tmp_path / "o")]) == 2
    _one_located_line(capsys, f"{path}:3: field 'label'", "'Z'")
    assert not (tmp_path / "o" / "validation.json").exists()


def test_a_negative_count_is_a_usage_error(capsys):
    argv = ["eval", "--verdicts", "v.jsonl", "--items", "i.jsonl", "--spec", "helpfulness-pairwise", "--n-boot", "-5"]
    assert judgeloop.main(argv) == 2
    assert "--n-boot: must be at least 1, got -5" in capsys.readouterr().err


def test_the_installed_command_works_outside_the_repository(tmp_path):
    # users run `judgeloop` from their own project: every package it imports must be installed
    script = Path(sys.executable).parent / "judgeloop"
    assert script.exists(), "pip install -e . installs the judgeloop console script"
    for argv in (["--version"], ["data", "list"], ["bench", "--help"]):
        done = subprocess.run([str(script), *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (argv, done.stderr[-2000:])
