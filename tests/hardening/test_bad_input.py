"""The cross-cutting bad-input table: data files, configs, CLI arguments and API requests.

Every CLI case gets one located error line (file:line: field 'x': what), exit code 2 and no
traceback; every API case a 4xx with a JSON reason, and the server answers the next good request.
"Nothing done before it is lost" is checked where there is something to lose (a partial output).
The tables in tests/data/test_bad_input.py (data files through `judgeloop data`) and
tests/serve/test_api.py (API requests) are part of the same table: counted below, not repeated.
"""

import json
from dataclasses import dataclass, field

import httpx
import pytest

import judgeloop
from tests.data.test_bad_input import CASES as DATA_FILE_CASES
from tests.eval.test_gate import passing_result
from tests.serve.helpers import pairwise_items
from tests.serve.test_api import BAD as API_CASES_IN_SERVE_TESTS
from tests.serve.test_api import GOOD, KEY, api, post, serving  # noqa: F401  (fixtures)


@dataclass
class Cli:
    name: str
    kind: str  # data | config | cli
    argv: list[str]  # {tmp}, {pairwise_spec}, {model} are filled in
    expected: list[str]  # fragments of the first error line
    files: dict[str, str | bytes] = field(default_factory=dict)
    after: dict[str, str | bytes] = field(default_factory=dict)  # files that must hold exactly this afterwards
    env: dict[str, str] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)  # files that must not exist afterwards (nothing ran)


def jsonl(*records) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


ITEMS = pairwise_items(2)
BAD_THIRD_LINE = jsonl(*ITEMS) + '{"id": "p2", "group": \n'
VERDICT = {"id": "p0", "verdict": "A", "judge": {"name": "t", "fingerprint": "f"}}
OWN_VERDICT = {**VERDICT, "judge": {"name": "tiny-helpfulness", "fingerprint": "{fingerprint}"}}  # this judge's
FOREIGN_OUTPUT = jsonl(OWN_VERDICT) + "[1, 2]\n" + jsonl({**OWN_VERDICT, "id": "p1"})
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")
)
SPEC = {
    "name": "x",
    "kind": "pairwise",
    "labels": ["A", "B"],
    "system": "s",
    "template": "{{ instruction }} {{ response_a }} {{ response_b }}",
}
SCORE = ["score", "--in", "{tmp}/in.jsonl", "--out", "{tmp}/out.jsonl", "--engine=transformers", "-q"]
LABELLED = jsonl({**ITEMS[0], "labels": ["A"], "label": "A"})
# json.dumps writes a lone surrogate as its escape, "\ud800": valid JSON, not valid text
LONE_SURROGATE_ITEMS = jsonl(ITEMS[0], {**ITEMS[1], "response_b": "broken \ud800 text"})
# 1e999 parses as infinity (NaN and Infinity, the constants, are refused by the JSON reader already)
INFINITE_VERDICT = (
    '{"id": "p0", "verdict": "A", "probs": {"A": 1e999, "B": 0.0}, "judge": {"name": "t", "fingerprint": "f"}}\n'
)
VALIDATION = passing_result().to_json()
BASELINE = passing_result().to_json()  # a pairwise spec with labels A, B, tie
NOT_A_DATABASE = "ts,judge,verdict\n1,x,A\n"
MONITOR = ["monitor", "--baseline={tmp}/base/validation.json", "--out={tmp}/mon"]
BASELINE_FILES = {"base/validation.json": BASELINE, "base/verdicts.jsonl": jsonl(VERDICT)}
REVIEW = ["review", "export", "--judge", "t", "--spec", "helpfulness-pairwise", "--n", "5", "--out", "{tmp}/rev"]

