"""The pipeline spec: one file that says which ladder, which tasks, which law and which target.

A spec composes the training area's ladder spec (trained here) or an imported ladder (the
paper's released evaluations), the `ladder_*` tasks and how to evaluate them, the law method,
the target, the drift gate, the tracking store and the output folder. Bundled specs live in
`taskladder/specs/*.yaml` and are found by name (`cpu-micro`, `paper`, `paper-import`).

Names: a `PipelineSpec` is made of sections (`LadderSection`, `EvaluateSection`, `FitSection`,
`TargetSection`, `GateSection`); the training area's `LadderSpec` (presets `*-ladder`, its
`TargetModel`, `target_ladder()`) is what a trained ladder or target section points at.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from taskladder.common.errors import deprecated
from taskladder.common.facts import PAPER_LADDER, PAPER_TASKS, TARGETS, TASKS
from taskladder.common.specfile import (
    SUFFIXES,
    parse_mapping,
    read_mapping,
    resolve_path,
    validate,
)
from taskladder.errors import UsageError
from taskladder.flags import over_section

DEFAULT_SPEC = "cpu-micro"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LadderSection(_Model):
    """Where the ladder comes from: trained here (`train`) or read from disk (`import`).

    `train` is a training preset name (`cpu-micro-ladder`, `paper-ladder`) or an inline training
    spec;
    `import` a folder or file of evaluations someone else made (the paper's CSVs, lm-eval
    results, our CSV schema), read with the law engine's readers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    train: str | dict[str, Any] | None = None
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="fields of the training spec to replace"
    )
    import_: str | None = Field(default=None, alias="import")
    format: str | None = Field(default=None, description="reader format (None: detected)")
    runs: list[str] | None = Field(
        default=None, description="glob patterns of imported runs to keep (default: all); "
        "'paper' = the paper's 1/2/5/10xC runs"
    )

    _paper_runs = field_validator("runs", mode="before")(
        lambda v: list(PAPER_LADDER) if v == "paper" else v)

    @model_validator(mode="after")
    def _one_source(self) -> LadderSection:
        if (self.train is None) == (self.import_ is None):
            raise ValueError("give exactly one of ladder.train and ladder.import")
        if self.import_ is not None and self.overrides:
            raise ValueError("ladder.overrides applies to a trained ladder, not an import")
        return self

    @property
    def trained(self) -> bool:
        return self.train is not None


class EvalSlurm(_Model):
    """What each evaluation job asks Slurm for (`evaluate.launcher: slurm`), by the names of
    training's `slurm` section (one node per job); `--slurm KEY=VALUE,...` sets the same."""

    partition: str | None = None
    gpus_per_node: int = Field(default=0, ge=0, description="0: a CPU job")
    cpus_per_task: int | None = Field(default=None, gt=0)
    mem_gb: float | None = Field(default=None, gt=0)
    timeout_min: int = Field(default=24 * 60, gt=0)
    max_retries: int = Field(default=3, ge=0, description="resubmissions of a shard's job")
    poll_seconds: float = Field(default=10.0, gt=0)
    additional: dict[str, Any] = Field(default_factory=dict,
                                       description="more sbatch options (submitit's names)")

    _old_names = model_validator(mode="before")(  # training's name (one release)
        lambda data: _renamed_key(data, "gpus_per_job", "gpus_per_node",
                                  "evaluate.slurm.gpus_per_job"))


class EvaluateSection(_Model):
    """How each kept checkpoint is scored on the `ladder_*` tasks, and where: `devices` local
    workers (one per GPU, or per share of the CPU cores), or `shards` Slurm jobs."""

    tasks: list[str] = Field(min_length=1, description="task keys, or 'paper' / 'all'")
    limit: int | None = Field(default=None, gt=0, description="docs per task (None: all)")
    backend: str = "fast"
    batch_size: int = Field(default=32, gt=0)
    devices: int = Field(default=1, gt=0)
    launcher: Literal["local", "slurm"] = "local"
    shards: int | None = Field(default=None, gt=0, description="slurm jobs (None: one per "
                               "checkpoint)")
    slurm: EvalSlurm = Field(default_factory=EvalSlurm)

    _named_tasks = field_validator("tasks", mode="before")(lambda v: _task_list(v))

    @model_validator(mode="after")
    def _known_tasks(self) -> EvaluateSection:
        from taskladder.harness_ext.preflight import BACKEND_ALIASES, BACKENDS

        _check_tasks(self.tasks, "evaluate.tasks")
        known = (*BACKEND_ALIASES, *BACKENDS)
        if self.backend not in known:
            raise ValueError(f"evaluate.backend: unknown backend {self.backend!r} "
                             f"(known: {', '.join(known)})")
        return self


