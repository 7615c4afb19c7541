"""The validation result: what `judgeloop eval` computes and writes to ``validation.json``, as a typed model.

``eval.harness.evaluate`` returns a ``ValidationResult``; the gate, the report and the workflows read
it by attribute. ``validation.json`` is its serialisation (``to_json``): the keys the result was
built or loaded with, in JSON with no NaN or infinity (an undefined figure is null; a non-finite
number is refused when the model is built or loaded). ``load`` reads one back and turns anything
wrong into one located ``DataError`` line per field.

Files written before the model existed (schema_version 1, from the first validation code on) load
unchanged: what later code added is optional here, with the default a file without it means
(``length_control.beyond_length``: None, not computed; ``injection``, ``inputs``, ``gate``: absent;
``provenance.commands``: none recorded). tests/eval/golden holds such files and
tests/eval/test_golden.py checks that they load, round-trip, gate and report as before.

The JSON Schema is generated from the model and committed as docs/schemas/validation.schema.json:

    python -m eval.result --schema > docs/schemas/validation.schema.json

docs/validation.md says what each section means.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from data.errors import DataError
from data.jsonl import pydantic_problems

SCHEMA_VERSION = 1
"""Bumped when a field changes meaning or disappears (adding an optional field does not bump it)."""

REQUIRED = ("schema_version", "judge", "n", "metrics", "baselines", "errors")
"""The fields without which a JSON file is not a validation result at all (named in the error)."""

MAX_PROBLEMS = 10


class Section(BaseModel):
    """A part of the result: known fields only, finite numbers only, assignments validated."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        validate_assignment=True,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )


# --- figures --------------------------------------------------------------------------------------


class Interval(Section):
    """A figure with its 95% interval; all three null when the figure is undefined on these items."""

    value: Optional[float]
    """The point estimate on the evaluated items."""
    ci_low: Optional[float]
    """Lower end of the 95% interval (null without replicates where the figure is defined)."""
    ci_high: Optional[float]
    """Upper end of the 95% interval."""


class Rate(Interval):
    """A share of k out of n with its exact (Clopper-Pearson) 95% interval."""

    k: int
    """How many counted."""
    n: int
    """Out of how many."""


class McNemar(Section):
    """McNemar's exact test on paired right/wrong answers."""

    only_a_correct: int
    """Items only the first judge (the candidate, or this judge) gets right."""
    only_b_correct: int
    """Items only the second judge (the incumbent, or the reference) gets right."""
    p_value: float
    """Two-sided binomial test of only_a_correct out of the discordant items at 1/2 (1.0 when none)."""


class PairedComparison(Section):
    """Two judges' main accuracy on the same items, paired (the same bootstrap replicates)."""

    n: int
    """Items compared."""
    diff: Interval
    """Accuracy of this judge minus the other's, with its paired bootstrap interval."""
    mcnemar: McNemar


# --- who and what ---------------------------------------------------------------------------------


class Judge(Section):
    """The judge whose verdicts were validated."""

    name: Optional[str] = None
    """Its name (from the verdicts, unless given)."""
    version: Optional[str] = None
    """Its version: given, or found in the registry by fingerprint; null when neither."""
    fingerprint: Optional[str] = None
    """Hash of spec, base model and adapter: what the gate and the registry are keyed by."""
    engine: Optional[str] = None
    """What computed the verdicts: engine/dtype (vllm/float32); production must serve in the same one, or
    near-tie verdicts differ from the validated ones. Null for verdicts that do not say (older files)."""


class Spec(Section):
    """The judge spec the verdicts answer."""

    name: str
    version: str
    kind: Literal["pairwise", "binary", "pointwise"]
    labels: list[str]
    """The label space, in the spec's order."""
    sha256: str
    """Hash of the spec."""


class Sampled(Section):
    """How a sample of the items was drawn (`judgeloop eval --all --max-items`)."""

    max_items: int
    seed: int


class Dataset(Section):
    """The items the judge was validated on."""

    name: Optional[str] = None
    """Dataset name (from the manifest beside the item file, or the registered dataset)."""
    split: Optional[str] = None
    sha256: Optional[str] = None
    """Hash of the item file (or of the items, for a registered dataset)."""
    path: Optional[str] = None
    """The item file, when the items came from one."""
    sources: Optional[dict[str, str]] = None
    """`eval --all`: each source dataset's hash."""
    sampled: Optional[Sampled] = None
    """`eval --all`: the seeded sample, null when all items were used."""


