"""Runs that start from runs: init_from loading, distillation, teacher-logit caching and the errors a
bad reference gets before anything trains. Real SQLite MLflow stores under tmp_path."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from core import tags as tag
from core.context import Context
from core.errors import SpecError
from experiments.run.runner import execute
from experiments.specs import validate_run_spec
from lightning_modules.architectures import create_model
from lightning_modules.architectures.parts import load_part, part_of
from lightning_modules.distillation import distillation_loss
from tests.conftest import tiny_raw_spec
from tests.test_glue_datamodule import glue_spec, write_glue


def _transformer(num_classes: int, d_model: int = 16):
    return create_model(
        "transformer",
        input_shape=(12,),
        num_classes=num_classes,
        token_inputs={"vocab_size": 30, "pad_id": 0, "pair": False},
        d_model=d_model,
        heads=2,
        layers=1,
        ff_dim=32,
    )


def test_encoder_part_loads_exactly_the_encoder_tensors() -> None:
    torch.manual_seed(0)
    parent, child = _transformer(5), _transformer(2)
    head_before = {k: v.clone() for k, v in child.state_dict().items() if k.startswith("head.")}
    loaded = load_part(child, parent.state_dict(), "encoder")
    assert loaded and not any(k.startswith("head.") for k in loaded)
    state, parents = child.state_dict(), parent.state_dict()
    for key in loaded:
        assert torch.equal(state[key], parents[key]), key
    for key, value in head_before.items():  # the head keeps its own initialization
        assert torch.equal(state[key], value)
    assert set(loaded) == set(part_of(parents, "encoder"))


def test_all_part_refuses_another_head_and_any_shape_mismatch_names_the_tensor() -> None:
    parent, child = _transformer(5), _transformer(2)
    with pytest.raises(ValueError, match=r"differ in shape, first head\..*\[5, 16\] in the parent"):
        load_part(child, parent.state_dict(), "all")
    wide = _transformer(2, d_model=32)
    before = {k: v.clone() for k, v in child.state_dict().items()}
    with pytest.raises(ValueError, match=r"differ in shape"):
        load_part(child, wide.state_dict(), "encoder")
    assert all(torch.equal(before[k], v) for k, v in child.state_dict().items())  # untouched
    with pytest.raises(
        ValueError, match=r"missing layers.0.attn.in_proj_bias.* and 11 more; not in this network other"
    ):
        load_part(child, {"other.weight": torch.zeros(1)}, "encoder")


def test_distillation_loss_equals_the_hand_computation() -> None:
    torch.manual_seed(1)
    student, teacher = torch.randn(6, 3), torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    t, a = 3.0, 0.7
    p_teacher = torch.softmax(teacher / t, dim=1)
    log_p_student = torch.log_softmax(student / t, dim=1)
    kl = (p_teacher * (torch.log(p_teacher) - log_p_student)).sum(dim=1).mean()
    ce = -torch.log_softmax(student, dim=1)[torch.arange(6), labels].mean()
    expected = a * t * t * kl + (1 - a) * ce
    got = distillation_loss(student, teacher, labels, t, a)
    assert math.isclose(float(got), float(expected), rel_tol=1e-5)
    assert math.isclose(
        float(distillation_loss(student, teacher, labels, t, 0.0)),
        float(F.cross_entropy(student, labels)),
        rel_tol=1e-6,
    )


@pytest.fixture
def ctx(tracking_uri: str, tmp_path: Path) -> Context:
    return Context(tracking_uri, tmp_path / "data")


def _runs(ctx: Context, experiment: str) -> list:
    found = ctx.client.get_experiment_by_name(experiment)
    return [] if found is None else ctx.client.search_runs([found.experiment_id])


def test_init_from_a_run_loads_its_weights_and_tracks_lineage(ctx: Context) -> None:
    parent = execute(validate_run_spec(tiny_raw_spec()), ctx, experiment="lineage")
    child_spec = validate_run_spec(tiny_raw_spec(model={"init_from": parent.run_id}))
    child = execute(child_spec, ctx, experiment="lineage")
    tags = ctx.client.get_run(child.run_id).data.tags
    assert tags[tag.PARENT_RUN] == parent.run_id
    assert tags[tag.PARENT_HASH] == parent.spec_hash
    assert tags[tag.PARENT_PART] == "all"
    # the child's identity holds the parent's hash, not the run id it was named by
    assert child.spec_hash != child_spec.spec_hash
    other = validate_run_spec(tiny_raw_spec(model={"init_from": {"run": "x", "spec_hash": parent.spec_hash}}))
    assert other.spec_hash == child.spec_hash


def test_bad_parents_are_one_clear_error_before_any_run(ctx: Context, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"no run 'nope' in .*litbench ls"):
        execute(validate_run_spec(tiny_raw_spec(model={"init_from": "nope"})), ctx, experiment="bad")
    no_weights = execute(
        validate_run_spec(tiny_raw_spec(tracking={"log_checkpoint": False})), ctx, experiment="bad"
    )
    with pytest.raises(SpecError, match=r"has no model/weights.pt .*log_checkpoint: true"):
        execute(
            validate_run_spec(tiny_raw_spec(model={"init_from": no_weights.run_id})), ctx, experiment="bad"
        )
    wide = execute(validate_run_spec(tiny_raw_spec(model={"hidden": [64]})), ctx, experiment="bad")
    with pytest.raises(
        SpecError, match=r"cannot load its all weights .*\[64, 64\] in the parent, \[16, 64\]"
    ):
        execute(validate_run_spec(tiny_raw_spec(model={"init_from": wide.run_id})), ctx, experiment="bad")
    with pytest.raises(SpecError, match=r"names a grid stage"):
        execute(validate_run_spec(tiny_raw_spec(model={"init_from": {"stage": "x"}})), ctx, experiment="bad")
    with pytest.raises(SpecError, match=r"found no weights"):
        spec = tiny_raw_spec(model={"init_from": {"checkpoint": str(tmp_path / "missing")}})
        execute(validate_run_spec(spec), ctx, experiment="bad")
    assert len(_runs(ctx, "bad")) == 2  # the two parents; no half-made child


def test_distilled_student_caches_teacher_logits_equal_to_fresh_ones(ctx: Context, tmp_path: Path) -> None:
    from experiments.run.lineage import teacher_targets
    from experiments.run.prepare import prepare
    from experiments.run.restore import restore_run
    from tasks import distillation

    teacher = execute(validate_run_spec(tiny_raw_spec(model={"hidden": [32]})), ctx, experiment="kd")
    raw = tiny_raw_spec(distill={"teacher": teacher.run_id, "temperature": 2.0, "alpha": 0.5})
    student = execute(validate_run_spec(raw), ctx, experiment="kd")
    run = ctx.client.get_run(student.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tag.TEACHER_RUN] == teacher.run_id
    assert "perf/teacher_logits_s" in run.data.metrics
    spec = validate_run_spec({**raw, "distill": {**raw["distill"], "teacher": {"run": teacher.run_id}}})
    from experiments.run.lineage import resolve_refs

    prepared = prepare(resolve_refs(spec, ctx), ctx.data_dir)
    cached = teacher_targets(prepared, ctx, "kd")
    assert cached.cache_hit  # the student's run wrote it
    restored = restore_run(teacher.run_id, ctx)
    fresh = distillation.compute_logits(
        restored.network, restored.datamodule, prepared.datamodule.train_examples()
    )
    assert torch.equal(cached.soft_targets.logits, fresh)
    assert cached.soft_targets.logits.shape == (prepared.datamodule.sizes()["train"], 10)


def test_teacher_of_another_label_set_is_refused_before_training(tmp_path: Path, tracking_uri: str) -> None:
    data = write_glue(tmp_path / "data")
    ctx = Context(tracking_uri, data)
    teacher = execute(validate_run_spec(glue_spec("mrpc", epochs=1)), ctx, experiment="labels")
    student = glue_spec("sst2", epochs=1) | {"distill": {"teacher": teacher.run_id}}
    with pytest.raises(
        SpecError, match=r"another label set: 2 classes .*not_equivalent.* 2 classes .*negative"
    ):
        execute(validate_run_spec(student), ctx, experiment="labels")


def test_text_student_learns_from_a_teacher_with_another_tokenizer(tmp_path: Path, tracking_uri: str) -> None:
    data = write_glue(tmp_path / "data")
    ctx = Context(tracking_uri, data)
    bpe = {"tokenizer": {"kind": "bpe", "vocab_size": 200, "max_len": 24}}
    teacher = execute(
        validate_run_spec(glue_spec("sst2", model="transformer", epochs=1, **bpe)), ctx, experiment="kd"
    )
    student = glue_spec("sst2", model="lstm", epochs=1) | {
        "distill": {"teacher": teacher.run_id, "alpha": 0.9}
    }
    result = execute(validate_run_spec(student), ctx, experiment="kd")
    assert ctx.client.get_run(result.run_id).data.tags[tag.TEACHER_RUN] == teacher.run_id


def test_distill_and_variants_on_translation_are_spec_errors() -> None:
    raw = {"data": {"name": "translation"}, "model": {"name": "gru_attention"}}
    with pytest.raises(SpecError, match=r"distill: applies to classification runs .*remove the distill"):
        validate_run_spec(raw | {"distill": {"teacher": "abc"}})
    with pytest.raises(SpecError, match=r"variants: applies to classification runs"):
        validate_run_spec(raw | {"variants": ["int8"]})
    with pytest.raises(SpecError, match=r"exactly one of run"):
        validate_run_spec(tiny_raw_spec(model={"init_from": {"run": "a", "stage": "b"}}))


def test_variants_are_tested_after_the_run_with_sizes_latencies_and_backend(ctx: Context) -> None:
    spec = validate_run_spec(tiny_raw_spec(variants=["int8", "bf16"], trainer={"limit_test_batches": 2}))
    result = execute(spec, ctx, experiment="variants")
    run = ctx.client.get_run(result.run_id)
    metrics = run.data.metrics
    for variant in ("fp32", "int8", "bf16"):
        assert 0.0 <= metrics[f"test_{variant}/acc"] <= 1.0
        assert metrics[f"test_{variant}/size_mb"] > 0
        assert metrics[f"test_{variant}/latency_ms_example"] > 0
    assert metrics["test_int8/size_mb"] < metrics["test_fp32/size_mb"]
    assert run.data.params["variants.int8_backend"]
    assert abs(metrics["test_int8/acc"] - metrics["test_fp32/acc"]) <= 0.05