class FitSection(_Model):
    """Which law: the paper's settings or the careful default; which tasks to fit."""

    method: Literal["paper", "default"] = "default"
    tasks: list[str] | None = Field(
        default=None,
        description="task keys, 'paper' (the paper's 8) or 'all' (every task with an accuracy "
        "in the ladder, found when it is read)",
    )

    # `all` stays ["all"] until the ladder is read (`taskladder.laws.tasks.select_tasks`)
    _named_tasks = field_validator("tasks", mode="before")(
        lambda v: ["all"] if v == "all" else _task_list(v)
    )

    @model_validator(mode="after")
    def _known_tasks(self) -> FitSection:
        if self.tasks is not None and self.tasks != ["all"]:
            _check_tasks(self.tasks, "fit.tasks")
        return self


class TargetSection(_Model):
    """The model to predict: a named target of the paper (`7B-4T`: its N and D are facts),
    (N, D) given, or a training spec whose build gives them.

    `train: true` trains and evaluates the target here (needs `spec`); `actual` points at the
    target's real evaluation (a CSV or lm-eval results) when it was trained elsewhere.
    """

    name: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                             description="a registry key (spec 'ladder': the ladder's target's)")
    N: float | None = Field(default=None, gt=0)
    D: float | None = Field(default=None, gt=0)
    spec: str | dict[str, Any] | None = Field(
        default=None, description="training preset, spec file or mapping of the target (N, D "
        "come from it); 'ladder' = the ladder spec's own target"
    )
    train: bool = False
    actual: str | None = None
    actual_format: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _named(cls, data: Any) -> Any:
        """A paper target's N and D come from common.facts unless the spec gives them."""
        if isinstance(data, dict) and data.get("name") in TARGETS and data.get("spec") is None:
            n, d = TARGETS[data["name"]]
            data = {"N": n, "D": d, **{k: v for k, v in data.items() if v is not None}}
        return data

    @model_validator(mode="after")
    def _has_size(self) -> TargetSection:
        if self.name is None and self.spec != "ladder":
            raise ValueError("target.name is missing (only target.spec 'ladder' names the "
                             "target itself: the ladder spec's target)")
        if self.spec is None and (self.N is None or self.D is None):
            raise ValueError("target needs N and D, a training spec in target.spec, or a "
                             f"known name ({', '.join(TARGETS)})")
        if self.train and self.spec is None:
            raise ValueError("target.train is true but target.spec (what to train) is missing")
        if self.train and self.actual is not None:
            raise ValueError("target.train and target.actual are exclusive: pick one source")
        return self


class GateSection(_Model):
    """Drift gate: compare the target's real evaluation with the registered prediction.

    The fields are `taskladder gate`'s and are checked by the gate's own parser
    (`registry.rule.GateRule.parse`), so a spec accepts exactly what the gate accepts:
    `metric: acc` with `tolerance` in points (5), `metric: loss` with a relative one ("5%"),
    either "interval"; `max_shift` bounds how far a re-fit may move a registered prediction
    (None: the gate's default). A missing tolerance is the metric's default.
    """

    enabled: bool = False
    metric: str = "acc"
    tolerance: float | int | str | bool | None = Field(
        default=None, description="points, 'N%' or 'interval' (None: the metric's default)")
    max_shift: float | int | str | bool | None = None
    patience: int = Field(default=3, ge=1, description="drifting checkpoints in a row before "
                          "the watched target drifts (docs/trajectory.md)")
    watch: bool = Field(default=False, description="judge every checkpoint of a trained target "
                        "against its trajectory band while it trains (docs/trajectory.md)")
    stop_on_drift: bool = Field(default=False, description="with watch: stop the target's "
                                "training when its latest checkpoints drift")

    @model_validator(mode="after")
    def _valid_rule(self) -> GateSection:
        self.rule()
        return self

    def rule_values(self) -> dict[str, Any]:
        """The fields as `GateRule.parse` and `registry.gate.run_gate` take them."""
        from taskladder.registry.rule import DEFAULT

        shift = DEFAULT if self.max_shift is None else self.max_shift
        return {"metric": self.metric, "tolerance": self.tolerance, "max_shift": shift}

    def rule(self):
        """The gate's rule (registry.rule.GateRule) these fields give."""
        from taskladder.registry.rule import GateRule

        return GateRule.parse(**self.rule_values(), prefix="gate.")

    def describe(self) -> str:
        return self.rule().describe()