class IntervalSettings(Section):
    """How every interval in the result was computed."""

    level: float
    """Coverage, 0.95."""
    method: str
    n_boot: int
    """Bootstrap replicates."""
    seed: int


# --- sections -------------------------------------------------------------------------------------


class AnnotatorAgreement(Section):
    accuracy: float
    """This annotator slot against the majority of the others."""
    n: int
    """(item, annotator) pairs of this slot."""


class HumanCeiling(Section):
    """Annotators against the leave-one-out majority of the others, and the judge against the same majorities."""

    method: str
    n_pairs: int
    """(item, annotator) pairs whose target is not a tie."""
    n_items: int
    annotators: int
    """The most annotators any item has."""
    metrics: dict[str, Interval]
    """The annotators: accuracy, cohen_kappa (pointwise: weighted_kappa), pairwise accuracy_with_ties."""
    judge: dict[str, Interval]
    """The judge against the same targets, the same keys."""
    judge_to_ceiling: Optional[float]
    """Judge accuracy / annotators' accuracy."""
    per_annotator: dict[str, AnnotatorAgreement]
    """Annotator slot (1, 2, ...) -> its accuracy against the others' majority."""
    krippendorff_alpha_humans: Interval
    """Krippendorff's alpha of the annotators alone."""


class Bias(Section):
    """Position and verbosity bias; pairwise only (every field absent for other kinds)."""

    swap_consistency: Optional[float] = None
    """Share of items whose two single-order verdicts agree; null when one order was scored."""
    first_position_rate: Optional[float] = None
    """How often the response shown first wins (0.5 is unbiased)."""
    n_both_orders: Optional[int] = None
    first_position_basis: Optional[str] = None
    longer_preferred_rate: Optional[float] = None
    """How often the judge prefers the longer response (decisive verdicts, unequal lengths)."""
    human_longer_preferred_rate: Optional[float] = None
    """How often the human aggregate does, on the same footing."""
    agrees_with_longer_rule: Optional[float] = None
    """How often the verdict equals pick-the-longer."""
    n_judge: Optional[int] = None
    n_human: Optional[int] = None
    length_unit: Optional[str] = None

    @property
    def measured(self) -> bool:
        """False for the empty section of a result that is not pairwise."""
        return bool(self.model_fields_set)


class ReliabilityBin(Section):
    lo: float
    hi: float
    n: int
    confidence: float
    """Mean verdict probability in the bin."""
    accuracy: float
    """Share correct in the bin."""


class CalibrationIntervals(Section):
    ece: Interval
    brier: Interval


class Calibration(Section):
    """Calibration of the verdict's probability, on items with probabilities and a human label the judge can give."""

    ece: Optional[float]
    """Expected calibration error; null when no verdict carries probabilities."""
    brier: Optional[float]
    """Brier score; null likewise."""
    n: int
    n_bins: int
    confidence: str
    """What the probability is."""
    reliability: list[ReliabilityBin]
    """Non-empty equal-width bins."""
    intervals: Optional[CalibrationIntervals] = None
    """Intervals of ece and brier (absent without probabilities)."""
    note: Optional[str] = None
    """Why ece and brier are null (absent when they are not)."""


class Confusion(Section):
    """Human aggregate (rows) against judge verdict (columns), over all labelled items."""

    rows: list[str]
    columns: list[str]
    counts: list[list[int]]
    axes: str


class LengthIntervals(Section):
    acc_longer_preferred: Optional[Interval] = None
    acc_shorter_preferred: Optional[Interval] = None
    balanced: Optional[Interval] = None


class BeyondLength(Section):
    """Does the judge know more than length: logistic fits of the human choice on the length ratio, alone
    and with the judge's odds."""

    n: int
    """Items used (human A/B, unequal lengths, the judge's A/B probabilities)."""
    log_loss_length: float
    """Per-item log loss of the fit on log((len_a+1)/(len_b+1)) alone."""
    log_loss_length_and_judge: float
    """The same with the judge's log(P(A)/P(B)) added."""
    gain: Interval
    """Their difference, with a group-bootstrap interval: what the gate's beyond_length rule reads."""
    lr_chi2: float
    """Likelihood-ratio statistic, 1 degree of freedom."""
    p_value: float
    """Its p-value (treats pairs as independent: optimistic with several pairs per prompt)."""
    length_unit: str


