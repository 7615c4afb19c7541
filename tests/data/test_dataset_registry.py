"""The dataset registry and converters, checked against the real files in the offline mirror."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import threading
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data import converters
from data.dataset_registry import (
    Dataset,
    SourceFile,
    get_dataset,
    is_local,
    list_datasets,
    load_items,
    load_reference_verdicts,
    resolve_file,
)
from data.errors import DataError, UnknownNameError
from data.labels import aggregate

# rows per source as MANIFEST.md counts them
MANIFEST_ROWS = {
    "pandalm": 999,
    "hh-rlhf-harmless": 2312,
    "llmeval2": 2483,
    "summeval": 1600,
    "newsroom": 420,
    "topical_chat": 360,
    "qags_xsum": 239,
    "qags_cnndm": 235,
    "nq301": 1490,
}
ALL_NAMES = [ds.name for ds in list_datasets()]
REFERENCE_JUDGES = [(ds.name, judge) for ds in list_datasets() for judge in ds.reference_judges]


@pytest.fixture(scope="module")
def items(mirror):
    cache: dict[str, list] = {}

    def get(name):
        if name not in cache:
            cache[name] = list(load_items(name))
        return cache[name]

    return get


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """An empty mirror and an empty cache."""
    (tmp_path / "mirror").mkdir()
    monkeypatch.setenv("JUDGELOOP_DATA_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("JUDGELOOP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "datasets"


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def _raw_json(mirror, path):
    return json.loads((mirror / path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- every dataset


@pytest.mark.parametrize("name", ALL_NAMES)
def test_dataset_converts_on_the_mirror(name, mirror, items):
    ds = get_dataset(name)
    got = items(name)
    family = name.split("-")[0] if name.split("-")[0] in MANIFEST_ROWS else name
    assert len(got) == ds.rows == MANIFEST_ROWS.get(family, ds.rows)
    assert len({it.id for it in got}) == len(got)
    space = ds.label_space
    for it in got:
        assert it.kind == ds.kind
        assert it.meta["source"].split("/")[0] == name
        assert it.instruction is not None and it.group
        for lab in [*it.labels, it.label]:
            if lab is not None:
                checked = space.check(lab)  # raises if outside the label space
                assert ds.kind == "pointwise" or checked == lab
        if ds.kind == "pointwise":
            assert tuple(it.meta["scale"]) == space.score_range
    assert any(it.label is not None for it in got)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_mirror_files_match_pinned_checksums(name, mirror):
    ds = get_dataset(name)
    assert is_local(ds)
    for key, sf in ds.files.items():
        assert hashlib.sha256((mirror / sf.path).read_bytes()).hexdigest() == sf.sha256, key
        assert sf.url.startswith("https://raw.githubusercontent.com/") and ds.source.split("@")[1] in sf.url


def test_known_dataset_counts():
    expected = {
        "dices-990": 990,
        "dices-350-crowd": 350,
        "dices-350-expert": 350,
        "roscoe-cosmos": 195,
        "roscoe-drop": 210,
        "roscoe-esnli": 151,
        "roscoe-gsm8k": 200,
    }
    assert {n: get_dataset(n).rows for n in expected} == expected
    assert {d.kind for d in list_datasets()} == {"pairwise", "pointwise", "binary"}


# ---------------------------------------------------------------- spot checks against the raw files


def test_pandalm_rows_match_annotators(mirror, items):
    raw = _raw_json(mirror, "pandalm/testset-v1.json")
    got = {it.id: it for it in items("pandalm")}
    first = got["pandalm-0"]
    assert (raw[0]["annotator1"], raw[0]["annotator2"], raw[0]["annotator3"]) == (2, 2, 2)
    assert first.labels == ["B", "B", "B"] and first.label == "B"
    assert (first.instruction, first.input, first.response_a) == (
        raw[0]["instruction"],
        raw[0]["input"],
        raw[0]["response1"],
    )
    to_label = {1: "A", 2: "B", 0: "tie"}
    for row in raw:  # labels come from the annotator fields and nowhere else
        it = got[f"pandalm-{row['idx']}"]
        assert it.labels == [to_label[row[f"annotator{k}"]] for k in (1, 2, 3)]
        assert it.label == aggregate("pairwise", it.labels)


def test_pandalm_boolean_responses_become_text(mirror, items):
    raw = _raw_json(mirror, "pandalm/testset-v1.json")
    booleans = [(r["idx"], k) for r in raw for k in ("response1", "response2") if isinstance(r[k], bool)]
    assert len(booleans) == 6
    got = {it.id: it for it in items("pandalm")}
    for idx, key in booleans:
        it = got[f"pandalm-{idx}"]
        assert (it.response_a if key == "response1" else it.response_b) == "True"


def test_nq301_blank_annotators_and_aggregate(mirror, items):
    with open(mirror / "nq301/NQ301_human.tsv", newline="", encoding="utf-8") as fh:
        raw = list(csv.DictReader(fh, delimiter="\t"))
    got = items("nq301")
    assert got[0].labels == ["yes", "yes", None] and raw[0]["annotator3"] == ""
    blank2 = next(n for n, r in enumerate(raw) if r["annotator2"] == "")
    assert got[blank2].labels[1] is None
    assert all(it.label == r["Acceptable?"].lower() for it, r in zip(got, raw))
    disagreements = sum(1 for it in got if len({x for x in it.labels if x}) > 1)
    assert disagreements == 213  # every third annotation was asked for where two disagreed
    assert got[0].reference == "FedExField in Landover, Maryland | the Washington metropolitan area"
    assert len({it.group for it in got}) == 301


def test_summeval_scores_per_criterion(mirror, items):
    row = json.loads((mirror / "summeval/summeval.jsonl").open(encoding="utf-8").readline())
    for criterion, score in row["human_scores"].items():
        it = items(f"summeval-{criterion}")[0]
        assert it.id == f"summeval-{criterion}-{row['doc_id']}-{row['system']}"
        assert (it.label, it.labels, it.meta["n_annotators"]) == (score, [], 3)
        assert (it.context, it.response, it.reference) == (row["source"], row["summary"], row["reference"])
        assert it.group == f"summeval:{row['doc_id']}"  # the same article groups across criteria


def test_hh_rlhf_split_and_balance(mirror, items):
    with gzip.open(mirror / "hh-rlhf-harmless/harmless-base-test.jsonl.gz", "rt", encoding="utf-8") as fh:
        raw = [json.loads(line) for line in fh]
    got = items("hh-rlhf-harmless")
    for it, row in zip(got, raw):
        chosen = it.response_a if it.label == "A" else it.response_b
        rejected = it.response_b if it.label == "A" else it.response_a
        assert row["chosen"].lstrip().startswith(it.instruction) and it.instruction.endswith("Assistant:")
        assert row["chosen"].rstrip().endswith(chosen) and row["rejected"].rstrip().endswith(rejected)
        assert it.labels == [it.label]
    share_a = Counter(it.label for it in got)["A"] / len(got)
    assert 0.4 < share_a < 0.6


def test_llmeval2_sources_and_languages(items):
    got = items("llmeval2")
    assert len({it.meta["source"] for it in got}) == 15
    languages = Counter(it.meta["language"] for it in got)
    assert languages["zh"] >= 160 and languages["ru"] == 160 and languages["pt"] == 160
    assert Counter(it.label for it in got) == {"A": 1021, "B": 980, "tie": 482}


def test_dices_unsure_is_null_and_experts_are_separate(mirror, items):
    raw = _raw_json(mirror, "dices/dices_990.json")["instances"][0]
    scores = raw["annotations"]["safety"]["individual_human_scores"]
    it = items("dices-990")[0]
    assert it.id == f"dices-990-{raw['id']}" and len(it.labels) == len(scores)
    assert it.labels.count(None) == scores.count("Unsure") > 0
    assert it.labels.count("yes") == scores.count("Yes") and it.labels.count("no") == scores.count("No")
    assert "\\n" not in it.instruction and "\n" in it.instruction
    crowd, expert = items("dices-350-crowd"), items("dices-350-expert")
    assert {len(x.labels) for x in crowd} == {123} and {len(x.labels) for x in expert} == {1}
    assert [x.group for x in crowd] == [x.group for x in expert]  # same conversations, labels kept apart


def test_unieval_scales(items):
    for criterion, hi in {"understandability": 1, "groundedness": 1, "naturalness": 3, "overall": 5}.items():
        labels = [it.label for it in items(f"topical_chat-{criterion}")]
        assert max(labels) == pytest.approx(hi)
    assert {it.label for it in items("qags_xsum")} == {"yes", "no"}
    assert 0.5 in {it.label for it in items("qags_cnndm")}


def test_roscoe_fields(items):
    esnli, gsm8k = items("roscoe-esnli")[0], items("roscoe-gsm8k")[0]
    assert esnli.reference in {"yes", "no"} and esnli.context.startswith("Situation: ")
    assert esnli.response.startswith("Step 1 - ") and "Judge the generated" not in esnli.response
    assert gsm8k.context is None and gsm8k.reference.endswith("A: 18")
    assert esnli.labels == [esnli.label]


# ---------------------------------------------------------------- reference judges are never labels


@pytest.mark.parametrize("name,judge", REFERENCE_JUDGES)
def test_reference_verdicts_load(name, judge, items):
    ds = get_dataset(name)
    verdicts = list(load_reference_verdicts(name, judge))
    assert [v.id for v in verdicts] == [it.id for it in items(name)]
    sha = ds.files[ds.reference_judges[judge].file].sha256
    for v in verdicts:
        assert v.judge.name == judge and v.judge.fingerprint == f"external:{judge}:{sha[:12]}"
        assert (v.verdict is None) == (v.error is not None)
        if v.verdict is not None:
            assert ds.label_space.check(v.verdict) == v.verdict


def test_pandalm_reference_judges_differ_from_humans(mirror, items):
    human = {it.id: it for it in items("pandalm")}
    gpt = list(load_reference_verdicts("pandalm", "gpt-3.5-turbo"))
    raw = _raw_json(mirror, "pandalm/gpt-3.5-turbo-testset-v1.json")
    garbage = [f"pandalm-{r['idx']}" for r in raw if r["gpt_result"] not in {"1", "2", "Tie"}]
    assert [v.id for v in gpt if v.error] == garbage and len(garbage) == 25
    assert all(v.error.startswith("unparseable: ") for v in gpt if v.error)
    assert Counter(v.verdict for v in gpt)["tie"] == 38
    differ = [v.id for v in gpt if v.verdict and v.verdict != human[v.id].label]
    assert differ  # the judge disagrees with the humans somewhere, so its output is not the label
    assert any(v.verdict not in human[v.id].labels for v in gpt if v.verdict)


def test_nq301_reference_judges(items):
    gpt4 = list(load_reference_verdicts("nq301", "gpt-4"))
    errors = [v.error for v in gpt4 if v.error]
    assert sum(e.startswith("unparseable: I cannot determine") for e in errors) == 2
    assert sum(e.startswith("misaligned:") for e in errors) == 1  # its row 150 judges another answer
    bem = list(load_reference_verdicts("nq301", "BEM"))
    assert all(v.probs and v.confidence >= 0.5 and v.verdict == max(v.probs, key=v.probs.get) for v in bem)
    human = items("nq301")
    for judge in ("gpt-4", "text-davinci-003", "BEM"):
        verdicts = list(load_reference_verdicts("nq301", judge))
        assert sum(v.verdict != it.label for v, it in zip(verdicts, human) if v.verdict) > 100


def test_reference_judge_names_are_checked():
    with pytest.raises(UnknownNameError, match="gpt-3.5-turbo"):
        load_reference_verdicts("pandalm", "gpt-35-turbo")
    with pytest.raises(DataError, match="no reference judges"):
        load_reference_verdicts("summeval-coherence", "gpt-4")


# ---------------------------------------------------------------- lookup, cache and download


def test_unknown_dataset_suggests_nearest():
    with pytest.raises(UnknownNameError) as exc:
        get_dataset("pandalmm")
    assert exc.value.suggestion == "pandalm" and "did you mean 'pandalm'?" in str(exc.value)


def test_conversions_are_never_downloaded(no_data):
    ds = get_dataset("summeval-coherence")
    assert not is_local(ds)
    with pytest.raises(DataError, match="summeval/summeval.jsonl") as exc:
        resolve_file(ds, "data")
    assert "JUDGELOOP_DATA_MIRROR" in str(exc.value)
    assert not _files(no_data)


def _dataset_with(url: str, path: str, sha256: str) -> Dataset:
    ds = get_dataset("qags_xsum")
    return Dataset(
        name="local-test",
        kind="binary",
        description="",
        license="MIT",
        source="local@0",
        files={"data": SourceFile(path, url, sha256, True)},
        rows=239,
        annotators="3",
        criterion="test",
        convert=partial(converters.qags, name="local-test", binary=True),
        labels=ds.labels,
    )


def test_failing_download_names_the_file(no_data):
    ds = _dataset_with("http://127.0.0.1:9/nothing.json", "local/nothing.json", "0" * 64)
    with pytest.raises(DataError, match="download failed") as exc:
        resolve_file(ds, "data")
    assert "local/nothing.json" in str(exc.value)
    assert not _files(no_data)


@pytest.fixture
def http_server(tmp_path, mirror):
    root = tmp_path / "served"
    root.mkdir()
    (root / "qags_xsum.json").write_bytes((mirror / "unieval/qags_xsum.json").read_bytes())
    requests = []

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            requests.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def test_download_with_good_checksum_is_cached(http_server, no_data):
    base, requests = http_server
    sha = get_dataset("qags_xsum").files["data"].sha256
    ds = _dataset_with(f"{base}/qags_xsum.json", "local/qags_xsum.json", sha)
    path = resolve_file(ds, "data")
    assert path == no_data / "local/qags_xsum.json" and hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert is_local(ds) and len(requests) == 1
    assert resolve_file(ds, "data") == path and len(requests) == 1  # served from the cache
    assert sum(1 for _ in ds.convert({"data": path})) == 239
    assert [p.name for p in _files(no_data)] == ["qags_xsum.json"]


def test_download_with_bad_checksum_is_deleted(http_server, no_data):
    base, _ = http_server
    ds = _dataset_with(f"{base}/qags_xsum.json", "local/qags_xsum.json", "f" * 64)
    with pytest.raises(DataError, match="checksum mismatch") as exc:
        resolve_file(ds, "data")
    assert "local/qags_xsum.json" in str(exc.value)
    assert not _files(no_data)
    assert not is_local(ds)


def test_a_changed_local_file_is_rejected(no_data, mirror):
    ds = get_dataset("qags_xsum")
    placed = no_data / ds.files["data"].path
    placed.parent.mkdir(parents=True)
    placed.write_bytes((mirror / ds.files["data"].path).read_bytes())
    assert resolve_file(ds, "data") == placed  # the cache serves when the mirror lacks the file
    placed.write_bytes(b"[]")
    with pytest.raises(DataError, match="checksum mismatch"):
        resolve_file(ds, "data")


def test_vicuna80_votes_become_one_item_per_pair(items):
    got = items("vicuna80-human")
    assert sum(len(it.labels) for it in got) == 6490  # every vote of the mirror, once
    systems = {s for it in got for s in (it.meta["system_a"], it.meta["system_b"])}
    assert systems == {
        "bard", "claude", "gpt35", "gpt4", "guanaco-13b", "guanaco-33b", "guanaco-65b", "guanaco-7b", "vicuna-13b"
    }  # fmt: skip
    assert len({it.meta["question"] for it in got}) == 74
    three = next(it for it in got if len(it.labels) == 3)
    assert three.label == aggregate("pairwise", three.labels)