class PipelineSpec(_Model):
    """Everything `taskladder run` needs; validated completely before any work starts."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    ladder: LadderSection
    evaluate: EvaluateSection | None = None
    fit: FitSection = FitSection()
    target: TargetSection
    gate: GateSection = GateSection()
    tracking_uri: str | None = None
    output_dir: str | None = Field(default=None, description="default: ./taskladder-out/<name>")
    source: str | None = Field(default=None, exclude=True, description="where the spec was read")

    _old_names = model_validator(mode="before")(  # the section `eval` (one release)
        lambda data: _renamed_key(data, "eval", "evaluate", "spec section eval"))

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        trains = self.ladder.trained
        if trains and self.evaluate is None:
            raise ValueError("a trained ladder needs an evaluate section (tasks to score)")
        if self.evaluate is not None and self.fit.tasks not in (None, ["all"]):
            missing = sorted(set(self.fit.tasks) - set(self.evaluate.tasks))
            if trains and missing:
                raise ValueError(f"fit.tasks {missing} are not in evaluate.tasks")
        if self.target.spec == "ladder" and not trains:
            raise ValueError("target.spec 'ladder' is the trained ladder's own target: it needs "
                             "ladder.train")
        if self.target.train and self.evaluate is None:
            raise ValueError("target.train needs an evaluate section to score the target")
        if self.gate.watch and not self.target.train:
            raise ValueError("gate.watch judges a target while taskladder trains it: it needs "
                             "target.train")
        if self.gate.enabled and not (self.target.train or self.target.actual):
            raise ValueError("gate.enabled needs the target's real evaluation: target.train or "
                             "target.actual")
        return self

    # derived values ------------------------------------------------------------------------
    @property
    def target_name(self) -> str:
        """The target's registry key: `target.name`, or with `spec: ladder` the ladder spec's
        own target's name (one name for one model, not retyped)."""
        if self.target.spec != "ladder":
            return self.target.name
        from taskladder.training.spec import load_ladder_spec

        own = load_ladder_spec(self.ladder.train, self.ladder.overrides).target
        if own is None:
            raise UsageError("target.spec: 'ladder', but the ladder spec has no target")
        if self.target.name not in (None, own.name):
            raise UsageError(f"target.name: {self.target.name!r} is not the ladder's target "
                             f"{own.name!r} (target.spec: ladder); leave it out")
        return own.name

    @property
    def fit_tasks(self) -> list[str]:
        """The tasks to fit as the spec says them (["all"] until the ladder is read)."""
        if self.fit.tasks is not None:
            return list(self.fit.tasks)
        return list(self.evaluate.tasks) if self.evaluate else list(PAPER_TASKS)

    def tasks_in(self, observations) -> list[str]:
        """`fit_tasks` on the read ladder: `all` = every task with an accuracy in it."""
        from taskladder.laws.tasks import select_tasks

        return select_tasks(self.fit_tasks, observations)

    def resolve_path(self, value: str) -> Path:
        """A path from the spec by `common.specfile.resolve_path` (relative to the spec file;
        bundled specs: to the working directory), and `{ladder}` = the imported ladder's
        folder."""
        if "{ladder}" in value:
            ladder = self.resolve_path(self.ladder.import_ or ".")
            folder = ladder if not ladder.is_file() else ladder.parent
            value = value.replace("{ladder}", str(folder))
        bundled = self.source is None or self.source.startswith("bundled:")
        return resolve_path(value, None if bundled else Path(self.source).parent)

    def out_dir(self) -> Path:
        return Path(self.output_dir or Path("taskladder-out") / self.name).expanduser().resolve()

    def tracking(self) -> str:
        """Spec value, else TASKLADDER_TRACKING_URI / MLFLOW_TRACKING_URI, else SQLite in
        out_dir."""
        from taskladder.registry.store import resolve_uri

        return resolve_uri(self.tracking_uri, default=f"sqlite:///{self.out_dir() / 'mlflow.db'}")

    def with_evaluate(self, devices: int | None = None, launcher: str | None = None,
                      shards: int | None = None, slurm: str | None = None) -> PipelineSpec:
        """A copy whose evaluate section takes the command line's `--devices`, `--launcher`,
        `--shards` and `--slurm KEY=VALUE,...` (None: the spec's); a problem is one line
        naming the flag and the value."""
        from pydantic import ValidationError

        given = {k: v for k, v in (("devices", devices), ("launcher", launcher),
                                   ("shards", shards)) if v is not None}
        if not given and slurm is None:
            return self
        flag = f"--{next(iter(given))}" if given else "--slurm"
        if self.evaluate is None:
            raise UsageError(f"{flag}: spec {self.name} has no evaluate section (nothing is "
                             "scored here)")
        for key, value in given.items():
            try:
                EvaluateSection.model_validate({**self.evaluate.model_dump(), key: value})
            except ValidationError as exc:
                msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
                raise UsageError(f"--{key}: {msg} (got {value!r})") from None
        data = {**self.evaluate.model_dump(), **given}
        if devices is not None and devices != 1 and data["launcher"] == "slurm":
            raise UsageError(f"--devices: {devices} applies to --launcher local (Slurm jobs "
                             "are --shards, each with its slurm gpus_per_node)")
        if shards is not None and data["launcher"] != "slurm":
            raise UsageError(f"--shards: {shards} applies to --launcher slurm (local workers "
                             "are --devices)")
        if slurm is not None:
            if data["launcher"] != "slurm":
                raise UsageError(f"--slurm: {slurm!r} applies to --launcher slurm")
            data["slurm"] = over_section(self.evaluate.slurm, slurm, "--slurm").model_dump()
        return self.with_overrides(evaluate=data)

    def with_overrides(self, **values: Any) -> PipelineSpec:
        """A copy with top-level fields replaced (CLI flags), validated again."""
        data = self.model_dump(mode="python", by_alias=True)
        data.update({k: v for k, v in values.items() if v is not None})
        return validate_pipeline_spec(data, self.source or "overrides")


