"""Runs that start from runs: resolving ``model.init_from`` and ``distill.teacher`` references,
loading the parent's weights and computing (or reading) the teacher's soft targets.

Everything here happens before the child's MLflow run exists, so a reference to an unknown run, a
run without weights, a parent of another shape or a teacher of another label set is one clear
SpecError and leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from core import tags as tag
from core.context import Context
from core.errors import SpecError
from experiments import tracking
from experiments.run.prepare import Prepared
from experiments.run.restore import WEIGHTS_ARTIFACT, checkpoint_files, restore_checkpoint, restore_run
from experiments.run.weights_file import read_state_dict
from experiments.specs import RunRef, RunSpec
from lightning_modules.architectures.parts import load_part
from lightning_modules.distillation import SoftTargets
from tasks import distillation


def resolve_refs(spec: RunSpec, ctx: Context) -> RunSpec:
    """``spec`` with its run and checkpoint references resolved to their spec hashes (the identity of
    the child depends on them). A stage reference must have been resolved by its grid already."""
    init, distill = spec.model.init_from, spec.distill
    update = {}
    if init is not None and init.spec_hash is None:
        model = spec.model.model_copy(update={"init_from": resolve_ref(init, ctx, "model.init_from")})
        update["model"] = model
    if distill is not None and distill.teacher.spec_hash is None:
        teacher = resolve_ref(distill.teacher, ctx, "distill.teacher")
        update["distill"] = distill.model_copy(update={"teacher": teacher})
    return spec.model_copy(update=update) if update else spec


def resolve_ref(ref: RunRef, ctx: Context, where: str) -> RunRef:
    """The reference with ``spec_hash`` filled: the parent run's, or the sha256 of a checkpoint's weights."""
    if ref.stage is not None:
        raise SpecError(
            f"{where}: {ref.shown()} names a grid stage, and stages exist only in a grid file's "
            "`stages:` (run it with `litbench grid`); outside a grid name the parent by its run id"
        )
    if ref.checkpoint is not None:
        _, weights = checkpoint_files(Path(ref.checkpoint))
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
        return ref.model_copy(update={"spec_hash": digest})
    run = _finished_run(ref.run, ctx, where)
    return ref.model_copy(update={"spec_hash": run.data.tags[tag.SPEC_HASH]})


def _finished_run(run_id: str, ctx: Context, where: str):
    from mlflow.exceptions import MlflowException

    try:
        run = ctx.client.get_run(run_id)
    except MlflowException:
        raise SpecError(
            f"{where}: no run {run_id!r} in {ctx.tracking_uri}; list runs with `litbench ls EXPERIMENT`"
        ) from None
    if tag.SPEC_HASH not in run.data.tags:
        raise SpecError(f"{where}: run {run_id} is not a litbench run (it has no {tag.SPEC_HASH} tag)")
    if run.info.status != "FINISHED":
        raise SpecError(f"{where}: run {run_id} is {run.info.status}; a parent must have FINISHED")
    names = {a.path for a in ctx.client.list_artifacts(run_id, "model")}
    if WEIGHTS_ARTIFACT not in names:
        raise SpecError(
            f"{where}: run {run_id} has no {WEIGHTS_ARTIFACT} artifact, so there are no weights to "
            "start from; train the parent again with `tracking: {log_checkpoint: true}`"
        )
    return run


@dataclass(frozen=True)
class Parent:
    """A resolved reference found: its run (None for a checkpoint) and its files."""

    run_id: str | None
    spec_hash: str
    spec_file: Path
    weights: Path


def find_parent(ref: RunRef, ctx: Context, experiment: str, where: str, into: Path) -> Parent:
    """The parent's run and files (downloaded into ``into``): by run id, by a grid stage's hash (the
    FINISHED run of that hash in ``experiment``), or a checkpoint on disk."""
    if ref.spec_hash is None:
        ref = resolve_ref(ref, ctx, where)
    if ref.checkpoint is not None:
        spec_file, weights = checkpoint_files(Path(ref.checkpoint))
        return Parent(None, ref.spec_hash, spec_file, weights)
    run_id = ref.run or _stage_run(ref, ctx, experiment, where)
    _finished_run(run_id, ctx, where)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    spec_file = ctx.client.download_artifacts(run_id, "spec.yaml", str(into))
    weights = ctx.client.download_artifacts(run_id, WEIGHTS_ARTIFACT, str(into))
    return Parent(run_id, ref.spec_hash, Path(spec_file), Path(weights))


def _stage_run(ref: RunRef, ctx: Context, experiment: str, where: str) -> str:
    runs = tracking.runs_with_hashes(ctx.client, ctx.experiment_id(experiment), [ref.spec_hash])
    finished = [r for r in runs[ref.spec_hash] if r.info.status == "FINISHED"]
    if not finished:
        raise SpecError(
            f"{where}: {ref.shown()} (hash {ref.spec_hash}) has no FINISHED run in experiment "
            f"{experiment!r}; its cell must finish first (`litbench grid` runs the stages in order)"
        )
    return sorted(finished, key=lambda r: r.info.start_time or 0)[0].info.run_id


def init_weights(prepared: Prepared, ctx: Context, experiment: str) -> dict[str, str]:
    """Load ``model.init_from`` into the prepared network; the lineage tags of the child."""
    ref = prepared.spec.model.init_from
    where = "model.init_from"
    with tempfile.TemporaryDirectory(prefix="litbench-parent-") as tmp:
        parent = find_parent(ref, ctx, experiment, where, Path(tmp))
        if parent.run_id is not None:
            _check_vocabulary(prepared, ctx, parent.run_id)
        state = read_state_dict(parent.weights, f"{where} {ref.shown()} weights")
        try:
            load_part(prepared.network, state, ref.part)
        except (ValueError, RuntimeError, OSError, EOFError) as err:
            raise SpecError(
                f"{where} {ref.shown()}: cannot load its {ref.part} weights into this "
                f"{prepared.spec.model.name}: {err}"
            ) from None
    found = {tag.PARENT_HASH: parent.spec_hash, tag.PARENT_PART: ref.part}
    if parent.run_id is not None:
        found[tag.PARENT_RUN] = parent.run_id
    return found


def _check_vocabulary(prepared: Prepared, ctx: Context, parent_run_id: str) -> None:
    """Token embeddings mean words: a fitted vocabulary must be the parent's very one (same tokenizer
    spec fitted on the same texts, recorded as ``data.cache_key``), not just of the same size."""
    ours = prepared.task.tracking_params(prepared.datamodule).get("data.cache_key")
    theirs = ctx.client.get_run(parent_run_id).data.params.get("data.cache_key")
    if ours is not None and theirs is not None and str(ours) != theirs:
        raise SpecError(
            f"model.init_from run {parent_run_id}: its vocabulary (data.cache_key {theirs}) is not this "
            f"run's ({ours}), so its token embeddings would stand for other words; pretrain on the "
            "same task text with the same data.tokenizer, or use a pretrained tokenizer"
        )


@dataclass(frozen=True)
class Teacher:
    soft_targets: SoftTargets
    tags: dict[str, str]
    seconds: float
    cache_hit: bool


def teacher_targets(
    prepared: Prepared, ctx: Context, experiment: str, cache_dir: Path | None = None
) -> Teacher:
    """The teacher's logits on the student's training examples, from the cache or computed once."""
    distill = prepared.spec.distill
    started = time.perf_counter()
    student_data = prepared.datamodule
    examples = student_data.train_examples()
    with tempfile.TemporaryDirectory(prefix="litbench-teacher-") as tmp:
        parent = find_parent(distill.teacher, ctx, experiment, "distill.teacher", Path(tmp))
        identity = f"{parent.spec_hash}:{hashlib.sha256(parent.weights.read_bytes()).hexdigest()}"
        path = distillation.cache_path(
            cache_dir or distillation.default_cache_dir(), identity, distillation.examples_digest(examples)
        )
        teacher = _restore(parent, ctx)
        distillation.check_label_sets(teacher.datamodule, student_data)
        logits = distillation.load_cached(path, len(examples))
        hit = logits is not None
        if logits is None:
            logits = distillation.compute_logits(teacher.network, teacher.datamodule, examples)
            distillation.store(path, logits)
    found = {tag.TEACHER_HASH: parent.spec_hash}
    if parent.run_id is not None:
        found[tag.TEACHER_RUN] = parent.run_id
    soft = SoftTargets(logits, distill.temperature, distill.alpha)
    return Teacher(soft, found, time.perf_counter() - started, hit)


def _restore(parent: Parent, ctx: Context) -> Prepared:
    if parent.run_id is not None:
        return restore_run(parent.run_id, ctx)
    return restore_checkpoint(parent.weights, ctx.data_dir)