class LengthControl(Section):
    """Pairwise: accuracy where humans preferred the longer response and where they preferred the shorter one."""

    acc_longer_preferred: Optional[float]
    n_longer_preferred: int
    acc_shorter_preferred: Optional[float]
    n_shorter_preferred: int
    balanced: Optional[float]
    """The mean of the two."""
    intervals: LengthIntervals
    beyond_length: Optional[BeyondLength] = None
    """Null without the judge's A/B probabilities or under 30 usable items; absent in files written before
    it existed (same meaning)."""


class SliceRow(Section):
    n: int
    accuracy: Interval
    swap_consistency: Optional[float]


class Errors(Section):
    """Items without a usable verdict."""

    no_verdict: int
    """Missing + error + unparseable: what the gate's errors rule counts."""
    error: int
    unparseable: int
    missing: int
    truncated: int
    """Verdicts whose prompt was truncated."""
    n_items: int
    error_kinds: dict[str, int]
    """The five most common error kinds -> count."""


class ReferenceJudge(Section):
    """A reference judge on the items it covers, and this judge minus it, paired."""

    n: int
    n_items: int
    n_missing: int
    metrics: dict[str, Interval]
    no_verdict: int
    longer_preferred_rate: Optional[float] = None
    """Pairwise only."""
    first_position_rate: Optional[float] = None
    """Pairwise only."""
    judge_minus_reference: PairedComparison
    slices: dict[str, dict[str, SliceRow]] = {}
    """Its accuracy per slice value, on the slices of the judge's ``slices`` (empty in files written before
    2026-12-07)."""


class Comparison(Section):
    """The candidate against the incumbent judge on the same items, paired (the same bootstrap replicates)."""

    incumbent: Judge
    metric: str
    """The metric compared: accuracy."""
    candidate: Interval
    """The candidate's accuracy."""
    incumbent_accuracy: Interval
    n: int
    """Items compared."""
    diff: Interval
    """Candidate minus incumbent, with its paired bootstrap interval."""
    mcnemar: McNemar


class TemplateRates(Section):
    flip_rate: Rate
    target_rate: Rate


class Injection(Section):
    """The verdict-flip rate under text in a response that tries to steer the judge (eval/injection.py)."""

    n_items: int
    n_variants: int
    flip_rate: Rate
    """The verdict changed from the clean verdict."""
    target_rate: Rate
    """It became the label the injected text asked for."""
    outside_label_space: int
    errors: int
    by_template: dict[str, TemplateRates]
    templates: dict[str, str]
    """Template name -> its text."""
    method: str


class InputFile(Section):
    path: str
    sha256: Optional[str] = None
    scored_with: Optional[str] = None
    """The engine that scored the verdicts, when `judgeloop eval --judge` did."""


class Provenance(Section):
    git_commit: Optional[str]
    """HEAD of the repository that computed the result ('+dirty' with changes); null outside git."""
    versions: dict[str, str]
    """Python and library versions."""
    commands: list[str] = Field(default_factory=list)
    """The commands that wrote the result (absent: none recorded)."""


class GateRule(Section):
    name: str
    rule: str
    """What it checks, in words."""
    figure: Optional[float]
    """The figure read from the result; null when the result has none."""
    threshold: Optional[Union[int, float]]
    """Null: the rule is off (a count rule's threshold is a whole number)."""
    op: Literal[">=", "<="]
    status: Literal["PASS", "FAIL", "SKIP"]
    passed: bool = Field(alias="pass")
    """False only for FAIL."""
    note: str


class Gate(Section):
    """The promotion gate's record, added by `judgeloop gate`."""

    passed: bool
    fingerprint: Optional[str]
    """The judge fingerprint the gate was run for: promotion requires it to match."""
    judge: Optional[Judge]
    checked: str
    """UTC timestamp."""
    config: Optional[str]
    """The gate config file (null: the defaults)."""
    config_sha256: str
    thresholds: dict[str, Any]
    """The gate config as applied (an open set of keys: eval.gate.GateConfig); config_sha256 is the hash
    of its canonical JSON, which the registry seals when the result is attached."""
    rules: list[GateRule]
    baseline: Optional[str] = None
    """The default gate config the thresholds were compared with: configs/gates/default.yaml, or the
    criterion's gate config in configs/criteria.yaml for its spec (absent in gates checked before it
    existed)."""
    loosened: Optional[list[str]] = None
    """Rules switched off or loosened against ``baseline`` ('metric' when the metric differs): promotion
    then needs an explicit, logged override (absent in gates checked before it existed)."""
    external_verdicts: Optional[bool] = None
    """True when the verdicts were read from a file (`judgeloop eval --verdicts`), not scored by judgeloop:
    promotion then needs an explicit, logged override (absent in gates checked before it existed)."""


