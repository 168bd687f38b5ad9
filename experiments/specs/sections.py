"""Typed, frozen, validated run specs: the schema of every run litbench trains.

A RunSpec describes one training run completely. Sections whose options depend on a registry entry
(``data``, ``model``, ``optimizer``, ``schedule``) are validated against that entry's signature
(``experiments.specs.options``). Defaults are filled in, which makes the canonical JSON, and therefore
the spec hash, the same however much of the default a file spells out. A model that does not fit its
data's task kind, or a bad optimizer option combination, fails here, before any data loads.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import typing
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from core.registry import UnknownNameError
from experiments.specs.errors import problem, spec_error
from experiments.specs.options import SHARED_FIELDS, added_options, options_model, retired_options
from experiments.specs.strategies import DistillSpec, InitFromSpec, Variant
from experiments.specs.strict import StrictModel
from experiments.specs.values import flatten
from lightning_modules.optim import OptimizerFactory, ScheduleFactory
from lightning_modules.regularization import LossOptions
from tasks.translation import DecodingSpec


@functools.lru_cache(maxsize=1024)
def _typed_options(section: str, name: str, canonical: str) -> BaseModel:
    """An entry's options validated into their types (a TokenizerSpec, a tuple); cached, so the runner
    gets the typed options the spec's validation already made."""
    return options_model(section, name).model_validate(json.loads(canonical))


def _unknown_option(section: str, name: str):
    def phrase(path: str, key: str, valid: list[str]) -> str:
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{section} {name!r} takes no option {key!r}{hint}"

    return phrase


class RegistrySection(BaseModel):
    """A section named by ``name`` whose remaining keys are that registry entry's options."""

    model_config = ConfigDict(extra="allow", frozen=True)
    section: typing.ClassVar[str]
    shared: typing.ClassVar[tuple[str, ...]] = ()  # fields every entry has, kept out of the options

    name: str

    @model_validator(mode="before")
    @classmethod
    def _validate_options(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, Mapping):
            return raw
        raw = dict(raw)
        name = raw.pop("name", cls.model_fields["name"].default)
        shared = {key: raw.pop(key) for key in cls.shared if key in raw}
        try:
            options = options_model(cls.section, name)
        except UnknownNameError as err:
            raise ValueError(str(err)) from None
        retired = sorted(set(raw) & set(retired_options(cls.section, name)))
        if retired:
            raise ValueError(
                f"{cls.section} {name!r} no longer takes {', '.join(map(repr, retired))}: it never changed "
                "what was trained (the epoch budget is trainer.max_epochs); remove it"
            )
        try:
            validated = options.model_validate(raw)
        except ValidationError as err:
            phrase = _unknown_option(cls.section, name)
            text = "; ".join(problem(e, options, (cls.section,), unknown=phrase) for e in err.errors())
            valid = ", ".join(options.model_fields) or "none"
            raise ValueError(f"{text}. Options of {cls.section} {name!r}: {valid}") from None
        dumped = validated.model_dump(mode="json")
        _typed_options(cls.section, name, json.dumps(dumped, sort_keys=True))  # keep the typed ones
        return {"name": name, **shared, **dumped}

    @property
    def options(self) -> dict[str, Any]:
        """The entry's own options (not ``name`` nor the shared fields), defaults filled in."""
        return dict(self.model_extra or {})

    def typed_options(self) -> dict[str, Any]:
        """The options as the entry's builder takes them (nested specs as their types, tuples)."""
        canonical = json.dumps(self.options, sort_keys=True)
        return dict(_typed_options(self.section, self.name, canonical))


class DataSpec(RegistrySection):
    """Which datamodule, with its options (batch size, split, augmentation policy, ...)."""

    section = "data"
    name: str = "digits"


class ModelSpec(RegistrySection):
    """Which architecture, with its options (widths, depths, ...); dropout is a regularizer."""

    section = "model"
    shared = ("init_from",)
    name: str = "mlp"
    init_from: InitFromSpec | None = None  # start from another run's weights (all, or its encoder)