CLI_CASES = [
    # ---- data files
    Cli(
        "score: invalid JSON on line 3 keeps the 2 verdicts before it",
        "data",
        [*SCORE, "--judge", "{pairwise_spec}", "--batch-size", "1"],
        ["in.jsonl:3", "invalid JSON"],
        {"in.jsonl": BAD_THIRD_LINE},
    ),
    Cli(
        "score: the output file holds a line this command did not write",
        "data",
        [*SCORE, "--judge", "{pairwise_spec}"],
        ["out.jsonl:2", "not a record with an 'id'"],
        {"in.jsonl": jsonl(*ITEMS), "out.jsonl": FOREIGN_OUTPUT},
        after={"out.jsonl": FOREIGN_OUTPUT},
    ),
    Cli(
        "score: the output holds another judge's verdicts (refused before the model loads)",
        "data",
        [*SCORE, "--judge", "{pairwise_spec}"],
        ["out.jsonl:1", "field 'judge.fingerprint'", "judge 't'", "pass another --out"],
        {"in.jsonl": jsonl(*ITEMS), "out.jsonl": jsonl(VERDICT)},
        after={"out.jsonl": jsonl(VERDICT)},
    ),
    Cli(
        "judge directory whose weights were swapped after fingerprinting",
        "data",
        [*SCORE, "--judge", "{tmp}/judge"],
        ["judge.json", "field 'fingerprint'", "re-validate and re-register"],
        {
            "in.jsonl": jsonl(*ITEMS),
            "judge/model.safetensors": b"other weights",
            "judge/judge.json": json.dumps({"spec": SPEC, "base_model": ".", "adapter": None, "fingerprint": "f" * 64}),
        },
    ),
    Cli(
        "judge.json with a key given twice (json would keep the last silently)",
        "data",
        [*SCORE, "--judge", "{tmp}/judge"],
        ["judge.json", "not a readable judge file", "the key 'fingerprint' is given twice"],
        {"in.jsonl": jsonl(*ITEMS), "judge/judge.json": '{"fingerprint": "a", "fingerprint": "b"}'},
    ),
    Cli(
        "judge.json whose base model is outside the judge directory",
        "data",
        [*SCORE, "--judge", "{tmp}/judge"],
        ["judge.json", "field 'base_model'", "outside its judge directory", "JUDGELOOP_TRUSTED_MODELS"],
        {
            "in.jsonl": jsonl(*ITEMS),
            "judge/judge.json": json.dumps({"spec": SPEC, "base_model": "/usr", "adapter": None, "fingerprint": "f"}),
        },
    ),
    Cli(
        "eval: verdicts for ids that are not items",
        "data",
        [
            "eval",
            "--verdicts",
            "{tmp}/v.jsonl",
            "--items",
            "{tmp}/in.jsonl",
            "--spec",
            "helpfulness-pairwise",
            "--out",
            "{tmp}/eval",
        ],
        ["v.jsonl", "field 'id'", "not items"],
        {"in.jsonl": LABELLED, "v.jsonl": jsonl(VERDICT, {**VERDICT, "id": "zz"})},
    ),
    Cli(
        "judge directory with a broken judge.json",
        "data",
        [*SCORE, "--judge", "{tmp}/judge"],
        ["judge.json", "not a readable judge file"],
        {"in.jsonl": jsonl(*ITEMS), "judge/judge.json": '{"spec": '},
    ),
    Cli(
        "judge.json whose adapter path escapes the judge directory",
        "data",
        [*SCORE, "--judge", "{tmp}/judge"],
        ["judge.json", "field 'adapter'", "outside its judge directory"],
        {
            "in.jsonl": jsonl(*ITEMS),
            "judge/judge.json": json.dumps(
                {"spec": SPEC, "base_model": "{model}", "adapter": "../../etc", "fingerprint": "f"}
            ),
        },
    ),
    Cli(
        "train: a training label outside the label space",
        "data",
        [
            "train",
            "--spec=helpfulness-pairwise",
            "--base_model={model}",
            "--data.train={tmp}/t.jsonl",
            "--output_dir={tmp}/run",
            "--max_steps=1",
        ],
        ["t.jsonl:3: field 'label'", "item 'p1'", "'C' is not one of"],
        {"t.jsonl": jsonl(ITEMS[0]) + "\n" + jsonl({**ITEMS[1], "labels": ["C"], "label": "C"})},
    ),
    Cli(
        "score: a lone surrogate in an item (was a traceback)",
        "data",
        [*SCORE, "--judge", "{pairwise_spec}"],
        ["in.jsonl:2", "field 'response_b'", "lone surrogate"],
        {"in.jsonl": LONE_SURROGATE_ITEMS},
    ),
    Cli(
        "eval: a verdict probability of 1e999 (was: every correlation silently blank)",
        "data",
        [
            "eval",
            "--verdicts",
            "{tmp}/v.jsonl",
            "--items",
            "{tmp}/in.jsonl",
            "--spec",
            "helpfulness-pairwise",
            "--out",
            "{tmp}/eval",
        ],
        ["v.jsonl:1", "field 'probs'", "must be a finite number"],
        {"in.jsonl": LABELLED, "v.jsonl": INFINITE_VERDICT},
    ),
    Cli(
        "monitor: a --log that is not an SQLite database is left untouched",
        "data",
        [*MONITOR, "--log={tmp}/log.csv"],
        ["log.csv", "field 'log'", "not an SQLite database"],
        {**BASELINE_FILES, "log.csv": NOT_A_DATABASE},
        after={"log.csv": NOT_A_DATABASE},
    ),
    Cli(
        "monitor: an empty --log file stays empty (SQLite would make a database of it)",
        "data",
        [*MONITOR, "--log={tmp}/empty.sqlite"],
        ["empty.sqlite", "field 'log'", "not an SQLite database (it is empty)"],
        {**BASELINE_FILES, "empty.sqlite": b""},
        after={"empty.sqlite": b""},
    ),
    Cli(
        "review export: a --log that is not an SQLite database is left untouched",
        "data",
        [*REVIEW, "--log", "{tmp}/log.csv"],
        ["log.csv", "field 'log'", "not an SQLite database"],
        {"log.csv": NOT_A_DATABASE},
        after={"log.csv": NOT_A_DATABASE},
    ),
    Cli(
        "report: a validation.json that is not JSON",
        "data",
        ["report", "{tmp}/v.json", "--out", "{tmp}/rep"],
        ["v.json", "not a JSON file"],
        {"v.json": "{oops"},
    ),
    # ---- configs
    Cli(
        "monitor: --window_hours=inf behind a valid baseline is a located config error",
        "config",
        [*MONITOR, "--window_hours=inf"],
        ["field 'window_hours'", "finite number of hours"],
        BASELINE_FILES,
        absent=["mon"],
    ),
    Cli(
        "review export: --window-hours inf is a usage error",
        "cli",
        [*REVIEW, "--window-hours", "inf"],
        ["--window-hours", "finite number of hours"],
        absent=["rev"],
    ),
    Cli(
        "serve: --judges=[ (an unclosed list) is a located override error",
        "config",
        ["serve", "--judges=["],
        ["field 'judges'"],
    ),
    Cli(
        "serve config: misspelt key",
        "config",
        ["serve", "{tmp}/s.yaml"],
        ["s.yaml:2", "field 'vllm.prot'", "unknown key", "did you mean 'vllm.port'?"],
        {"s.yaml": "vllm:\n  prot: 8100\n"},
    ),
    Cli(
        "serve config: invalid YAML",
        "config",
        ["serve", "{tmp}/s.yaml"],
        ["s.yaml:", "invalid YAML"],
        {"s.yaml": "judges: [a\nvllm: {\n"},
    ),
    Cli(
        "serve config: a number that is not one",
        "config",
        ["serve", "{tmp}/s.yaml"],
        ["s.yaml:2", "field 'api.max_concurrent_requests'", "must be an integer"],
        {"s.yaml": "api:\n  max_concurrent_requests: lots\n"},
    ),
    Cli(
        "train config: a negative LoRA rank",
        "config",
        ["train", "{tmp}/t.yaml"],
        ["t.yaml:3", "field 'lora.rank'", "must be > 0"],
        {"t.yaml": "spec: helpfulness-pairwise\nlora:\n  rank: -1\n"},
    ),
    Cli(
        "judge spec: a template that does not compile",
        "config",
        [*SCORE, "--judge", "{tmp}/spec.yaml"],
        ["spec.yaml", "field 'template'", "does not compile"],
        {"in.jsonl": jsonl(*ITEMS), "spec.yaml": json.dumps({**SPEC, "template": "{% if %}"})},
    ),
    Cli(
        "judge spec: a template that reaches for Python internals (never run)",
        "config",
        [*SCORE, "--judge", "{tmp}/spec.yaml"],
        ["spec.yaml", "field 'template'", "reaches for", "'__globals__'"],
        {
            "in.jsonl": jsonl(*ITEMS),
            "spec.yaml": json.dumps(
                {**SPEC, "template": SPEC["template"] + "{{ cycler.__init__.__globals__.os.system('touch {tmp}/x') }}"}
            ),
        },
        absent=["x"],
    ),
    Cli(
        "serve config: a YAML alias bomb (refused at its first alias, not expanded)",
        "config",
        ["serve", "{tmp}/s.yaml"],
        ["s.yaml:2", "YAML aliases are not allowed (*a)"],
        {"s.yaml": ALIAS_BOMB},
    ),
    Cli(
        "serve config: a key given twice (the second would silently win)",
        "config",
        ["serve", "{tmp}/s.yaml"],
        ["s.yaml:3", "field 'api.port'", "duplicate key 'port' on lines 2 and 3"],
        {"s.yaml": "api:\n  port: 8000\n  port: 9000\n"},
    ),
    Cli("override without a value", "config", ["serve", "--vllm.port"], ["--vllm.port", "not of the form --key=value"]),
    Cli(
        "gate: an infinite threshold override (was exit 1, the gate's FAIL)",
        "config",
        ["gate", "{tmp}/v.json", "--min_margin_over_baseline=inf"],
        ["--min_margin_over_baseline: field 'min_margin_over_baseline'", "must be a finite number, got inf"],
        {"v.json": VALIDATION},
        after={"v.json": VALIDATION},
    ),
    Cli(
        "gate: a -inf threshold in the gates file",
        "config",
        ["gate", "{tmp}/v.json", "--gates", "{tmp}/g.yaml"],
        ["g.yaml:2: field 'max_incumbent_drop'", "must be a finite number, got -inf"],
        {"v.json": VALIDATION, "g.yaml": "min_n: 100\nmax_incumbent_drop: -.inf\n"},
        after={"v.json": VALIDATION},
    ),
    Cli(
        "gate: a NaN threshold",
        "config",
        ["gate", "{tmp}/v.json", "--max_ece=nan"],
        ["--max_ece: field 'max_ece'", "must be a number, got NaN"],
        {"v.json": VALIDATION},
        after={"v.json": VALIDATION},
    ),
    Cli(
        "serve config: an allowed host that is a URL",
        "config",
        ["serve", "--api.allowed_hosts=[http://judge.internal/]"],
        ["field 'api.allowed_hosts'", "is not a host name"],
    ),
    Cli(
        "no API key on a public address",
        "config",
        ["serve", "--api.host=0.0.0.0", "--api.no_auth_on_loopback=true"],
        ["field 'api.no_auth_on_loopback'", "only be skipped on a loopback host"],
    ),
    Cli(
        "a concurrency limit of 0",
        "config",
        ["serve", "--api.max_concurrent_requests=0"],
        ["field 'api.max_concurrent_requests'", "must be at least 1"],
    ),
    # ---- CLI arguments
    Cli("unknown command", "cli", ["serv"], ["unknown command 'serv'", "did you mean 'serve'?"]),
    Cli(
        "batch size 0",
        "cli",
        [*SCORE, "--judge", "{pairwise_spec}", "--batch-size", "0"],
        ["field '--batch-size'", "must be at least 1"],
        {"in.jsonl": jsonl(*ITEMS)},
    ),
    Cli(
        "--injection without --judge",
        "cli",
        [
            "eval",
            "--verdicts",
            "{tmp}/v.jsonl",
            "--items",
            "{tmp}/in.jsonl",
            "--spec",
            "helpfulness-pairwise",
            "--injection",
            "5",
        ],
        ["field '--injection'", "with --judge"],
        {"in.jsonl": LABELLED, "v.jsonl": jsonl(VERDICT)},
    ),
    Cli(
        "serve without an API key",
        "cli",
        ["serve", "--engine=transformers"],
        ["field 'api.api_key_env'", "needs an API key: set JUDGELOOP_API_KEY"],
    ),
    Cli(
        "serve with a one-character API key",
        "cli",
        ["serve", "--engine=transformers"],
        ["field 'api.api_key_env'", "is 1 character(s)", "at least 16", "secrets.token_urlsafe(32)"],
        env={"JUDGELOOP_API_KEY": "k"},
    ),
    Cli(
        "score: the input file is missing",
        "cli",
        [*SCORE, "--judge", "{pairwise_spec}"],
        ["in.jsonl", "file not found"],
    ),
    Cli(
        "a registry name that is a path",
        "cli",
        ["registry", "list", "../../etc", "--registry", "{tmp}/reg"],
        ["field 'name'", "'../../etc' is not a usable judge name"],
    ),
    Cli(
        "misspelt judge spec",
        "cli",
        [*SCORE, "--judge", "helpfulness-pairwis"],
        ["unknown judge spec 'helpfulness-pairwis'", "did you mean 'helpfulness-pairwise'?"],
        {"in.jsonl": jsonl(*ITEMS)},
    ),
    Cli(
        "score without --in", "cli", ["score", "--out", "{tmp}/o.jsonl"], ["the following arguments are required: --in"]
    ),
    Cli(
        "score: --out is a directory (refused before the model loads)",
        "cli",
        [*SCORE[:3], "--out", "{tmp}/outdir", *SCORE[5:], "--judge", "{pairwise_spec}"],
        ["outdir", "is a directory, not a verdict file"],
        {"in.jsonl": jsonl(*ITEMS), "outdir/keep": ""},
    ),
]

