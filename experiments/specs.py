"""Typed, frozen, validated run specs: the schema of every YAML file litbench reads.

A RunSpec describes one training run completely. Sections whose options depend on a registry
entry (``data``, ``model``, ``optimizer``, ``schedule``) are validated against that entry's
signature, so ``model: {name: cnn, channels: [32, 64]}`` is typed by the ``cnn`` builder itself and
a typo in an option fails before anything trains. Defaults are filled in, which makes the canonical
JSON, and therefore the spec hash, the same however much of the default a file spells out.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
import json
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from experiments.registry import Registry, UnknownNameError


class SpecError(ValueError):
    """A spec that cannot be run; the message is one paragraph naming the problem and the fix."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _registries() -> dict[str, tuple[Registry, frozenset[str]]]:
    """Section -> (registry, parameters the runner injects and the user must not set)."""
    from datamodules import DATAMODULES
    from experiments.registry import RegistryUnion
    from lightning_modules.architectures import MODELS
    from lightning_modules.architectures.seq2seq import INJECTED as SEQ2SEQ_INJECTED
    from lightning_modules.architectures.seq2seq import SEQ2SEQ_MODELS
    from lightning_modules.optim import OPTIMIZERS, SCHEDULES

    return {
        "data": (DATAMODULES, frozenset({"self", "data_dir", "seed", "augment"})),
        "model": (
            RegistryUnion("model", MODELS, SEQ2SEQ_MODELS),  # classifiers, then encoder-decoders
            frozenset({"input_shape", "num_classes", "dropout", "vocab_size", "pad_id", "pair"})
            | frozenset(SEQ2SEQ_INJECTED),
        ),
        "optimizer": (OPTIMIZERS, frozenset({"params", "lr", "weight_decay", "fused"})),
        "schedule": (SCHEDULES, frozenset({"optimizer", "steps_per_epoch", "total_steps"})),
    }


@functools.cache
def options_model(section: str, name: str) -> type[BaseModel]:
    """A pydantic model of the options that registry entry ``name`` takes, built from its signature."""
    registry, injected = _registries()[section]
    entry = registry.get(name)
    target = entry.__init__ if inspect.isclass(entry) else entry
    hints = typing.get_type_hints(target)
    fields: dict[str, Any] = {}
    for param in inspect.signature(target).parameters.values():
        if param.name in injected or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return create_model(f"{section}_{name}_options", __config__=config, **fields)


class _RegistrySection(BaseModel):
    """A section named by ``name`` whose remaining keys are that registry entry's options."""

    model_config = ConfigDict(extra="allow", frozen=True)
    _section: typing.ClassVar[str]
    _shared: typing.ClassVar[tuple[str, ...]] = ()  # fields every entry has, kept out of the options

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
        shared = {key: raw.pop(key) for key in cls._shared if key in raw}
        try:
            options = options_model(cls._section, name)
        except UnknownNameError as err:
            raise ValueError(str(err)) from None
        try:
            validated = options.model_validate(raw)
        except ValidationError as err:
            raise ValueError(_options_message(cls._section, name, options, err)) from None
        return {"name": name, **shared, **validated.model_dump(mode="json")}

    @property
    def options(self) -> dict[str, Any]:
        """The entry's own options (not ``name`` nor the shared fields), defaults filled in."""
        return dict(self.model_extra or {})


def _options_message(section: str, name: str, options: type[BaseModel], err: ValidationError) -> str:
    valid = ", ".join(options.model_fields) or "none"
    problems = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, options.model_fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{section} {name!r} takes no option {key!r}{hint}")
        else:
            problems.append(f"{section}.{key}: {e['msg']}")
    return f"{'; '.join(problems)}. Options of {section} {name!r}: {valid}"


class DataSpec(_RegistrySection):
    """Which datamodule, with its options (batch size, split, augmentation policy, ...)."""

    _section = "data"
    name: str = "digits"


class ModelSpec(_RegistrySection):
    """Which architecture, with its options (widths, depths, ...); dropout is a regularizer."""

    _section = "model"
    name: str = "mlp"


class OptimizerSpec(_RegistrySection):
    """Which optimizer, its learning rate and its own options (momentum, betas, ...)."""

    _section = "optimizer"
    _shared = ("lr",)
    name: str = "adam"
    lr: float = Field(1e-3, gt=0)


