"""The training config: one dataclass tree, YAML plus ``--key=value`` overrides, every error at once.

``load_train_config(path, overrides)`` builds it with ``data.config`` (errors name file:line and
field); ``TrainConfig.validate`` adds the cross-field rules (QLoRA needs CUDA, a rank must be
positive, a dataset name must be registered, ...).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from data import embedded_model
from data.config import load_config, load_merged, option, parse_overrides
from data.dataset_registry import check_trainable, get_dataset
from data.errors import ConfigError, JudgeloopError, Problem, UnknownNameError
from data.spec import load_spec
from judge.precision import BF16Setting, DTypeSetting

# PEFT matches a target name against the end of each module's dotted name
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")
ALL_LINEAR = "all-linear"


@dataclass
class LoraOptions:
    rank: int = option(16, help="LoRA rank r: the adapter's capacity (8-64 is usual)")
    alpha: float = option(32, help="LoRA alpha; the update is scaled by alpha / rank")
    dropout: float = option(0.05, help="dropout on the LoRA input, in [0, 1)")
    target_modules: list[str] = option(
        [ALL_LINEAR],
        help="module names to adapt, e.g. [q_proj, v_proj], "
        "or [all-linear] for every linear layer except the output layer",
    )
    layers: Optional[int] = option(
        None,
        help="adapt only the last N transformer layers (PEFT layers_to_transform): "
        "backpropagation stops below the lowest adapted layer, so a step is faster; "
        "null = every layer",
    )
    qlora: bool = option(
        False,
        help="load the base model in 4-bit NF4 (bitsandbytes) and train LoRA on top: QLoRA, for a small GPU; CUDA only",
    )


@dataclass
class DataOptions:
    train: list[str] = option(
        [],
        help="training items: registered dataset names (their train split) and/or "
        "item JSONL files; several are concatenated",
    )
    dev: list[str] = option(
        [],
        help="dev items scored at each evaluation: dataset names (their dev split) or "
        "files; empty = the dev split of every dataset named in `train`",
    )
    languages: list[str] = option(
        [],
        help="keep only items whose meta.language is one of these (e.g. [en]; "
        "items that carry no language are kept); empty = every language",
    )
    max_items: dict[str, int] = option(
        {},
        help="at most this many items of a training source, by its name in "
        "`train` (whole groups, picked by a hash of the group: the same every run), "
        "e.g. {llmeval2: 200} to mix a little of a large set into a short run",
    )
    mix: dict[str, float] = option(
        {},
        help="a training source's share of the training examples, by its name in `train` (0 < share < 1): it is "
        "repeated (whole copies, then a seeded sample) or sampled to that share, the sources not named filling the "
        "rest in proportion to their sizes, so a small set of your own labels can have e.g. half of the steps "
        "beside large public ones ({pandalm: 0.5}); empty = every source in proportion to its size",
    )
    exclude_instructions_of: list[str] = option(
        [],
        help="held-out sources: drop every training and dev item that shares an instruction (its cross-source "
        "group or normalised prompt, data/grouping.py) with any item of these registered datasets (all splits) or "
        "item files, so a source left out stays unseen; `judgeloop loso` sets it for each fold",
    )
    split_seed: int = option(0, help="split seed of registered datasets (as `judgeloop data prepare --seed`)")
    prepared_dir: str = option("prepared", help="where registered datasets' splits live (prepared there on first use)")
    target: Literal["label", "majority", "distribution"] = option(
        "label",
        help="what the verdict is trained towards: the item's aggregate `label`; the `majority` of "
        "the annotators' labels; or their `distribution` (soft targets, cross-entropy over the labels)",
    )
    both_orders: bool = option(
        True,
        help="pairwise: train each item in both orders with the label swapped, so the judge cannot learn a position",
    )
    exclude_labels: list[str] = option(
        [],
        help="drop items whose target label is one of these (e.g. [tie] "
        "to train an A/B judge); in `distribution` mode, drop those annotators' votes",
    )
    balance_length: bool = option(
        False,
        help="pairwise: keep as many items whose human winner is the shorter "
        "response as the longer (a seeded sample of the larger side per source), so the "
        "judge cannot score by length; ties and equal lengths are kept",
    )
    balance_method: Literal["drop", "weight"] = option(
        "drop",
        help="how balance_length evens the two sides: `drop` items of the larger side, or `weight` every "
        "item so that both sides weigh the same in the loss (keeps all the data; separate mode only)",
    )
    length_bins: int = option(
        1,
        help="balance_length within this many bins of the length gap between the two "
        "responses (|log of the length ratio|, equal-count bins over the split's decided "
        "items): in each bin the longer and the shorter response's wins count the same. 1 = the "
        "split as a whole; with more, the judge cannot learn 'a large gap means the longer "
        "wins' either (on PandaLM the longer wins 54% of near-equal pairs, 85% of the most "
        "unequal fifth)",
    )
    length_penalty: float = option(
        0.0,
        help="separate mode: add this times the squared correlation between the "
        "judge's scores of an instruction's responses and their log lengths (pooled over "
        "the batch) to the loss, so the scores do not follow length even where the data's "
        "features do; the correlation is logged as score_length_corr either way. "
        "0 = no penalty",
    )
    max_group_responses: int = option(
        8,
        help="separate mode: the pairs of one group (the same instruction) "
        "train together, each distinct response's prompt scored once per step and "
        "compared in every pair it is in; a group with more distinct responses is "
        "split into examples of at most this many (2 = one pair per example); "
        "batch_size then counts these examples",
    )
    off_instruction_negatives: int = option(
        0,
        help="separate mode, training split only: for each decided training item, k synthetic pairs that teach "
        "instruction-following: its human-preferred response against the preferred response of one of the k "
        "most similar other instructions of the same source (TF-IDF cosine over instruction, input and context; "
        "never its own instruction or group), both read with THIS item's instruction, the item's response to win "
        "(train/negatives.py). They join the item's group, are counted in the data report and the judge card, "
        "and never enter dev, test or any agreement figure. 0 = none",
    )
    padded_negatives: bool = option(
        False,
        help="separate mode, training split only: for each decided training item, one synthetic pair of its "
        "preferred response against the same response with another instruction's preferred response appended "
        "(picked by a hash of the item id), the unpadded one to win: irrelevant text must cost, so length alone "
        "cannot win",
    )
    negative_weight: float = option(
        0.5,
        help="each synthetic pair's weight in the loss against 1 for a human pair (length balance weights the "
        "human pairs only). 0.5 because the synthetic pairs are easy, certain and numerous (k + 1 per item): at "
        "half a human pair's weight, the human labels keep most of the loss (with k = 1 and padding, as much as "
        "all the synthetic pairs together)",
    )
    rationale: bool = option(
        False,
        help="train the label followed by a line of rationale from each item's "
        "meta.rationale (the verdict stays the first answer token, so scoring is unchanged)",
    )
    max_dev_items: Optional[int] = option(
        None,
        help="score at most this many dev items (a seeded sample) at "
        "each evaluation, to bound its time on CPU; null = all",
    )


@dataclass
class EvalOptions:
    steps: int = option(
        50,
        help="every N optimizer steps: score the dev split and save a checkpoint "
        "(what --resume restarts from); also at the end",
    )
    early_stopping_patience: Optional[int] = option(
        None, help="stop after this many evaluations without a better dev agreement; null = never stop early"
    )
    keep: Literal["best", "last"] = option(
        "best",
        help="which checkpoint becomes the judge: the one with the `best` "
        "dev agreement (an earlier one wins a tie), or the `last` one (the dev "
        "curve is still logged; choose it when the dev split is too small to "
        "rank checkpoints, e.g. 48 items move agreement in steps of 0.02, and "
        "the schedule decays to the end)",
    )
    dtype: DTypeSetting = option(
        "float32",
        help="precision of the dev scoring pass: float32, bfloat16 (~1.8x faster on a CPU with bf16 math; "
        "near-tie verdicts can flip), or auto (bfloat16 where the hardware has bf16 math, else float32)",
    )
    batch_tokens: int = option(8192, help="tokens per scoring batch (padded), as in the HF backend")


@dataclass
class TrainConfig:
    spec: str = option(help="judge spec: a name in configs/judges or a YAML path")
    base_model: Optional[str] = option(
        None, help="model directory, hub id or the embedded model's name; null = the spec's base_model"
    )
    output_dir: Optional[str] = option(None, help="the run directory; null = runs/<spec name>")
    data: DataOptions = field(default_factory=DataOptions, metadata={"help": "training and dev data"})
    lora: LoraOptions = field(default_factory=LoraOptions, metadata={"help": "the adapter"})
    eval: EvalOptions = field(default_factory=EvalOptions, metadata={"help": "eval-in-the-loop"})
    learning_rate: float = option(2e-4, help="peak learning rate of the adapter")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = option(
        "cosine", help="learning-rate schedule after warmup"
    )
    warmup: float = option(0.05, help="warmup: a number of steps, or a fraction of all steps when < 1")
    weight_decay: float = option(0.0, help="AdamW weight decay")
    max_grad_norm: float = option(1.0, help="gradient clipping norm")
    epochs: float = option(1.0, help="passes over the training examples (ignored when max_steps is set)")
    max_steps: Optional[int] = option(None, help="stop after this many optimizer steps; null = use epochs")
    batch_size: int = option(8, help="examples per device per forward pass")
    grad_accumulation: int = option(
        1, help="forward passes per optimizer step (effective batch = batch_size x grad_accumulation x processes)"
    )
    max_length: Optional[int] = option(
        None,
        help="longest training sequence in tokens; the prompt budget becomes "
        "max_length minus the longest target and is written into the run's spec, so "
        "serving truncates the same way; null = the spec's max_prompt_tokens + target",
    )
    bf16: BF16Setting = option(
        "auto",
        help="bfloat16 training: true, false, or auto (on where the hardware has bf16 math: a GPU that supports "
        "it, a CPU with AVX512-BF16 or AMX, where it is ~1.35x faster; off on other CPUs, where it is ~8x slower)",
    )
    gradient_checkpointing: bool = option(
        False, help="recompute activations in the backward pass: less memory, ~30% slower (long prompts on a small GPU)"
    )
    seed: int = option(0, help="seed of the adapter's initialisation, dropout and the data order")
    logging_steps: int = option(5, help="log the training loss every N steps (train_log.jsonl, the console)")
    save_total_limit: Optional[int] = option(2, help="checkpoints kept besides the best one; null = all")

    def validate(self) -> list[Problem]:
        p: list[Problem] = []

        def need(ok: bool, field_: str, message: str, hint: str | None = None):
            if not ok:
                p.append(Problem(message, field=field_, hint=hint))

        lo = self.lora
        need(lo.rank > 0, "lora.rank", f"must be > 0, got {lo.rank}")
        need(lo.alpha > 0, "lora.alpha", f"must be > 0, got {lo.alpha}")
        need(0 <= lo.dropout < 1, "lora.dropout", f"must be in [0, 1), got {lo.dropout}")
        if lo.layers is not None:
            need(lo.layers > 0, "lora.layers", f"must be > 0, got {lo.layers}")
        need(bool(lo.target_modules), "lora.target_modules", "must name at least one module (or all-linear)")
        for name in lo.target_modules:
            if name == ALL_LINEAR:
                need(
                    len(lo.target_modules) == 1,
                    "lora.target_modules",
                    "all-linear already means every linear layer: give it alone",
                )
            elif name == "lm_head":
                p.append(
                    Problem(
                        "an adapter on lm_head is never trained by TRL (it reads lm_head.weight directly)",
                        field="lora.target_modules",
                        hint="remove lm_head",
                    )
                )
            elif not _MODULE_NAME.match(name):
                p.append(
                    Problem(
                        f"'{name}' is not a module name (letters, digits, _ and dots, e.g. q_proj)",
                        field="lora.target_modules",
                        hint="or use [all-linear]",
                    )
                )
        if lo.qlora:
            import torch  # deferred: torch takes seconds to import; only this path needs it

            need(
                torch.cuda.is_available(),
                "lora.qlora",
                "4-bit QLoRA needs a CUDA GPU (bitsandbytes); none here",
                "set lora.qlora=false to train bf16/fp32 LoRA",
            )
            need(
                importlib.util.find_spec("bitsandbytes") is not None,
                "lora.qlora",
                "4-bit QLoRA needs the bitsandbytes package",
                "pip install bitsandbytes",
            )
        if self.bf16 is True:
            import torch  # deferred: torch takes seconds to import; only this path needs it

            if torch.cuda.is_available():
                need(torch.cuda.is_bf16_supported(), "bf16", "this GPU does not support bfloat16")

        need(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        need(self.warmup >= 0, "warmup", f"must be >= 0, got {self.warmup}")
        need(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        need(self.max_grad_norm > 0, "max_grad_norm", f"must be > 0, got {self.max_grad_norm}")
        if self.max_steps is None:
            need(self.epochs > 0, "epochs", f"must be > 0, got {self.epochs}")
        else:
            need(self.max_steps > 0, "max_steps", f"must be > 0, got {self.max_steps}")
        need(self.batch_size > 0, "batch_size", f"must be > 0, got {self.batch_size}")
        need(self.grad_accumulation > 0, "grad_accumulation", f"must be > 0, got {self.grad_accumulation}")
        if self.max_length is not None:
            need(self.max_length >= 64, "max_length", f"must be at least 64 tokens, got {self.max_length}")
        need(self.logging_steps > 0, "logging_steps", f"must be > 0, got {self.logging_steps}")
        if self.save_total_limit is not None:
            need(self.save_total_limit >= 1, "save_total_limit", f"must be >= 1, got {self.save_total_limit}")

        for name, cap in self.data.max_items.items():
            need(name in self.data.train, f"data.max_items.{name}", f"'{name}' is not a source in data.train")
            need(isinstance(cap, int) and cap > 0, f"data.max_items.{name}", f"must be an integer > 0, got {cap!r}")
        shares = {k: v for k, v in self.data.mix.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for name, share in self.data.mix.items():
            need(name in self.data.train, f"data.mix.{name}", f"'{name}' is not a source in data.train")
            need(
                name in shares and 0 < share < 1,
                f"data.mix.{name}",
                f"must be a share between 0 and 1 (exclusive), got {share!r}",
            )
        if self.data.mix and len(shares) == len(self.data.mix):
            total = sum(shares.values())
            need(
                total < 1,
                "data.mix",
                f"the shares add up to {total:g}: they must leave room (< 1) for the sources not named",
            )
            need(
                any(name not in self.data.mix for name in self.data.train),
                "data.mix",
                "names every source in data.train: leave at least one out, to fill the rest",
            )
        need(self.data.length_penalty >= 0, "data.length_penalty", f"must be >= 0, got {self.data.length_penalty}")
        need(self.data.length_bins >= 1, "data.length_bins", f"must be >= 1, got {self.data.length_bins}")
        need(
            self.data.max_group_responses >= 2,
            "data.max_group_responses",
            f"must be >= 2 (a pair has two responses), got {self.data.max_group_responses}",
        )

        need(
            self.data.off_instruction_negatives >= 0,
            "data.off_instruction_negatives",
            f"must be >= 0, got {self.data.off_instruction_negatives}",
        )
        need(self.data.negative_weight > 0, "data.negative_weight", f"must be > 0, got {self.data.negative_weight}")

        ev = self.eval
        need(ev.steps > 0, "eval.steps", f"must be > 0, got {ev.steps}")
        need(ev.batch_tokens >= 256, "eval.batch_tokens", f"must be at least 256, got {ev.batch_tokens}")
        if ev.early_stopping_patience is not None:
            need(
                ev.early_stopping_patience >= 1,
                "eval.early_stopping_patience",
                f"must be >= 1, got {ev.early_stopping_patience}",
            )
            need(
                bool(self.dev_sources()),
                "eval.early_stopping_patience",
                "early stopping needs dev data to score",
                "name a dataset in data.train or files in data.dev",
            )
        if self.data.max_dev_items is not None:
            need(self.data.max_dev_items > 0, "data.max_dev_items", f"must be > 0, got {self.data.max_dev_items}")

        need(bool(self.data.train), "data.train", "is required: at least one dataset name or item file")
        for key in ("train", "dev"):
            for source in getattr(self.data, key):
                problem = _check_source(source)
                if problem:
                    problem.field = f"data.{key}"
                    p.append(problem)
        for source in self.data.exclude_instructions_of:
            field_ = "data.exclude_instructions_of"
            if source in self.data.train or source in self.data.dev:
                p.append(
                    Problem(f"'{source}' is both held out and trained on", field=field_, hint="remove it from one")
                )
            elif is_file_source(source):
                need(Path(source).is_file(), field_, f"item file '{source}' not found")
            else:
                try:
                    get_dataset(source)
                except UnknownNameError as exc:
                    p.append(Problem(exc.first.message, field=field_, hint=exc.first.hint))

        try:
            spec = load_spec(self.spec)
        except JudgeloopError as exc:
            p.extend(Problem(f"judge spec: {q}", field="spec") for q in exc.problems)
            spec = None
        if spec is not None:
            for label in self.data.exclude_labels:
                if label not in spec.labels and not (spec.kind == "pairwise" and label == "tie"):
                    p.append(
                        Problem(
                            f"'{label}' is not a label of judge '{spec.name}' ({', '.join(spec.labels)})",
                            field="data.exclude_labels",
                        )
                    )
            if self.data.length_penalty > 0 and not spec.separate:
                p.append(
                    Problem(
                        f"judge '{spec.name}' reads both responses in one prompt (joint mode): the length "
                        "penalty needs a score per response",
                        field="data.length_penalty",
                        hint="use a pairwise_mode: separate spec, or data.length_penalty=0",
                    )
                )
            for name, on in (
                ("off_instruction_negatives", self.data.off_instruction_negatives > 0),
                ("padded_negatives", self.data.padded_negatives),
            ):
                if on and not spec.separate:
                    how = "joint mode: both responses in one prompt" if spec.kind == "pairwise" else spec.kind
                    p.append(
                        Problem(
                            f"judge '{spec.name}' is {how}: synthetic pairs are for pairwise judges that score "
                            "each response alone",
                            field=f"data.{name}",
                            hint=f"use a pairwise_mode: separate spec, or unset data.{name}",
                        )
                    )
            if self.data.exclude_labels and set(spec.labels) <= set(self.data.exclude_labels):
                p.append(Problem("excludes every label", field="data.exclude_labels"))
        problem = _check_model(self.base_model or (spec.base_model if spec else None))
        if problem:
            p.append(problem)
        elif spec and self.base_model:  # the spec checked its own base model's prompt format, not this one
            p += [
                dataclasses.replace(problem, field="base_model")
                for problem in dataclasses.replace(spec, base_model=self.base_model).format_problems()
            ]
        return p

    def dev_sources(self) -> list[str]:
        """The dev data: as given, else the dev split of every registered dataset in ``data.train``."""
        return list(self.data.dev) or [s for s in self.data.train if not is_file_source(s)]

    def run_dir(self, spec_name: str) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("runs") / spec_name


def is_file_source(source: str) -> bool:
    """A data source is a file when it looks like a path; otherwise a registered dataset name."""
    return source.endswith((".jsonl", ".json")) or "/" in source or Path(source).exists()


def _check_source(source: str) -> Problem | None:
    if is_file_source(source):
        return None if Path(source).is_file() else Problem(f"item file '{source}' not found")
    try:
        get_dataset(source)
        check_trainable(source)  # vicuna80-human is kept for model evaluation
    except (UnknownNameError, ConfigError) as exc:
        return Problem(exc.first.message, hint=exc.first.hint)
    return None


def _check_model(ref: str | None) -> Problem | None:
    """A missing local model is a config error before anything loads; a hub id is checked at load time."""
    if not ref:
        return Problem("no base model: set base_model or the spec's base_model", field="base_model")
    model = embedded_model.find(ref)
    if model is not None:
        if not embedded_model.is_fetched(model.name):
            fetch = "judgeloop model fetch" + ("" if model.name == embedded_model.NAME else f" {model.name}")
            return Problem(f"the model '{ref}' is not fetched yet", field="base_model", hint=f"run `{fetch}`")
        return None
    looks_local = ref.startswith(("/", "./", "../", "~")) or ref.count("/") != 1
    path = Path(ref).expanduser()
    if looks_local and not path.is_dir():
        return Problem(
            f"model directory '{ref}' not found",
            field="base_model",
            hint="give a checkpoint directory, a hub id (org/name), smollm2-135m-instruct or gemma3-270m",
        )
    if path.is_dir() and not (path / "config.json").exists():
        return Problem(f"'{ref}' has no config.json: not a transformers checkpoint", field="base_model")
    return None


def recipe_base_model(path: str | Path, overrides: list[str] | None = None) -> str | None:
    """The base model a recipe trains (its ``base_model``, else its spec's), read without building the config,
    which refuses an embedded model not fetched yet: what `judgeloop demo` fetches before it trains."""
    data = load_merged(path) or {}
    values = {**(data if isinstance(data, dict) else {}), **parse_overrides(overrides or [])}
    if values.get("base_model"):
        return str(values["base_model"])
    return load_spec(str(values["spec"])).base_model if values.get("spec") else None


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    return load_config(TrainConfig, path, overrides)