# (name, body or (method, path, raw bytes), status, fragment of the JSON reason)
API_CASES = [
    ("empty batch", {"judge": "tiny-helpfulness", "items": []}, 422, "items"),
    (
        "NaN label",
        b'{"judge": "tiny-helpfulness", "item": {"instruction": "x", "response_a": "a", "response_b": "b", '
        b'"labels": [NaN]}}',
        422,
        "finite",
    ),
    ("both_orders is not a boolean", {**GOOD, "both_orders": "maybe"}, 422, "both_orders"),
    ("judge and judges both", {**GOOD, "judges": ["tiny-helpfulness"]}, 422, "not both"),
    ("empty id", {**GOOD, "item": {**GOOD["item"], "id": ""}}, 422, "item.id"),
    (
        "JSON nested 5,000 deep",
        b'{"judge": "tiny-helpfulness", "item": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
        400,
        "error parsing the body",
    ),
    ("an item that is a string", {"judge": "tiny-helpfulness", "item": "judge this"}, 422, "item"),
    ("GET on the judge route", ("GET", "/v1/judge", None), 405, "Not Allowed"),
    (
        "a lone surrogate in a response",
        b'{"judge": "tiny-helpfulness", "item": {"instruction": "x", "response_a": "a", "response_b": "\\udbff"}}',
        422,
        "item.response_b: text with a lone surrogate",
    ),
    ("unknown route", ("POST", "/v2/judge", b"{}"), 404, "Not Found"),
]


