"""The criteria registry (``configs/criteria.yaml``): a judge per criterion, and where each one lives.

A criterion names its judge spec, the registered datasets whose human labels train and validate
it, its CPU training config, its gate config and, for the shared GPU recipe, the overrides it
needs. Its trained judge is the run directory ``runs_dir/<criterion>``. `judgeloop train all`,
`judgeloop eval all` and a serve config's ``criteria`` all read this one list.
Relative paths are read from the working directory, else from the repository root.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

from data.config import build_config, load_yaml, option
from data.dataset_registry import get_dataset
from data.errors import ConfigError, JudgeloopError, Problem, UnknownNameError
from data.paths import CONFIGS_DIR, JUDGE_FILE, REPO_ROOT
from data.spec import load_spec

DEFAULT_CRITERIA = CONFIGS_DIR / "criteria.yaml"


def repo_path(path: str | Path) -> Path:
    """A path as given if it exists from the working directory, else under the repository root."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else REPO_ROOT / p


@dataclass
class Criterion:
    spec: str = option(
        help="judge spec: a name in configs/judges or a YAML path; its name is the judge's name on the API"
    )
    train: str = option(help="CPU training config (configs/train/<criterion>-cpu.yaml)")
    datasets: list[str] = option(
        [],
        help="registered datasets with this criterion's human labels: their train split "
        "trains it, their test split validates it",
    )
    test: list[str] = option([], help="item files to validate on instead of the datasets' test splits")
    gates: str = option(str(CONFIGS_DIR / "gates" / "default.yaml"), help="gate config of this criterion")
    gpu_overrides: list[str] = option(
        [], help="--key=value options the shared GPU recipe needs for this criterion (e.g. --data.target=distribution)"
    )
    name: str = option("", help="(set from the key in `criteria`)")


@dataclass
class CriteriaRegistry:
    runs_dir: str = option(
        "runs/criteria", help="a criterion's trained judge is the run directory RUNS_DIR/<criterion>"
    )
    gpu_train: Optional[str] = option(None, help="the GPU training recipe every criterion shares")
    gpu_runs_dir: str = option("runs/criteria-gpu", help="where `train all --gpu` writes the GPU runs")
    criteria: dict = option({}, help="criterion name -> its spec, datasets, train config, gates (see Criterion)")
    path: str = option("", help="(the file this registry was read from)")

    def get(self, name: str) -> Criterion:
        if name not in self.criteria:
            raise UnknownNameError("criterion", name, self.criteria)
        return self.criteria[name]

    def select(self, names: list[str] | None) -> list[Criterion]:
        return [self.get(n) for n in names] if names else list(self.criteria.values())

    def run_dir(self, c: Criterion) -> Path:
        return Path(self.runs_dir) / c.name

    def is_trained(self, c: Criterion) -> bool:
        return (self.run_dir(c) / JUDGE_FILE).exists()

    def train_command(self, c: Criterion) -> str:
        return f"judgeloop train {c.train} --output_dir={self.run_dir(c)}"

    def gpu_train_args(self, c: Criterion) -> list[str]:
        if not self.gpu_train:
            raise ConfigError("this criteria registry has no GPU recipe", path=self.path, field="gpu_train")
        return [
            self.gpu_train,
            f"--spec={c.spec}",
            f"--data.train=[{','.join(c.datasets)}]",
            f"--output_dir={Path(self.gpu_runs_dir) / c.name}",
            *c.gpu_overrides,
        ]


def load_criteria(path: str | Path | None = None) -> CriteriaRegistry:
    """The registry from YAML, every criterion checked; all problems are reported at once."""

    path = repo_path(path or DEFAULT_CRITERIA)
    data, lines = load_yaml(path)
    data = data or {}
    raw = data.get("criteria") if isinstance(data, dict) else None
    reg = build_config(CriteriaRegistry, data, path=str(path), lines=lines)
    reg.path = str(path)
    problems: list[Problem] = []
    if not raw:
        problems.append(Problem("name at least one criterion", path=str(path), field="criteria"))
    built: dict[str, Criterion] = {}
    for name, body in (raw or {}).items():
        prefix = f"criteria.{name}."
        sub_lines = {k[len(prefix) :]: v for k, v in lines.items() if k.startswith(prefix)}
        try:
            c = build_config(Criterion, body, path=str(path), lines=sub_lines)
        except ConfigError as exc:
            for p in exc.problems:
                p.field = prefix + p.field if p.field else prefix.rstrip(".")
            problems.extend(exc.problems)
            known = {f.name for f in fields(Criterion)}
            try:  # an unknown key must not hide this criterion's other problems
                c = build_config(
                    Criterion, {k: v for k, v in (body or {}).items() if k in known} if isinstance(body, dict) else {}
                )
            except ConfigError:
                continue
        c.name = str(name)
        problems.extend(_check(c, prefix, str(path), lines, get_dataset, load_spec))
        built[c.name] = c
    if problems:
        raise ConfigError(problems=problems)
    reg.criteria = built
    return reg


def _check(c: Criterion, prefix: str, path: str, lines: dict, get_dataset, load_spec) -> list[Problem]:
    out = []

    def bad(field_: str, message: str, hint: str | None = None):
        out.append(Problem(message, path, lines.get(prefix + field_), prefix + field_, hint))

    try:
        spec = load_spec(c.spec)
    except JudgeloopError as exc:
        bad("spec", exc.first.message, exc.first.hint)
        spec = None
    for key in ("train", "gates"):
        if not repo_path(getattr(c, key)).is_file():
            bad(key, f"file '{getattr(c, key)}' not found")
    if not c.datasets and not c.test:
        bad("datasets", "name the datasets with this criterion's human labels (or test item files)")
    for name in c.datasets:
        try:
            ds = get_dataset(name)
        except UnknownNameError as exc:
            bad("datasets", exc.first.message, exc.first.hint)
            continue
        if spec is not None and ds.kind != spec.kind:
            bad("datasets", f"'{name}' holds {ds.kind} items, judge '{spec.name}' grades {spec.kind} items")
    for file in c.test:
        if not Path(file).is_file():
            bad("test", f"item file '{file}' not found")
    for arg in c.gpu_overrides:
        if not arg.startswith("--") or "=" not in arg:
            bad("gpu_overrides", f"'{arg}' is not of the form --key=value")
    return out


def judge_refs(reg: CriteriaRegistry, untrained: str = "error") -> list[str]:
    """What to serve for every criterion: its run directory; an untrained one is an error listing every
    train command (``untrained="error"``), or its spec on the untuned base model (``"base"``)."""
    refs, missing = [], []
    for c in reg.criteria.values():
        if reg.is_trained(c):
            refs.append(str(reg.run_dir(c)))
        elif untrained == "base":
            refs.append(c.spec)
        else:
            missing.append(c)
    if missing:
        raise ConfigError(
            problems=[
                Problem(
                    f"criterion '{c.name}' has no trained judge in {reg.run_dir(c)}",
                    field="criteria",
                    hint=f"run `{reg.train_command(c)}`, or serve its untuned base with --criteria_untrained=base",
                )
                for c in missing
            ]
        )
    return refs