def _renamed_key(data: Any, old: str, new: str, what: str) -> Any:
    """Key `old` of a mapping read as `new`, with a one-line notice (accepted one release)."""
    if isinstance(data, dict) and old in data and new not in data:
        deprecated(what, new)
        data = {(new if k == old else k): v for k, v in data.items()}
    return data


def _task_list(value: Any) -> Any:
    """`paper` = the paper's eight tasks, `all` = every task (as `--tasks` takes them)."""
    named = {"paper": PAPER_TASKS, "all": TASKS}
    return list(named[value]) if isinstance(value, str) and value in named else value


def _check_tasks(tasks: list[str], field: str) -> None:
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"{field}: unknown task {unknown[0]!r} (known: {', '.join(TASKS)})")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"{field}: a task is listed twice: {tasks}")


# loading ------------------------------------------------------------------------------------
def bundled_specs() -> list[str]:
    """Names of the specs that ship with the package."""
    root = resources.files("taskladder") / "specs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_spec(name_or_path: str | None = None) -> PipelineSpec:
    """A bundled spec by name, or a YAML/TOML/JSON file; None means the embedded default."""
    name = name_or_path or DEFAULT_SPEC
    path = Path(os.path.expanduser(name))
    if path.suffix in SUFFIXES or path.exists():
        if not path.is_file():
            raise UsageError(f"spec file {name!r} not found (bundled specs: "
                             f"{', '.join(bundled_specs())})")
        return validate_pipeline_spec(read_mapping(path), str(path.resolve()))
    if name not in bundled_specs():
        raise UsageError(f"spec {name!r} is neither a file nor a bundled spec "
                         f"({', '.join(bundled_specs())})")
    text = (resources.files("taskladder") / "specs" / f"{name}.yaml").read_text()
    data = parse_mapping(text, ".yaml", f"bundled spec {name}")
    return validate_pipeline_spec(data, f"bundled:{name}")


def validate_pipeline_spec(data: dict, source: str) -> PipelineSpec:
    """A PipelineSpec from plain data read at `source`; the first problem is one line."""
    return validate(PipelineSpec, {**data, "source": source}, f"spec {source}")