def fill(value: str, ctx: dict) -> str:
    for key, sub in ctx.items():
        value = value.replace("{" + key + "}", str(sub))
    return value


@pytest.fixture(scope="module")
def pairwise_fingerprint(tiny_specs):
    from judge.loading import load_judge

    return load_judge(tiny_specs["pairwise"]).fingerprint


@pytest.fixture
def ctx(tmp_path, tiny_specs, tiny_model_dir, pairwise_fingerprint, monkeypatch):
    monkeypatch.delenv("JUDGELOOP_API_KEY", raising=False)
    return {
        "tmp": tmp_path,
        "pairwise_spec": tiny_specs["pairwise"],
        "model": tiny_model_dir,
        "fingerprint": pairwise_fingerprint,
    }


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.name for c in CLI_CASES])
def test_cli_bad_input_is_one_located_error_and_exit_2(case, ctx, capsys, monkeypatch):
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    for name, content in case.files.items():
        path = ctx["tmp"] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(
            content if isinstance(content, bytes) else fill(content, ctx)
        )
    try:
        code = judgeloop.main([fill(a, ctx) for a in case.argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    first = next(line for line in err.splitlines() if "error:" in line)
    for fragment in case.expected:
        assert fill(fragment, ctx) in first, (fragment, first)
    for name, content in case.after.items():
        path = ctx["tmp"] / name
        expected = content if isinstance(content, bytes) else fill(content, ctx)
        assert (path.read_bytes() if isinstance(content, bytes) else path.read_text()) == expected, f"{name} changed"
    for name in case.absent:
        assert not (ctx["tmp"] / name).exists(), f"{name} exists: something ran"


def test_a_bad_line_costs_nothing_scored_before_it_and_a_rerun_resumes(ctx, capsys):
    """Row 1 of the table, continued: the verdicts before the bad line stay; fixed, a rerun scores only the rest."""
    src, out = ctx["tmp"] / "in.jsonl", ctx["tmp"] / "out.jsonl"
    src.write_text(BAD_THIRD_LINE)
    argv = [fill(a, ctx) for a in [*SCORE, "--judge", "{pairwise_spec}", "--batch-size", "1"]]
    assert judgeloop.main(argv) == 2
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["p0", "p1"]
    src.write_text(jsonl(*pairwise_items(3)))
    assert judgeloop.main(argv) == 0
    assert "2 already in the output were skipped" in capsys.readouterr().out
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["p0", "p1", "p2"]


@pytest.mark.parametrize("name,body,status,reason", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_bad_request_is_a_4xx_with_a_json_reason(api, name, body, status, reason):
    if isinstance(body, tuple):
        method, path, content = body
        resp = httpx.request(
            method,
            api.url + path,
            content=content,
            headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"},
        )
    else:
        resp = post(api, body)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert reason in resp.json()["error"], resp.text
    assert post(api, GOOD).status_code == 200  # the server is still up and answering


def test_the_table_has_at_least_25_cases_across_data_configs_cli_and_api():
    kinds = {"data": len(DATA_FILE_CASES), "config": 0, "cli": 0, "api": len(API_CASES) + len(API_CASES_IN_SERVE_TESTS)}
    for case in CLI_CASES:
        kinds[case.kind] += 1
    assert all(n >= 5 for n in kinds.values()), kinds
    assert sum(kinds.values()) >= 25, kinds