class OptimizerSpec(RegistrySection):
    """Which optimizer, its learning rate and its own options (momentum, betas, ...)."""

    section = "optimizer"
    shared = SHARED_FIELDS["optimizer"]
    name: str = "adam"
    lr: float = Field(1e-3, gt=0)

    @model_validator(mode="after")
    def _options_combine(self) -> OptimizerSpec:
        self.factory().check()  # e.g. nesterov without momentum: a ValueError naming the fix
        return self

    def factory(self, weight_decay: float = 0.0) -> OptimizerFactory:
        return OptimizerFactory(self.name, self.lr, weight_decay, self.typed_options())


class ScheduleSpec(RegistrySection):
    """Learning-rate schedule, stepped every optimizer step, with an optional linear warm-up."""

    section = "schedule"
    shared = SHARED_FIELDS["schedule"]
    name: str = "none"
    warmup_epochs: float = Field(0.0, ge=0)  # linear warm-up from ~0 to lr; 0 disables

    def factory(self) -> ScheduleFactory:
        return ScheduleFactory(self.name, self.warmup_epochs, self.typed_options())


class RegularizationSpec(StrictModel):
    """Every regularizer a benchmark compares, in one place so a grid axis can name each."""

    l2: float = Field(0.0, ge=0)  # weight decay (decoupled for adamw); not applied to biases
    l1: float = Field(0.0, ge=0)  # coefficient of the sum of |w| added to the loss
    dropout: float = Field(0.0, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float = Field(0.0, ge=0)  # clip the global gradient norm at this value; 0 disables
    early_stopping: int = Field(0, ge=0)  # patience in epochs on the task's metric; 0 disables
    augment: bool = False  # the datamodule's augmentation policy on the training batches

    def loss_options(self) -> LossOptions:
        return LossOptions(label_smoothing=self.label_smoothing, l1=self.l1)


class TrainerSpec(StrictModel):
    """Lightning Trainer settings that a benchmark may vary."""

    max_epochs: int = Field(5, ge=1)
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: int | Literal["auto"] = 1
    strategy: str = "auto"
    precision: Literal["32-true", "16-mixed", "bf16-mixed", "bf16-true", "64-true"] = "32-true"
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0
    limit_test_batches: int | float = 1.0
    deterministic: bool | Literal["warn"] = "warn"
    # a wall-clock budget for fitting (Trainer max_time), e.g. 14 to stay under a 15-minute budget
    max_minutes: float | None = Field(None, gt=0)


class TrackingSpec(StrictModel):
    """What gets written to MLflow; it does not change results, so it is not part of the hash."""

    log_every_n_steps: int = Field(1, ge=1)
    log_checkpoint: bool = True  # the best weights as an artifact; switch off for large grids
    heatmaps: int = Field(8, ge=0)  # saliency maps of this many test images; 0 disables


class RunSpec(StrictModel):
    """One training run, completely described. Its hash is its identity in the tracker."""

    seed: int = 0
    data: DataSpec = Field(default_factory=lambda: DataSpec.model_validate({}))
    model: ModelSpec = Field(default_factory=lambda: ModelSpec.model_validate({}))
    optimizer: OptimizerSpec = Field(default_factory=lambda: OptimizerSpec.model_validate({}))
    schedule: ScheduleSpec = Field(default_factory=lambda: ScheduleSpec.model_validate({}))
    regularization: RegularizationSpec = RegularizationSpec()
    trainer: TrainerSpec = TrainerSpec()
    tracking: TrackingSpec = TrackingSpec()
    decoding: DecodingSpec | None = None  # translation runs; None leaves classification hashes as they were
    distill: DistillSpec | None = None  # learn from a teacher run's soft targets (classification)
    variants: tuple[Variant, ...] = ()  # after the test, also test the best weights as int8, bf16, ...

    @field_validator("model")
    @classmethod
    def _model_fits_data(cls, model: ModelSpec, info: ValidationInfo) -> ModelSpec:
        data = info.data.get("data")
        if data is not None:  # else the data section is wrong, and says so itself
            from tasks import task_for_data

            task_for_data(data.name).check_model(model.name, data.name)
        return model

    @field_validator("decoding")
    @classmethod
    def _decoding_for_translation(cls, decoding: DecodingSpec | None, info: ValidationInfo) -> Any:
        data = info.data.get("data")
        if decoding is not None and data is not None:
            from tasks import task_for_data

            task = task_for_data(data.name)
            if task.settings_section != "decoding":
                raise ValueError(
                    f"applies to translation runs only, and data {data.name!r} is for "
                    f"{task.name.replace('_', ' ')}; remove the decoding section"
                )
        return decoding

    @field_validator("distill")
    @classmethod
    def _distill_for_classifiers(cls, distill: DistillSpec | None, info: ValidationInfo) -> Any:
        if distill is not None:
            _require_strategy("distill", info, "remove the distill section")
        return distill

    @field_validator("variants")
    @classmethod
    def _variants_for_classifiers(cls, variants: tuple[str, ...], info: ValidationInfo) -> Any:
        if len(set(variants)) != len(variants):
            raise ValueError(f"variants repeat ({', '.join(variants)}); name each once")
        if variants:
            _require_strategy("variants", info, "remove variants")
        return variants

    @model_validator(mode="after")
    def _data_values(self) -> RunSpec:
        """The datamodule's own checks of its values (batch sizes, fractions, what a corpus needs, an
        augmentation it has no policy for), run now: its constructor reads nothing, so a bad value is
        a spec error before anything is tracked, not a failed run."""
        from datamodules import create_datamodule

        try:
            create_datamodule(
                self.data.name,
                data_dir=".",
                seed=self.seed,
                augment=self.regularization.augment,
                **self.data.typed_options(),
            )
        except ValueError as err:
            raise ValueError(f"data {self.data.name!r}: {err}") from None
        return self

    @property
    def task(self):
        """The task kind that trains this run (``tasks.TaskKind``), chosen by its data."""
        from tasks import task_for_data

        return task_for_data(self.data.name)

    def settings(self) -> Any:
        """The task kind's own section of this spec (a translation run's decoding), or None."""
        section = self.task.settings_section
        return getattr(self, section) if section else None

    def identity(self) -> dict[str, Any]:
        """Everything that changes what is trained: the spec minus its tracking options."""
        identity = self.model_dump(mode="json", exclude={"tracking"})
        # sections added since: unset, they leave the hashes of every earlier run as they were
        for unset in ("decoding", "distill", "variants"):
            if not identity[unset]:
                del identity[unset]
        if self.distill is not None:
            identity["distill"] = self.distill.identity()
        del identity["model"]["init_from"]
        if self.model.init_from is not None:
            identity["model"]["init_from"] = self.model.init_from.identity()
        if identity["trainer"]["max_minutes"] is None:  # unset: the hash of runs from before it existed
            del identity["trainer"]["max_minutes"]
        # options retired since (they never changed training), at the value every run had
        identity["data"].update(retired_options("data", self.data.name))
        _drop_added(identity["data"], self.data.name)
        return identity

    @property
    def spec_hash(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def flat_params(self) -> dict[str, Any]:
        """Every field as a dotted key, the form MLflow params and report columns take."""
        dumped = self.model_dump(mode="json")
        for section in ("decoding", "distill", "variants"):  # as in identity(): no key when unset
            if not dumped[section]:
                del dumped[section]
        if dumped["model"]["init_from"] is None:
            del dumped["model"]["init_from"]
        if "variants" in dumped:
            dumped["variants"] = ",".join(dumped["variants"])
        _drop_added(dumped["data"], self.data.name)
        return flatten(dumped)

    def default_run_name(self) -> str:
        return f"{self.model.name}-{self.optimizer.name}-lr{self.optimizer.lr:g}-s{self.seed}"


def _drop_added(data: dict[str, Any], name: str) -> None:
    """Options added since, at the default every earlier run had: absent, as they were then."""
    for key, default in added_options("data", name).items():
        if key in data and data[key] == default:
            del data[key]


def _require_strategy(section: str, info: ValidationInfo, fix: str) -> None:
    """A SpecError-worthy ValueError when the data's task kind cannot take ``section``."""
    data = info.data.get("data")
    if data is None:
        return
    from tasks import task_for_data

    task = task_for_data(data.name)
    if section not in task.strategies:
        takes = "classification runs (text and images)"
        raise ValueError(
            f"applies to {takes} only, and data {data.name!r} is for {task.name.replace('_', ' ')}; {fix}"
        )


def validate_run_spec(raw: Mapping[str, Any], where: str = "spec") -> RunSpec:
    try:
        return RunSpec.model_validate(raw)
    except ValidationError as err:  # a validator's SpecError arrives wrapped in it, too
        raise spec_error(err, RunSpec, where) from None