# --- the result -----------------------------------------------------------------------------------


class ValidationResult(Section):
    """A judge's verdicts validated against human labels: validation.json."""

    schema_version: int
    """1; bumped when a field changes meaning or disappears."""
    created: str
    """UTC timestamp."""
    judge: Judge
    spec: Spec
    dataset: Dataset
    n: int
    """Items the headline metrics are over (pairwise: human aggregate not a tie)."""
    n_items: int
    """Items evaluated."""
    n_groups: int
    """Groups (prompts) they fall in: what the bootstrap resamples."""
    tie_policy: str
    error_policy: str
    interval: IntervalSettings
    metrics: dict[str, Interval]
    """Metric name -> figure; the names depend on the spec's kind."""
    human_ceiling: Optional[HumanCeiling]
    """Null with one annotator per item."""
    bias: Bias
    calibration: Calibration
    confusion: Confusion
    baselines: dict[str, Optional[float]]
    """Trivial baseline -> its accuracy on the items of `accuracy`."""
    length_control: Optional[LengthControl]
    """Null unless pairwise."""
    slices: dict[str, dict[str, SliceRow]]
    """Dimension (source, language, length) -> value -> figures."""
    errors: Errors
    reference_judges: dict[str, ReferenceJudge]
    comparison: Optional[Comparison]
    """Null without an incumbent."""
    injection: Optional[Injection] = None
    """Absent unless the injection corpus was measured."""
    inputs: dict[str, InputFile] = Field(default_factory=dict)
    """Input role (items, verdicts, 'reference NAME', incumbent) -> file; absent when called from Python."""
    provenance: Provenance
    gate: Optional[Gate] = None
    """Absent until `judgeloop gate` records its verdict."""

    # --- files ------------------------------------------------------------------------------------

    def to_json(self) -> str:
        """validation.json's text: the fields the result was built or loaded with (a file written before a
        field existed is rewritten without it), indented, never NaN (``allow_nan=False`` refuses it)."""
        data = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"

    def save(self, path: str | Path) -> None:
        """Write validation.json atomically."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(p)

    @classmethod
    def from_data(cls, data: Any, path: str | Path | None = None) -> ValidationResult:
        """Validate parsed JSON; a problem is a ``DataError`` naming the file and the field."""
        where = str(path) if path is not None else None
        if not isinstance(data, dict):
            raise DataError("expected a JSON object (a validation result)", path=where)
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise DataError(
                f"not a validation result: missing {', '.join(missing)}",
                path=where,
                hint="write one with `judgeloop eval`",
            )
        version = data["schema_version"]
        if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
            raise DataError(
                f"schema_version {version} is newer than this judgeloop reads ({SCHEMA_VERSION})",
                path=where,
                field="schema_version",
                hint="update judgeloop",
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = pydantic_problems(exc, where, None)
            if len(problems) > MAX_PROBLEMS:
                extra = len(problems) - MAX_PROBLEMS
                problems = problems[:MAX_PROBLEMS]
                problems[-1].hint = f"and {extra} more"
            raise DataError(problems=problems) from None

    @classmethod
    def load(cls, path: str | Path) -> ValidationResult:
        """Read a validation.json (any written since schema_version 1)."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError("file not found", path=str(p)) from None
        except IsADirectoryError:
            raise DataError("is a directory, not a validation.json", path=str(p)) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"not a JSON file: {exc}", path=str(p)) from None
        return cls.from_data(data, p)


def json_schema() -> dict:
    """The JSON Schema of validation.json, as committed in docs/schemas/validation.schema.json."""
    schema = ValidationResult.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.result", description="the validation.json model")
    p.add_argument("--schema", action="store_true", help="print the JSON Schema of validation.json")
    p.add_argument("--check", metavar="FILE", help="load a validation.json and say whether it is valid")
    args = p.parse_args(argv)
    if args.check:
        try:
            result = ValidationResult.load(args.check)
        except DataError as exc:
            print(exc, file=sys.stderr)
            return 2
        print(f"{args.check}: a valid validation result (schema_version {result.schema_version})")
        return 0
    if not args.schema:
        p.print_help()
        return 2
    sys.stdout.write(schema_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