class ScheduleSpec(_RegistrySection):
    """Learning-rate schedule, stepped every optimizer step, with an optional linear warm-up."""

    _section = "schedule"
    _shared = ("warmup_epochs",)
    name: str = "none"
    warmup_epochs: float = Field(0.0, ge=0)  # linear warm-up from ~0 to lr; 0 disables


class RegularizationSpec(StrictModel):
    """Every regularizer a benchmark compares, in one place so a grid axis can name each."""

    l2: float = Field(0.0, ge=0)  # weight decay (decoupled for adamw); not applied to biases
    l1: float = Field(0.0, ge=0)  # coefficient of the sum of |w| added to the loss
    dropout: float = Field(0.0, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float = Field(0.0, ge=0)  # clip the global gradient norm at this value; 0 disables
    early_stopping: int = Field(0, ge=0)  # patience in epochs on the task's metric; 0 disables
    augment: bool = False  # the datamodule's augmentation policy on the training batches


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


class DecodingSpec(StrictModel):
    """How a translation (seq2seq) model is trained and decoded; unset for classification runs."""

    teacher_forcing: float = Field(1.0, ge=0.0, le=1.0)  # < 1: recurrent decoders feed their own guesses
    beam_size: int = Field(5, ge=1)  # test decoding; 1 is greedy
    length_penalty: float = Field(1.0, ge=0.0)  # GNMT's alpha
    val_beam_size: int = Field(1, ge=1)  # validation BLEU each epoch: greedy by default, for speed
    max_len_ratio: float = Field(1.5, gt=0.0)  # hypotheses stop at ratio * source length + extra tokens
    max_len_extra: int = Field(10, ge=0)


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

    def identity(self) -> dict[str, Any]:
        """Everything that changes what is trained: the spec minus its tracking options."""
        identity = self.model_dump(mode="json", exclude={"tracking"})
        if identity["decoding"] is None:
            del identity["decoding"]
        if identity["trainer"]["max_minutes"] is None:  # unset: the hash of runs from before it existed
            del identity["trainer"]["max_minutes"]
        return identity

    @property
    def spec_hash(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def flat_params(self) -> dict[str, Any]:
        """Every field as a dotted key, the form MLflow params and report columns take."""
        unset = {"decoding"} if self.decoding is None else None  # as in identity(): no key for it
        return flatten(self.model_dump(mode="json", exclude=unset))

    def default_run_name(self) -> str:
        return f"{self.model.name}-{self.optimizer.name}-lr{self.optimizer.lr:g}-s{self.seed}"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree['a']['b'] = value`` for ``dotted='a.b'``, creating sections on the way."""
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if isinstance(child, str):  # `model: cnn` shorthand, then `model.dropout=...`
            child = {"name": child}
        node[part] = child = dict(child or {})
        node = child
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``key.sub=value`` with the value read as YAML, so numbers, lists and booleans keep their type."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"override {text!r} is not of the form key=value (for example optimizer.lr=0.01)")
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file {str(path)!r} does not exist; pass the path of a YAML spec")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"{path}: not valid YAML{where} ({problem}); fix the syntax there") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SpecError(
            f"{path}: the top level must be a mapping of keys to values, not {type(loaded).__name__}"
        )
    return loaded


def describe_validation_error(err: ValidationError, model: type[BaseModel], where: str) -> str:
    """Turn pydantic's report into one paragraph that names each key, its path and the fix."""
    problems = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        path = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            valid = _fields_at(model, loc[:-1])
            close = difflib.get_close_matches(loc[-1], valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"unknown key {path!r} (valid keys here: {', '.join(valid)}{hint})")
        elif e["type"] == "value_error":
            problems.append(f"{path}: {e['msg'].removeprefix('Value error, ')}")
        else:
            problems.append(f"{path}: {e['msg']} (got {e.get('input')!r})")
    return f"{where}: " + "; ".join(problems) + "."


def _fields_at(model: type[BaseModel], loc: Sequence[str]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (inspect.isclass(annotation) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def validate_run_spec(raw: Mapping[str, Any], where: str = "spec") -> RunSpec:
    try:
        return RunSpec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(describe_validation_error(err, RunSpec, where)) from None


def load_run_spec(path: str | Path, overrides: Sequence[str] = ()) -> RunSpec:
    """Read a RunSpec YAML file, apply ``key=value`` overrides, and validate it."""
    raw = read_yaml(path)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(raw, key, value)
    return validate_run_spec(raw, where=str(path))
