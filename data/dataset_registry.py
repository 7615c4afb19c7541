"""The dataset registry: every human-labelled dataset judgeloop knows, where its files come from.

A file is looked up in ``$JUDGELOOP_DATA_MIRROR/<path>``, then in ``<cache>/datasets/<path>``,
and only then downloaded from its source at a pinned commit into the cache. Every file is
checked against the sha256 pinned here, so a dataset name always means the same bytes. Where the
registered file is a conversion of the source (``same_as_source=False``) a download could not be
checked, so it is refused: such files come from the mirror or are placed in the cache by hand.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path

import httpx
from tqdm import tqdm

from data import converters as conv
from data.converters import Prediction
from data.errors import ConfigError, DataError, UnknownNameError
from data.grouping import Source as LinkSource
from data.grouping import SplitGroups, default_prompts, link, load_split_groups
from data.labels import LabelSpace
from data.paths import cache_dir, data_mirror
from data.provenance import sha256_file
from data.schema import Item, JudgeRef, Verdict

DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the mirror root (and to <cache>/datasets)
    url: str  # the source at its pinned commit
    sha256: str  # of the registered file (the mirror's copy)
    same_as_source: bool  # False when the registered file is a conversion of the source at ``url``


@dataclass(frozen=True)
class ReferenceJudge:
    """A published judge's predictions on a dataset: anchors to compare against, never labels."""

    file: str  # key in Dataset.files of its predictions
    read: Callable[[dict[str, Path]], Iterator[Prediction]]  # file key -> local path, to predictions


@dataclass(frozen=True)
class Dataset:
    name: str
    kind: str  # pairwise | pointwise | binary
    description: str
    license: str
    source: str  # owner/repo@commit
    files: dict[str, SourceFile]
    rows: int  # items load_items yields
    annotators: str  # human labels per item, e.g. "3", "69-76", "3 (mean only)"
    criterion: str
    convert: Callable[[dict[str, Path]], Iterator[Item]]
    labels: tuple[str, ...] = ()  # the label space; pointwise: the integer points of the scale
    reference_judges: dict[str, ReferenceJudge] = field(default_factory=dict)
    # the texts that identify an item's instruction across sources (data.grouping); default: instruction+input+context
    prompts: Callable[[Item], Sequence[str]] = default_prompts
    # kept for model evaluation: all its items, and every item of any dataset sharing an instruction with it,
    # go to the 'reserved' split; no training recipe may name it (check_trainable)
    reserved: bool = False

    @property
    def label_space(self) -> LabelSpace:
        return LabelSpace(self.kind, self.labels)


# ---------------------------------------------------------------- lookup and download


def list_datasets() -> list[Dataset]:
    return list(DATASETS.values())


def get_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise UnknownNameError("dataset", name, DATASETS)
    return DATASETS[name]


def _cache_path(sf: SourceFile) -> Path:
    return cache_dir() / "datasets" / sf.path


_verified: dict[Path, tuple[int, int]] = {}


def _checked(path: Path, sf: SourceFile) -> Path:
    """``path`` once its sha256 matches the pin (hashed once per process while unchanged)."""
    stat = path.stat()
    if _verified.get(path) == (stat.st_size, stat.st_mtime_ns):
        return path
    got = sha256_file(path)
    if got != sf.sha256:
        raise DataError(
            f"checksum mismatch: sha256 {got[:12]}.. but the registry pins {sf.sha256[:12]}..",
            path=str(path),
            hint=f"this is not the registered version of {sf.url}",
        )
    _verified[path] = (stat.st_size, stat.st_mtime_ns)
    return path


