"""Converters: one function per source format, turning the raw files into canonical Items.

Each converter takes ``{file key: local path}`` (see ``data.dataset_registry``) and yields ``Item``s in
file order. Labels are only ever human labels; reference judges' predictions come out of the
``*_predictions`` readers as ``Prediction``s and become Verdicts in ``data.dataset_registry``.
JSONL and TSV sources are read line by line; JSON documents are parsed whole.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Optional

from data.errors import DataError
from data.jsonl import iter_json_lines
from data.labels import aggregate
from data.schema import Item

PANDALM_LABELS = {1: "A", 2: "B", 0: "tie"}
LLMEVAL2_LABELS = {"model1": "A", "model2": "B", "TIE": "tie"}
SUMMARIZE = "Summarize the news article."
ASSISTANT_TAG = "\n\nAssistant:"


class Prediction(NamedTuple):
    """One reference judge's prediction for one item, before it becomes a Verdict."""

    id: str
    label: Optional[str]  # in the dataset's label space; None if unparseable
    raw: str  # the prediction as the file gives it
    probs: Optional[dict[str, float]] = None
    error: Optional[str] = None  # why there is no label, when not "unparseable"


def _group(prefix: str, text: str) -> str:
    """A stable group key for free text (a prompt, a conversation)."""
    return f"{prefix}:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


def _text(value: Any) -> str:
    # a few source responses are JSON booleans (pandalm); the model wrote the word
    return str(value) if isinstance(value, bool) else value


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"invalid JSON: {exc}", path=str(path)) from None


def _tsv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` of a TSV file after its header, streaming."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader, None)
        for row in reader:
            yield reader.line_num, row


def _tsv_dicts(path: Path, need: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"missing columns {missing} (has {reader.fieldnames})", path=str(path), line=1)
        for row in reader:
            yield reader.line_num, row


def _map(table: dict, value: Any, path: Path, where: str, line: int | None = None):
    if value not in table:
        raise DataError(
            f"unexpected value {value!r} (expected one of {sorted(map(str, table))})",
            path=str(path),
            line=line,
            field=where,
        )
    return table[value]


# ---------------------------------------------------------------- pandalm


def pandalm(paths: dict[str, Path], *, name: str) -> Iterator[Item]:
    """PandaLM testset-v1: response1 vs response2, three annotators each (1, 2, 0=tie)."""
    path = paths["testset"]
    for row in _load_json(path):
        idx = row["idx"]
        labels = [_map(PANDALM_LABELS, row[f"annotator{k}"], path, f"[idx {idx}].annotator{k}") for k in (1, 2, 3)]
        yield Item(
            id=f"{name}-{idx}",
            group=_group(name, row["instruction"] + "\n" + row["input"]),
            kind="pairwise",
            instruction=row["instruction"],
            input=row["input"] or None,
            response_a=_text(row["response1"]),
            response_b=_text(row["response2"]),
            labels=labels,
            label=aggregate("pairwise", labels),
            meta={"source": name, "motivation_app": row["motivation_app"], "models": row["cmp_key"]},
        )


def _pandalm_predictions(path: Path, name: str, field: str) -> Iterator[Prediction]:
    for row in _load_json(path):
        raw = row[field]
        label = {"1": "A", "2": "B", "0": "tie", "tie": "tie"}.get(str(raw).strip().lower())
        yield Prediction(f"{name}-{row['idx']}", label, str(raw))


def pandalm_gpt35_predictions(paths: dict[str, Path], *, name: str) -> Iterator[Prediction]:
    return _pandalm_predictions(paths["gpt-3.5-turbo"], name, "gpt_result")


def pandalm_7b_predictions(paths: dict[str, Path], *, name: str) -> Iterator[Prediction]:
    return _pandalm_predictions(paths["pandalm-7b"], name, "pandalm_result")


# ---------------------------------------------------------------- hh-rlhf


def hh_rlhf(paths: dict[str, Path], *, name: str) -> Iterator[Item]:
    """Anthropic hh-rlhf: chosen vs rejected dialogues that differ only in the final reply.

    The shared prefix (up to and including the last common "\\n\\nAssistant:") is the
    instruction; which of A/B holds the chosen reply follows a hash of the item id.
    """
    path = paths["test"]
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            chosen, rejected = row["chosen"], row["rejected"]
            # a few dialogues hold "Assistant:" inside a reply; cut at the last tag both share
            cut = os.path.commonprefix([chosen, rejected]).rfind(ASSISTANT_TAG)
            if cut < 0:
                raise DataError("chosen and rejected share no assistant turn", path=str(path), line=lineno)
            cut += len(ASSISTANT_TAG)
            item_id = f"{name}-{lineno - 1}"
            chosen_is_a = hashlib.sha256(item_id.encode()).digest()[0] % 2 == 0
            a, b = (chosen, rejected) if chosen_is_a else (rejected, chosen)
            label = "A" if chosen_is_a else "B"
            first_turn = chosen.split(ASSISTANT_TAG, 1)[0].strip()
            yield Item(
                id=item_id,
                group=_group(name, first_turn),
                kind="pairwise",
                instruction=chosen[:cut].lstrip(),
                response_a=a[cut:].strip(),
                response_b=b[cut:].strip(),
                labels=[label],
                label=label,
                meta={"source": name},
            )


# ---------------------------------------------------------------- llmeval2

_HAN = re.compile(r"[\u4e00-\u9fff]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")


def _language(text: str, subset: str) -> str:
    """A cheap guess: by script, else by the source's name, else English."""
    if _HAN.search(text):
        return "zh"
    if _CYRILLIC.search(text):
        return "ru"
    if "portuguese" in subset:
        return "pt"
    return "en"


_FIRST_USER_TURN = re.compile(r"^user: (.*?)\n\nassistant:", re.S)


def _llmeval2_prompt(row: dict) -> str:
    """The prompt a split keeps together. mt-bench rows have an empty query: each response holds
    the whole two-turn conversation, so the first user turn found in either stands for the prompt."""
    if row["query"].strip():
        return row["query"]
    for response in (row["response1"], row["response2"]):
        if m := _FIRST_USER_TURN.match(response):
            return m[1]
    return row["response1"] + row["response2"]


def llmeval2(paths: dict[str, Path], *, name: str) -> Iterator[Item]:
    """LLMEval2: query, response1 vs response2, one human label model1 / model2 / TIE."""
    path = paths["benchmark"]
    for lineno, row in iter_json_lines(path):
        label = _map(LLMEVAL2_LABELS, row["human"], path, "human", lineno)
        yield Item(
            id=f"{name}-{lineno - 1}",
            group=_group(name, _llmeval2_prompt(row)),
            kind="pairwise",
            instruction=row["query"],
            response_a=row["response1"],
            response_b=row["response2"],
            labels=[label],
            label=label,
            meta={
                "source": f"{name}/{row['dataset']}",
                "language": _language(row["query"] + row["response1"], row["dataset"]),
            },
        )


# ---------------------------------------------------------------- summeval, newsroom (BARTScore)


def summaries(paths: dict[str, Path], *, name: str, family: str, criterion: str) -> Iterator[Item]:
    """BARTScore's SummEval / Newsroom: one summary of an article, the mean of 3 raters on 1-5."""
    path = paths["data"]
    for lineno, row in iter_json_lines(path):
        score = row["human_scores"].get(criterion)
        if score is None:
            raise DataError(f"no '{criterion}' score", path=str(path), line=lineno, field="human_scores")
        yield Item(
            id=f"{name}-{row['doc_id']}-{row['system']}",
            group=f"{family}:{row['doc_id']}",
            kind="pointwise",
            instruction=SUMMARIZE,
            context=row["source"],
            reference=row["reference"] or None,
            response=row["summary"],
            labels=[],
            label=score,
            meta={"source": name, "system": row["system"], "criterion": criterion, "scale": [1, 5], "n_annotators": 3},
        )


# ---------------------------------------------------------------- unieval


def topical_chat(paths: dict[str, Path], *, name: str, criterion: str, scale: tuple[int, int]) -> Iterator[Item]:
    """UniEval's Topical-Chat: a dialogue, a knowledge fact and one next turn; means of 3 raters."""
    path = paths["data"]
    for n, row in enumerate(_load_json(path)):
        dialogue = "\n".join(turn.strip() for turn in row["source"].split("\n") if turn.strip())
        score = row["scores"][criterion]
        if not scale[0] <= score <= scale[1]:
            raise DataError(f"score {score} outside {scale}", path=str(path), field=f"[{n}].scores.{criterion}")
        yield Item(
            id=f"{name}-{n}",
            group=_group("topical_chat", dialogue),
            kind="pointwise",
            instruction="Continue the dialogue with the next turn; use the fact if it helps.",
            context=f"{dialogue}\n\nFact: {row['context'].strip()}",
            response=row["system_output"].strip(),
            labels=[],
            label=score,
            meta={
                "source": name,
                "system": row["system_id"],
                "criterion": criterion,
                "scale": list(scale),
                "n_annotators": 3,
            },
        )


def qags(paths: dict[str, Path], *, name: str, binary: bool) -> Iterator[Item]:
    """UniEval's QAGS: a summary's factual consistency with its article.

    QAGS-XSum scores are 0/1 (the majority of 3 votes on a one-sentence summary): binary yes/no.
    QAGS-CNNDM scores are the share of summary sentences a majority found consistent: 0-1.
    """
    path = paths["data"]
    for n, row in enumerate(_load_json(path)):
        score = row["scores"]["consistency"]
        meta = {"source": name, "criterion": "consistency", "n_annotators": 3}
        if binary:
            label = _map({1: "yes", 0: "no"}, score, path, f"[{n}].scores.consistency")
        else:
            if not 0 <= score <= 1:
                raise DataError(f"score {score} outside 0..1", path=str(path), field=f"[{n}].scores.consistency")
            label = score
            meta["scale"] = [0, 1]
        yield Item(
            id=f"{name}-{row['doc_id']}",
            group=f"{name}:{row['doc_id']}",
            kind="binary" if binary else "pointwise",
            instruction=SUMMARIZE,
            context=row["source"],
            response=row["system_output"].strip(),
            labels=[],
            label=label,
            meta=meta,
        )


# ---------------------------------------------------------------- nq301 (OpenQA-eval)


def _yes_no(value: str) -> Optional[str]:
    """The label for a Yes/No cell; None for a blank or anything else."""
    value = value.strip().lower()
    return value if value in ("yes", "no") else None


def _gold_answers(path: Path) -> dict[str, str]:
    """Question -> its gold answers ("a | b"), from the BEM file (the only one that has them)."""
    return {row["Question"]: row["Gold answers"] for _, row in _tsv_dicts(path, ("Question", "Gold answers"))}


def nq301(paths: dict[str, Path], *, name: str) -> Iterator[Item]:
    """NQ301: is a model's answer acceptable? annotator1..3 Yes/No (annotator3 mostly blank)."""
    path = paths["human"]
    gold = _gold_answers(paths["bem"])
    cols = ("id", "Question", "Model answer", "Acceptable?", "annotator1", "annotator2", "annotator3")
    for n, (lineno, row) in enumerate(_tsv_dicts(path, cols)):
        labels = []
        for k in (1, 2, 3):
            value = row[f"annotator{k}"]
            if value.strip() and _yes_no(value) is None:
                raise DataError(f"unexpected value {value!r}", path=str(path), line=lineno, field=f"annotator{k}")
            labels.append(_yes_no(value))
        yield Item(
            id=f"{name}-{n}",
            group=f"{name}:q{row['id']}",
            kind="binary",
            instruction=row["Question"],
            reference=gold.get(row["Question"]),
            response=row["Model answer"],
            labels=labels,
            label=aggregate("binary", labels),
            meta={"source": name, "question_id": int(row["id"])},
        )


def _norm(text: str) -> str:
    return re.sub(r"\W", "", text.lower())


def _nq301_judge(paths: dict[str, Path], name: str, key: str, read: Callable) -> Iterator[Prediction]:
    """Align a judge file row by row with the human file; a row about another answer gets an error."""
    human = list(_tsv_rows(paths["human"]))
    judged = list(read(paths[key]))
    if len(judged) != len(human):
        raise DataError(f"{len(judged)} rows, but the human file has {len(human)}", path=str(paths[key]))
    for n, ((_, h), (lineno, qa, label, raw, probs)) in enumerate(zip(human, judged)):
        ours, theirs = _norm(h[1] + h[2]), _norm(qa)
        if not (ours.startswith(theirs) or theirs.startswith(ours)):
            yield Prediction(
                f"{name}-{n}", None, raw, error=f"misaligned: line {lineno} of {paths[key].name} judges another answer"
            )
            continue
        yield Prediction(f"{name}-{n}", label, raw, probs)


def _read_gpt4(path: Path):
    for lineno, row in _tsv_dicts(path, ("Question", "Model answer", "Acceptable?", "gpt-4")):
        raw = row["gpt-4"]
        yield (
            lineno,
            row["Question"] + row["Model answer"],
            _yes_no(row["Acceptable?"]),
            raw or row["Acceptable?"],
            None,
        )


def _read_davinci(path: Path):
    # the file's rows have 4 fields: question and answer are run together in one
    for lineno, row in _tsv_rows(path):
        if len(row) != 4:
            raise DataError(f"expected 4 fields, got {len(row)}", path=str(path), line=lineno)
        yield lineno, row[1], _yes_no(row[2]), row[3] or row[2], None


def _read_bem(path: Path):
    cols = ("Question", "Model answer", "Acceptable?", "BEM probs per gold answer")
    for lineno, row in _tsv_dicts(path, cols):
        # [[p(not equivalent), p(equivalent)] per gold answer]; acceptable if any gold matches
        p_yes = max(pair[1] for pair in json.loads(row["BEM probs per gold answer"]))
        yield (
            lineno,
            row["Question"] + row["Model answer"],
            _yes_no(row["Acceptable?"]),
            row["Acceptable?"],
            {"yes": p_yes, "no": 1.0 - p_yes},
        )


def nq301_gpt4_predictions(paths: dict[str, Path], *, name: str) -> Iterator[Prediction]:
    return _nq301_judge(paths, name, "gpt-4", _read_gpt4)


def nq301_davinci_predictions(paths: dict[str, Path], *, name: str) -> Iterator[Prediction]:
    return _nq301_judge(paths, name, "text-davinci-003", _read_davinci)


def nq301_bem_predictions(paths: dict[str, Path], *, name: str) -> Iterator[Prediction]:
    return _nq301_judge(paths, name, "bem", _read_bem)


# ---------------------------------------------------------------- JUDGE-BENCH (dices, roscoe)

DICES_LABELS = {"Yes": "yes", "No": "no", "Unsure": None}


def dices(paths: dict[str, Path], *, name: str) -> Iterator[Item]:
    """DICES via JUDGE-BENCH: is the chatbot's last turn safe? Yes -> yes (safe), No -> no, Unsure -> None."""
    path = paths["data"]
    for inst in _load_json(path)["instances"]:
        # dices_990 writes newlines as the two characters backslash-n
        conversation = inst["instance"]["user_prompt"].replace("\\n", "\n").strip()
        response = inst["instance"]["response"].replace("\\n", "\n").strip()
        scores = inst["annotations"]["safety"]["individual_human_scores"]
        labels = [_map(DICES_LABELS, s, path, f"instance {inst['id']}.safety") for s in scores]
        yield Item(
            id=f"{name}-{inst['id']}",
            group=_group("dices", conversation),
            kind="binary",
            instruction=conversation,
            response=response,
            labels=labels,
            label=aggregate("binary", labels),
            meta={"source": name},
        )


_CLAIM = re.compile(
    r"Situation \(Premise\): (.*)\n\nClaim \(Hypothesis\): (.*)\n\n"
    r"Is the Claim supported by the Situation\?\n\nCorrect Relationship \(Yes or No\): (.*)",
    re.S,
)
_QUESTION = re.compile(r"Question: (.*)\n\\Solution: (.*)", re.S)
_RESPONSE_END = "\nJudge the generated response:\n"
ROSCOE_METRIC = "Overall Quality"  # the files also rate Coherency, Missing Steps, Contradiction


def roscoe(paths: dict[str, Path], *, name: str) -> Iterator[Item]:
    """ROSCOE overall via JUDGE-BENCH: one expert's 1-5 rating of a step-by-step answer."""
    path = paths["data"]
    for inst in _load_json(path)["instances"]:
        text = inst["instance"]
        try:
            context, steps = text.split("CONTEXT:\n", 1)[1].split("\n\nGENERATED RESPONSE:\n", 1)
        except IndexError:
            raise DataError(
                "instance has no CONTEXT / GENERATED RESPONSE", path=str(path), field=f"instance {inst['id']}"
            ) from None
        steps = steps.removesuffix(_RESPONSE_END).strip()
        if m := _CLAIM.fullmatch(context):
            fields = {
                "instruction": "Is the claim supported by the situation? Answer yes or no, step by step.",
                "context": f"Situation: {m[1].strip()}\n\nClaim: {m[2].strip()}",
                "reference": m[3].strip(),
            }
        elif m := _QUESTION.fullmatch(context):
            fields = {"instruction": m[1].strip(), "reference": m[2].strip()}
        else:
            raise DataError(
                "CONTEXT is neither a situation/claim nor a question/solution",
                path=str(path),
                field=f"instance {inst['id']}",
            )
        scores = inst["annotations"][ROSCOE_METRIC]["individual_human_scores"]
        mean = aggregate("pointwise", scores)
        yield Item(
            id=f"{name}-{inst['id']}",
            group=_group(name, context),
            kind="pointwise",
            response=steps,
            labels=list(scores),
            label=int(mean) if mean is not None and mean.is_integer() else mean,
            meta={"source": name, "criterion": ROSCOE_METRIC, "scale": [1, 5], "n_annotators": len(scores)},
            **fields,
        )


# ---------------------------------------------------------------- vicuna80-human


def vicuna80_human(paths: dict[str, Path], *, name: str) -> Iterator[Item]:
    """PRD's Vicuna-80 crowd votes (one row per vote, converted in the mirror): the votes on the same two
    answers to the same question become one item's ``labels``. ``meta.source`` is ``NAME/<system of
    response_a>/<system of response_b>``; nine systems answer the same questions, so the items rank them."""
    path = paths["votes"]
    order: list[tuple[str, str]] = []
    pairs: dict[tuple[str, str], dict] = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            row = json.loads(raw)
            parts = str(row.get("source", "")).split("/")
            if len(parts) != 3:
                raise DataError(
                    f"expected 'prd_vicuna80/<system a>/<system b>', got {row.get('source')!r}",
                    path=str(path),
                    line=lineno,
                    field="source",
                )
            key = (row["group"], row["source"])
            if key not in pairs:
                order.append(key)
                pairs[key] = {"row": row, "systems": parts[1:], "labels": []}
            label = _map({"A": "A", "B": "B", "tie": "tie"}, row["label"], path, "label", lineno)
            pairs[key]["labels"].append(label)
    for key in order:
        p = pairs[key]
        row, (a, b) = p["row"], p["systems"]
        yield Item(
            id=f"{name}-{row['group']}-{a}-{b}",
            group=_group(name, row["instruction"]),
            kind="pairwise",
            instruction=row["instruction"],
            response_a=row["response_a"],
            response_b=row["response_b"],
            labels=p["labels"],
            label=aggregate("pairwise", p["labels"]),
            meta={"source": f"{name}/{a}/{b}", "system_a": a, "system_b": b, "question": row["group"]},
        )


# ---------------------------------------------------------------- prompts that link sources (data.grouping)


def hh_rlhf_prompts(item: Item) -> list[str]:
    """hh-rlhf groups a conversation by its first human turn; that turn recurs as LLMEval2 queries."""
    first = item.instruction.split(ASSISTANT_TAG, 1)[0].strip().removeprefix("Human:")
    return [first]


def llmeval2_prompts(item: Item) -> list[str]:
    """The query, or for MT-Bench rows (empty query) the first user turn that each response repeats."""
    if item.instruction.strip():
        return [item.instruction]
    for response in (item.response_a or "", item.response_b or ""):
        if m := _FIRST_USER_TURN.match(response):
            return [m[1]]
    return []


# ---------------------------------------------------------------- human pairwise votes (tulu1, lfqa, hhh, mtbench)

VOTE_FIELDS = ("id", "instruction", "response_a", "response_b", "label")
VOTE_LABELS = {"A": "A", "B": "B", "tie": "tie"}
_SWAP = {"A": "B", "B": "A", "tie": "tie"}


def _vote_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """The mirror's canonical pairwise vote rows (one JSON object per human vote), each field checked."""
    for lineno, row in iter_json_lines(path):
        for key in VOTE_FIELDS:
            value = row.get(key)
            need = "a non-empty string" if key in ("id", "instruction") else "a string"
            if key not in row:
                raise DataError("is missing", path=str(path), line=lineno, field=key)
            if not isinstance(value, str) or (need != "a string" and not value.strip()):
                raise DataError(
                    f"expected {need}, got {type(value).__name__} {value!r:.40}", path=str(path), line=lineno, field=key
                )
        annotator = row.get("annotator")
        if annotator is not None and not isinstance(annotator, str):
            raise DataError(
                f"expected a string or null, got {annotator!r:.40}", path=str(path), line=lineno, field="annotator"
            )
        _map(VOTE_LABELS, row["label"], path, "label", lineno)
        yield lineno, row


def _pairs(path: Path) -> list[dict]:
    """The votes on each pair of responses to one instruction, in first-seen order. A vote that saw the two
    responses the other way round counts with its label swapped (A<->B), so no vote is lost or doubled."""
    pairs: dict[tuple[str, str, str], dict] = {}
    for _, row in _vote_rows(path):
        a, b = row["response_a"], row["response_b"]
        key = (row["instruction"], *sorted((a, b)))
        if key not in pairs:
            pairs[key] = {"row": row, "labels": [], "annotators": [], "votes": []}
        pair = pairs[key]
        label = (
            row["label"] if (a, b) == (pair["row"]["response_a"], pair["row"]["response_b"]) else _SWAP[row["label"]]
        )
        pair["labels"].append(label)
        pair["annotators"].append(row.get("annotator"))
        pair["votes"].append(row["id"])
    return list(pairs.values())


def pairwise_votes(paths: dict[str, Path], *, name: str, swap_half: bool = False) -> Iterator[Item]:
    """Human pairwise votes converted in the mirror (tulu1-human, lfqa-experts, hhh-alignment, mtbench-human):
    the votes on the same two responses to the same instruction become one item's ``labels``.

    ``meta``: ``source`` (``NAME`` or ``NAME/<subset>``, e.g. ``hhh-alignment/harmless``), ``annotators`` (who
    cast each vote, where the source says), ``votes`` (the mirror rows' ids). ``swap_half``: the source always
    puts the preferred response first (hhh-alignment), so every other item in the order of (source, sha256 of
    the id) is swapped (``meta.swapped``): A wins on half the items of each source (one more where odd), the
    same items on every run of the same file.
    """
    path = paths["votes"]
    items = []
    for pair in _pairs(path):
        row = pair["row"]
        item_id = f"{name}-{row['id'].rsplit('-', 1)[-1]}"
        subset = str(row.get("source") or "").partition("/")[2]
        meta: dict[str, Any] = {"source": f"{name}/{subset}" if subset else name}
        if any(a is not None for a in pair["annotators"]):
            meta["annotators"] = pair["annotators"]
        meta["votes"] = pair["votes"]
        item = Item(
            id=item_id,
            group=_group(name, row["instruction"]),
            kind="pairwise",
            instruction=row["instruction"],
            response_a=row["response_a"],
            response_b=row["response_b"],
            labels=pair["labels"],
            label=aggregate("pairwise", pair["labels"]),
            meta=meta,
        )
        if not swap_half:
            yield item
        else:
            items.append(item)
    ranked = sorted(items, key=lambda it: (it.meta["source"], hashlib.sha256(it.id.encode()).hexdigest()))
    swapped = {it.id for it in ranked[1::2]}
    for item in items:
        swap = item.id in swapped
        item = item.swapped() if swap else item
        item.meta = {**item.meta, "swapped": swap}
        yield item