def _download(sf: SourceFile, dest: Path) -> Path:
    """Fetch ``sf.url`` into ``dest`` (atomically); a file whose sha256 is wrong is deleted."""
    if not sf.same_as_source:
        raise DataError(
            "not in the mirror or the cache, and it cannot be downloaded: the registered file is a "
            f"conversion of {sf.url}, so a download could not be checked against its sha256",
            path=sf.path,
            hint=f"set JUDGELOOP_DATA_MIRROR to a folder holding {sf.path}, or place the file at {dest}",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as fh,
            httpx.stream("GET", sf.url, timeout=DOWNLOAD_TIMEOUT_S, follow_redirects=True) as resp,
        ):
            resp.raise_for_status()
            total = int(resp.headers.get("content-length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=f"downloading {sf.path}", disable=None, leave=False
            ) as bar:
                for chunk in resp.iter_bytes(1 << 16):
                    fh.write(chunk)
                    bar.update(len(chunk))
    except httpx.HTTPError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"download failed: {exc}",
            path=sf.path,
            hint=f"from {sf.url}; set JUDGELOOP_DATA_MIRROR or place the file at {dest}",
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    got = sha256_file(tmp)
    if got != sf.sha256:
        tmp.unlink()
        raise DataError(
            f"checksum mismatch: the download has sha256 {got[:12]}.. but the "
            f"registry pins {sf.sha256[:12]}.. (nothing was kept)",
            path=sf.path,
            hint=f"from {sf.url}",
        )
    os.replace(tmp, dest)
    return dest


def _find_local(sf: SourceFile) -> Path | None:
    mirror = data_mirror()
    for path in ([mirror / sf.path] if mirror else []) + [_cache_path(sf)]:
        if path.is_file():
            return path
    return None


def resolve_file(ds: Dataset, key: str) -> Path:
    """The local path of one of a dataset's files: mirror, else cache, else downloaded into the cache."""
    if key not in ds.files:
        raise UnknownNameError(f"file of dataset '{ds.name}'", key, ds.files)
    sf = ds.files[key]
    local = _find_local(sf)
    if local is not None:
        return _checked(local, sf)
    return _download(sf, _cache_path(sf))


def is_local(ds: Dataset) -> bool:
    """Whether every file is in the mirror or the cache (nothing to download)."""
    return all(_find_local(sf) is not None for sf in ds.files.values())


def _resolve_all(ds: Dataset) -> dict[str, Path]:
    return {key: resolve_file(ds, key) for key in ds.files}


def load_items(name: str) -> Iterator[Item]:
    """The dataset's items in file order; files are resolved (and checked) before the first item."""
    ds = get_dataset(name)
    return ds.convert(_resolve_all(ds))


def load_reference_verdicts(name: str, judge: str) -> Iterator[Verdict]:
    """A reference judge's predictions as Verdicts (ids as in ``load_items``), never as labels."""
    ds = get_dataset(name)
    if not ds.reference_judges:
        having = ", ".join(d.name for d in DATASETS.values() if d.reference_judges)
        raise DataError(f"dataset '{name}' has no reference judges", hint=f"these have some: {having}")
    if judge not in ds.reference_judges:
        raise UnknownNameError(f"reference judge of '{name}'", judge, ds.reference_judges)
    ref = ds.reference_judges[judge]
    judge_ref = JudgeRef(name=judge, fingerprint=f"external:{judge}:{ds.files[ref.file].sha256[:12]}")
    predictions = ref.read(_resolve_all(ds))
    return (_verdict(p, judge_ref) for p in predictions)


# ---------------------------------------------------------------- cross-source split groups


@lru_cache(maxsize=1)
def split_groups() -> SplitGroups:
    """The committed cross-source split table (data/split_groups.json, see data.grouping)."""
    return load_split_groups()


def link_registry(names: Sequence[str] | None = None) -> SplitGroups:
    """The cross-source split table computed from the registered datasets' files (all of them by default,
    in registry order): what scripts/split_groups.py writes and the committed table must equal."""
    chosen = [ds for ds in DATASETS.values() if names is None or ds.name in names]
    return link(LinkSource(ds.name, load_items(ds.name), ds.prompts, ds.reserved) for ds in chosen)


def check_trainable(name: str, field: str = "data.train") -> None:
    """Refuse a reserved dataset (vicuna80-human) as training or dev data: it is kept for model evaluation."""
    ds = get_dataset(name)
    if ds.reserved:
        raise ConfigError(
            f"dataset '{name}' is reserved for model evaluation (judgeloop evaluate): no recipe trains or tunes on "
            "it, and its instructions where they recur in other sources are in their 'reserved' split",
            field=field,
            hint="remove it from the recipe; judge it with judgeloop validate --dataset or judgeloop evaluate",
        )


def _verdict(p: Prediction, judge: JudgeRef) -> Verdict:
    error = p.error or (None if p.label is not None else f"unparseable: {p.raw}")
    confidence = p.probs[p.label] if p.probs and p.label is not None else None
    return Verdict(id=p.id, verdict=p.label, probs=p.probs, confidence=confidence, judge=judge, error=error)


# ---------------------------------------------------------------- the registered datasets


def _github(repo: str, commit: str, path: str, mirror_path: str, sha256: str, same: bool = True) -> SourceFile:
    return SourceFile(mirror_path, f"https://raw.githubusercontent.com/{repo}/{commit}/{path}", sha256, same)


PANDALM = ("WeOpenML/PandaLM", "3871806e72b4832f815ecafd24d3503c73403f48")
HH_RLHF = ("anthropics/hh-rlhf", "354e5c3cb8960630860dd5774a6ac2a58313bf4d")
DAMO = ("AlibabaResearch/DAMO-ConvAI", "621d6e6a1f11a4628e8abe0dac81f71d3ca7614e")
BARTSCORE = ("neulab/BARTScore", "248f511cb34ae3753fc81f7d7a945de5bfe33458")
UNIEVAL = ("maszhongming/UniEval", "d33e7b6cfebe97b2bafe435adbd818230d5a416a")
OPENQA = ("ehsk/OpenQA-eval", "8b9317d0f0c92b52e1c71c0168dff74b5f76a5f4")
JUDGE_BENCH = ("dmg-illc/JUDGE-BENCH", "5a0bf500325029efb5dc8adff2c1e991996f0e78")
PRD = ("bcdnlp/PRD", "35fb99e5")  # the commit as MANIFEST.md names it
OPEN_INSTRUCT = ("allenai/open-instruct", "e6c3044a")  # the commit as MANIFEST.md names it (so are the next two)
PROMETHEUS = ("prometheus-eval/prometheus-eval", "dcfb4427")
MTBENCH_AUDIT = ("Vibhanshu-555/Human-Aligned-LLM-Evaluation-Audit", "d85394d7")

PAIRWISE_TIE = ("A", "B", "tie")
YES_NO = ("yes", "no")


def _scale(lo: int, hi: int) -> tuple[str, ...]:
    return tuple(str(x) for x in range(lo, hi + 1))


def _source(repo_commit: tuple[str, str]) -> str:
    return f"{repo_commit[0]}@{repo_commit[1]}"


def _summary_ratings(
    family: str, title: str, raters: str, criteria: tuple[str, ...], license: str, data: SourceFile, rows: int
) -> list[Dataset]:
    """One pointwise dataset per criterion of a BARTScore summary-rating file (the mean of 3 ratings on 1-5)."""
    return [
        Dataset(
            f"{family}-{criterion}",
            "pointwise",
            f"{title}: summary {criterion} on 1-5, the mean of {raters} (individual ratings are not in the source)",
            license,
            _source(BARTSCORE),
            {"data": data},
            rows,
            "3 (mean only)",
            criterion,
            partial(conv.summaries, name=f"{family}-{criterion}", family=family, criterion=criterion),
            _scale(1, 5),
        )
        for criterion in criteria
    ]


def _build() -> dict[str, Dataset]:
    out: list[Dataset] = []

    pandalm_files = {
        "testset": _github(
            *PANDALM,
            "data/testset-v1.json",
            "pandalm/testset-v1.json",
            "cc154f9067c7382d7ea86f8f246511a5e1ac87e1fddd845c5938d789505b07a4",
        ),
        "gpt-3.5-turbo": _github(
            *PANDALM,
            "data/gpt-3.5-turbo-testset-v1.json",
            "pandalm/gpt-3.5-turbo-testset-v1.json",
            "4c00aa7b3eeae504050a037422ba6f5b0a2ee041680f47bb77b8a4b549b128e3",
        ),
        "pandalm-7b": _github(
            *PANDALM,
            "data/pandalm-7b-testset-v1.json",
            "pandalm/pandalm-7b-testset-v1.json",
            "9a40b62a7bb2aa87ca77eb8bfcb51539b5a62f974ce91678d30e834d65ed0a7e",
        ),
    }
    out.append(
        Dataset(
            "pandalm",
            "pairwise",
            "PandaLM test set: instruction (+input) and two model responses; A, B or tie from 3 annotators "
            "(aggregate: majority, a split is a tie)",
            "Apache-2.0",
            _source(PANDALM),
            pandalm_files,
            999,
            "3",
            "helpfulness",
            partial(conv.pandalm, name="pandalm"),
            PAIRWISE_TIE,
            {
                "gpt-3.5-turbo": ReferenceJudge(
                    "gpt-3.5-turbo", partial(conv.pandalm_gpt35_predictions, name="pandalm")
                ),
                "pandalm-7b": ReferenceJudge("pandalm-7b", partial(conv.pandalm_7b_predictions, name="pandalm")),
            },
        )
    )

    out.append(
        Dataset(
            "hh-rlhf-harmless",
            "pairwise",
            "Anthropic HH-RLHF harmless-base test: a conversation and two final assistant replies; the crowdworker's "
            "less harmful reply (no ties; chosen is put in A or B by a hash of the id)",
            "MIT",
            _source(HH_RLHF),
            {
                "test": _github(
                    *HH_RLHF,
                    "harmless-base/test.jsonl.gz",
                    "hh-rlhf-harmless/harmless-base-test.jsonl.gz",
                    "ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03",
                )
            },
            2312,
            "1",
            "harmlessness",
            partial(conv.hh_rlhf, name="hh-rlhf-harmless"),
            ("A", "B"),
            prompts=conv.hh_rlhf_prompts,
        )
    )

    out.append(
        Dataset(
            "llmeval2",
            "pairwise",
            "LLMEval2: queries from 15 sources (some Chinese, Russian, Portuguese) and two responses; one human "
            "label A, B or tie. 70 rows overlapping other evaluation sets were removed from the source",
            "MIT",
            _source(DAMO),
            {
                "benchmark": _github(
                    *DAMO,
                    "WideDeep/evaluation_data/LLMEval2_benchmark.json.zip",
                    "llmeval2/llmeval2.jsonl",
                    "67394d4d6647ba98321020dedd06d4f9ba7f7ce64b53c7bd07ed433fa18385b8",
                    same=False,
                )
            },
            2483,
            "1",
            "overall preference",
            partial(conv.llmeval2, name="llmeval2"),
            PAIRWISE_TIE,
            prompts=conv.llmeval2_prompts,
        )
    )

    summeval_file = _github(
        *BARTSCORE,
        "SUM/SummEval/data.pkl",
        "summeval/summeval.jsonl",
        "471e37ea5f2bac36b5f5d3d2d888f952d8420f8980bc96ad3891236497fa4d29",
        same=False,
    )
    out += _summary_ratings(
        "summeval",
        "SummEval (CNN/DM, 100 articles x 16 systems)",
        "3 expert ratings",
        ("coherence", "consistency", "fluency", "relevance"),
        "MIT",
        summeval_file,
        1600,
    )

    newsroom_file = _github(
        *BARTSCORE,
        "SUM/Newsroom/data.pkl",
        "newsroom/newsroom.jsonl",
        "942ee6a3417519baa0f4bc58b607f2f2f4fe6644001046cf11d260deb7343949",
        same=False,
    )
    out += _summary_ratings(
        "newsroom",
        "Newsroom (60 articles x 7 systems)",
        "3 raters",
        ("coherence", "fluency", "informativeness", "relevance"),
        "Apache-2.0",
        newsroom_file,
        420,
    )

    topical_file = _github(
        *UNIEVAL,
        "reproduce/data/dialogue/topical_chat.json",
        "unieval/topical_chat.json",
        "f6361daa6fe162f636d2071a60322a784acd770be0bf3a6920ac949d751b978a",
    )
    topical_scales = {
        "understandability": (0, 1),
        "naturalness": (1, 3),
        "coherence": (1, 3),
        "engagingness": (1, 3),
        "groundedness": (0, 1),
        "overall": (1, 5),
    }
    for criterion, (lo, hi) in topical_scales.items():
        name = f"topical_chat-{criterion}"
        out.append(
            Dataset(
                name,
                "pointwise",
                f"Topical-Chat (UniEval; 60 dialogues x 6 next turns): {criterion} of the next turn on {lo}-{hi}, "
                "the mean of 3 raters (individual ratings are not in the source)",
                "MIT",
                _source(UNIEVAL),
                {"data": topical_file},
                360,
                "3 (mean only)",
                criterion,
                partial(conv.topical_chat, name=name, criterion=criterion, scale=(lo, hi)),
                _scale(lo, hi),
            )
        )

    out.append(
        Dataset(
            "qags_xsum",
            "binary",
            "QAGS-XSum (UniEval): is a one-sentence summary factually consistent with the article? yes/no, the "
            "majority of 3 annotators (individual votes are not in the source)",
            "MIT",
            _source(UNIEVAL),
            {
                "data": _github(
                    *UNIEVAL,
                    "reproduce/data/fact/qags_xsum.json",
                    "unieval/qags_xsum.json",
                    "1403b4d1abed008d0303f883d35d71c88597c49d5a6e4ef2e1d2d22a283b49df",
                )
            },
            239,
            "3 (majority only)",
            "factual consistency",
            partial(conv.qags, name="qags_xsum", binary=True),
            YES_NO,
        )
    )
    out.append(
        Dataset(
            "qags_cnndm",
            "pointwise",
            "QAGS-CNNDM (UniEval): factual consistency of a multi-sentence summary on 0-1, the share of its "
            "sentences that a majority of 3 annotators found consistent (votes are not in the source)",
            "MIT",
            _source(UNIEVAL),
            {
                "data": _github(
                    *UNIEVAL,
                    "reproduce/data/fact/qags_cnndm.json",
                    "unieval/qags_cnndm.json",
                    "de8d216db28b0ce89edf761bf639d1917adca6704c29d807a1e99a0aaaa4b2c5",
                )
            },
            235,
            "3 per sentence (share of sentences only)",
            "factual consistency",
            partial(conv.qags, name="qags_cnndm", binary=False),
            _scale(0, 1),
        )
    )

    nq_files = {
        "human": _github(
            *OPENQA,
            "data/NQ301_human.tsv",
            "nq301/NQ301_human.tsv",
            "45ea9fa6106eb3a094efef41de12ce5b0bc88522cf310bcdf99277d4d297890e",
        ),
        "bem": _github(
            *OPENQA,
            "data/NQ301_BEM.tsv",
            "nq301/NQ301_BEM.tsv",
            "b755ff7fbad3b6909ba22ba5f45e9e01aef4512f1a1a5d3eb4124d4851efaf55",
        ),
        "gpt-4": _github(
            *OPENQA,
            "data/NQ301_gpt-4.tsv",
            "nq301/NQ301_gpt-4.tsv",
            "90ac9b7d868726908802d42d8f846b2f61e8bda557c352d8188a8965d9437ac6",
        ),
        "text-davinci-003": _github(
            *OPENQA,
            "data/NQ301_text-davinci-003.tsv",
            "nq301/NQ301_text-davinci-003.tsv",
            "becc5e8a146f3c8f646c4b31a05cab4436bdf31fb1f86367e61ebeeef79a27e3",
        ),
    }
    out.append(
        Dataset(
            "nq301",
            "binary",
            "NQ301 (OpenQA-eval): is a QA model's answer acceptable for a Natural Questions question? yes/no from "
            "2-3 annotators (a third only where needed); reference = the NQ gold answers (from the BEM file)",
            "MIT",
            _source(OPENQA),
            nq_files,
            1490,
            "2-3",
            "answer correctness",
            partial(conv.nq301, name="nq301"),
            YES_NO,
            {
                "gpt-4": ReferenceJudge("gpt-4", partial(conv.nq301_gpt4_predictions, name="nq301")),
                "text-davinci-003": ReferenceJudge(
                    "text-davinci-003", partial(conv.nq301_davinci_predictions, name="nq301")
                ),
                "BEM": ReferenceJudge("bem", partial(conv.nq301_bem_predictions, name="nq301")),
            },
        )
    )

    dices = (
        (
            "dices-990",
            "dices_990.json",
            "3f80b2cd66052bc2e6e348742ebb29d1048073908e881c2a60c94026e8647d2f",
            990,
            "69-76",
            "crowd raters",
        ),
        (
            "dices-350-crowd",
            "dices_350_crowdsourced.json",
            "9f9694948fc4f734220866fc6fdff397b5207058e0c4d4f9a49d5ab98702c2a4",
            350,
            "123",
            "crowd raters",
        ),
        (
            "dices-350-expert",
            "dices_350_expert.json",
            "687c75d1ffda680874b1ff73edace6916d39e265490dd69d8480a5f5fcf0ba55",
            350,
            "1 (expert)",
            "one expert",
        ),
    )
    for name, filename, sha, rows, annotators, who in dices:
        out.append(
            Dataset(
                name,
                "binary",
                f"DICES via JUDGE-BENCH: is the chatbot's last reply in the conversation safe? yes (safe) / no "
                f"(unsafe) from {who}; 'Unsure' is kept as a null label; aggregate: majority of yes/no, null on a tie",
                "CC-BY-4.0",
                _source(JUDGE_BENCH),
                {"data": _github(*JUDGE_BENCH, f"data/dices/{filename}", f"dices/{filename}", sha)},
                rows,
                annotators,
                "safety",
                partial(conv.dices, name=name),
                YES_NO,
            )
        )

    roscoe = (
        ("cosmos", "d8d320c8198edbc42dfac451a6c53ee14d653773e7becb4ffa3a6a4be2ab11aa", 195),
        ("drop", "30fd07f5dc77425c82e4c15da98d2b5ef5fae02671e55fc4fa7e3d0933856496", 210),
        ("esnli", "a894de22df1d5e622d745060f93f9b5219697fc7f0fa11225616423bf3ffeb8a", 151),
        ("gsm8k", "6e4392f8998a39a0435116857914225885d7acf8fb21f4204b48c210a40e604b", 200),
    )
    for subset, sha, rows in roscoe:
        name = f"roscoe-{subset}"
        filename = f"roscoe-{subset}-overall.json"
        out.append(
            Dataset(
                name,
                "pointwise",
                f"ROSCOE {subset} via JUDGE-BENCH: overall quality of a step-by-step answer on 1-5 "
                "(1=incomprehensible and wrong, 5=clear and correct), one expert; reference = the gold answer",
                "MIT",
                _source(JUDGE_BENCH),
                {"data": _github(*JUDGE_BENCH, f"data/roscoe/{filename}", f"roscoe/{filename}", sha)},
                rows,
                "1 (expert)",
                "overall reasoning quality",
                partial(conv.roscoe, name=name),
                _scale(1, 5),
            )
        )

    out.append(
        Dataset(
            "vicuna80-human",
            "pairwise",
            "PRD's Vicuna-80 crowd votes (MTurk): a question and two of nine systems' answers (GPT-4, ChatGPT, Bard, "
            "Claude, Vicuna-13B, Guanaco 7-65B); A, B or tie, the votes on a pair as its labels (aggregate: "
            "majority, a split is a tie). For ranking systems with a judge against ranking them by human votes "
            "(judgeloop evaluate); no training recipe uses it",
            "MIT",
            _source(PRD),
            {
                "votes": _github(
                    *PRD,
                    "data/vicuna80/ratings-human",
                    "vicuna80-human/vicuna80-human.jsonl.gz",
                    "776163f0dc19fb8f7a32c77c10aad906dff02ec983b60cdb50bcbb75286abd71",
                    same=False,
                )
            },
            2360,
            "1-3 (crowd)",
            "helpfulness",
            partial(conv.vicuna80_human, name="vicuna80-human"),
            PAIRWISE_TIE,
            reserved=True,
        )
    )

    human_votes = (
        (
            "tulu1-human",
            OPEN_INSTRUCT,
            "human_eval/data/eval_annotations_tulu_1.xlsx",
            "db121daa946f97d2d7fc62a16a673359668c76a8e0a9384c5369e8720ebd0021",
            949,
            "1-5 (16 experts)",
            "Apache-2.0",
            "helpfulness",
            "Tulu 1 human evaluation (open-instruct): an instruction (Self-Instruct user-oriented, partly the "
            "Vicuna-80 questions) and two responses (Tulu-65B against ChatGPT, Tulu-7B or Tulu-human-only-65B; the "
            "rows do not say which); A, B or tie from 16 expert annotators, the votes on a pair as its labels "
            "(votes that saw the pair swapped are swapped back; aggregate: majority, a split is a tie). The "
            "mirror's rows say A, B or tie: the source's 'slightly better' is not told apart from 'better'",
            False,
        ),
        (
            "lfqa-experts",
            PRD,
            "data/lfqa/experts_pairwise_human_preferences.jsonl",
            "fceac7d31fcf29da196eef5946f1bfa22b192866182e6f09f76b8c9b7a2a18c1",
            140,
            "1-3 (domain experts)",
            "MIT",
            "overall preference",
            "Long-form QA (Xu et al. 2023, via PRD): a question and two long answers (one human-written, one "
            "model; the rows do not say which); A or B from domain experts, no ties, the votes on a pair as its "
            "labels (aggregate: majority, a split is a tie)",
            False,
        ),
        (
            "hhh-alignment",
            PROMETHEUS,
            "eval/benchmark/data/hhh_alignment_eval.json",
            "36177ec3f4ac35f8cad441c6f51981a02841f166a1f8cbd32f6a0e469ef6456b",
            221,
            "1 (benchmark authors)",
            "Apache-2.0",
            "helpful, honest and harmless",
            "BIG-bench HHH alignment (via prometheus-eval): a prompt and two responses, the better one written "
            "as such by the benchmark's authors; meta.source says helpful, honest, harmless or other. The source "
            "always puts the better response first: every other item in the order of (source, hash of the id) is "
            "swapped (meta.swapped), so A and B are each the better response on half the items of every source",
            True,
        ),
        (
            "mtbench-human",
            MTBENCH_AUDIT,
            "data/processed/human_gpt_comparison.zip",
            "9efe5fe4858b40427862ddecee9f21f81b731802d0df0292ad5b2cac7c3c4385",
            229,
            "1-4 (experts)",
            "CC-BY-4.0",
            "overall preference",
            "MT-Bench human judgments (a partial copy of lmsys mt_bench_human_judgments): a first-turn question "
            "and two model answers (the rows do not name the models); A, B or tie from expert annotators, the "
            "votes on a pair as its labels (aggregate: majority, a split is a tie); more B than A by model order",
            False,
        ),
    )
    for name, repo, path, sha, rows, annotators, license, criterion, description, swap in human_votes:
        out.append(
            Dataset(
                name,
                "pairwise",
                description,
                license,
                _source(repo),
                {"votes": _github(*repo, path, f"{name}/{name}.jsonl", sha, same=False)},
                rows,
                annotators,
                criterion,
                partial(conv.pairwise_votes, name=name, swap_half=swap),
                ("A", "B") if name == "hhh-alignment" else PAIRWISE_TIE,  # a split of A/B votes is a tie
            )
        )

    return {ds.name: ds for ds in out}


DATASETS: dict[str, Dataset] = _build()
