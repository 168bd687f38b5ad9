"""Optimizer and schedule builders, the weight-decay groups and the warm-up."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from lightning_modules.optim import OPTIMIZERS, SCHEDULES, build_optimizer, build_scheduler, sgd
from lightning_modules.regularization import decay_param_groups, l1_penalty


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))


def _optimizer_spec(raw: dict):
    specs = pytest.importorskip("experiments.specs")
    return specs.OptimizerSpec.model_validate(raw)


def _schedule_spec(raw: dict):
    specs = pytest.importorskip("experiments.specs")
    return specs.ScheduleSpec.model_validate(raw).factory()


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_each_optimizer_builds_and_steps(name: str) -> None:
    net = _net()
    before = [p.detach().clone() for p in net.parameters()]
    groups = decay_param_groups(net.named_parameters(), 0.1)
    optimizer = OPTIMIZERS.get(name)(groups, lr=0.01, weight_decay=0.1)
    net(torch.randn(16, 4)).pow(2).mean().backward()
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_decay_only_on_matrices() -> None:
    net = _net()
    groups = decay_param_groups(net.named_parameters(), weight_decay=0.5)
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in groups}
    assert by_decay[0.5] == {id(net[0].weight), id(net[3].weight)}
    assert by_decay[0.0] == {id(net[0].bias), id(net[1].weight), id(net[1].bias), id(net[3].bias)}


def test_decay_groups_skip_frozen_parameters() -> None:
    net = _net()
    net[0].weight.requires_grad_(False)
    groups = decay_param_groups(net.named_parameters(), weight_decay=0.5)
    assert id(net[0].weight) not in {id(p) for g in groups for p in g["params"]}


def test_decay_is_applied_only_to_matrices_by_the_optimizer() -> None:
    net = _net()
    for p in net.parameters():
        nn.init.constant_(p, 1.0)
    optimizer = sgd(decay_param_groups(net.named_parameters(), 0.5), lr=0.1, weight_decay=0.5)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)  # only the decay moves the weights
    optimizer.step()
    assert torch.allclose(net[0].weight, torch.full_like(net[0].weight, 1 - 0.1 * 0.5))
    assert torch.equal(net[0].bias, torch.ones_like(net[0].bias))
    assert torch.equal(net[1].weight, torch.ones_like(net[1].weight))


def test_l1_penalty_sums_weight_matrices_only() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    for p in net.parameters():
        nn.init.constant_(p, -2.0)
    expected = 2.0 * (net[0].weight.numel() + net[3].weight.numel())
    assert l1_penalty(net).item() == pytest.approx(expected)


def test_nesterov_without_momentum_raises() -> None:
    with pytest.raises(ValueError, match=r"optimizer\.momentum > 0"):
        sgd([nn.Parameter(torch.zeros(1))], lr=0.1, weight_decay=0.0, nesterov=True)
    assert sgd([nn.Parameter(torch.zeros(1))], lr=0.1, weight_decay=0.0, momentum=0.9, nesterov=True)


def test_build_optimizer_passes_spec_options() -> None:
    net = _net()
    spec = _optimizer_spec({"name": "adamw", "lr": 0.02, "betas": [0.8, 0.9]})
    optimizer = build_optimizer(spec.factory(weight_decay=0.3), net.named_parameters())
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.3, 0.0]
    assert all(g["lr"] == 0.02 and tuple(g["betas"]) == (0.8, 0.9) for g in optimizer.param_groups)
    spec = _optimizer_spec({"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True})
    optimizer = build_optimizer(spec.factory(), net.named_parameters())
    assert optimizer.param_groups[0]["momentum"] == 0.9 and optimizer.param_groups[0]["nesterov"]


def test_optimizer_and_schedule_options_validate_through_the_spec() -> None:
    specs = pytest.importorskip("experiments.specs")
    from pydantic import ValidationError

    for name in OPTIMIZERS.names():
        assert specs.options_model("optimizer", name).model_validate({})
    for name in SCHEDULES.names():
        assert specs.options_model("schedule", name).model_validate({})
    with pytest.raises(ValidationError, match="momentum"):
        specs.OptimizerSpec.model_validate({"name": "adam", "momentum": 0.9})


def _lrs(name: str, steps: int, total_steps: int, steps_per_epoch: int = 4, **raw) -> list[float]:
    """The lr used at each of ``steps`` optimizer steps under schedule ``name``."""
    param = nn.Parameter(torch.zeros(1))
    optimizer = sgd([param], lr=2.0, weight_decay=0.0)
    config = build_scheduler(optimizer, _schedule_spec({"name": name, **raw}), steps_per_epoch, total_steps)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if config is not None:
            assert config["interval"] == "step"
            config["scheduler"].step()
    return lrs


def test_none_is_constant() -> None:
    assert _lrs("none", steps=10, total_steps=10) == [2.0] * 10


def test_cosine_reaches_its_minimum_at_the_end() -> None:
    lrs = _lrs("cosine", steps=13, total_steps=12, min_lr_ratio=0.1)
    assert lrs[0] == pytest.approx(2.0)
    assert lrs[6] == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))  # halfway: midpoint of the range
    assert lrs[12] == pytest.approx(0.2)
    assert all(a > b for a, b in itertools.pairwise(lrs))


def test_step_multiplies_by_gamma_at_the_boundary() -> None:
    lrs = _lrs("step", steps=9, total_steps=9, steps_per_epoch=4, step_epochs=1.0, gamma=0.5)
    assert lrs == pytest.approx([2.0] * 4 + [1.0] * 4 + [0.5])


def test_onecycle_peaks_at_lr() -> None:
    lrs = _lrs("onecycle", steps=20, total_steps=20, pct_start=0.25, div_factor=10.0)
    assert lrs[0] == pytest.approx(0.2)
    assert max(lrs) == pytest.approx(2.0)
    assert lrs.index(max(lrs)) == 4
    assert lrs[-1] < 0.2 / 100


@pytest.mark.parametrize("name", ["none", "cosine", "step"])
def test_warmup_starts_small_and_reaches_lr(name: str) -> None:
    lrs = _lrs(name, steps=10, total_steps=40, steps_per_epoch=4, warmup_epochs=1.0)
    assert lrs[0] < 0.01
    assert all(a < b for a, b in itertools.pairwise(lrs[:5]))
    assert lrs[4] == pytest.approx(2.0)


def test_warmup_then_cosine_covers_the_remaining_steps() -> None:
    lrs = _lrs("cosine", steps=13, total_steps=12, steps_per_epoch=4, warmup_epochs=1.0)
    assert lrs[4] == pytest.approx(2.0)
    assert lrs[8] == pytest.approx(1.0)  # halfway through the 8 cosine steps
    assert lrs[12] == pytest.approx(0.0, abs=1e-12)


def test_warmup_before_onecycle_rises_to_its_start() -> None:
    lrs = _lrs("onecycle", steps=24, total_steps=24, steps_per_epoch=4, warmup_epochs=1.0, div_factor=10.0)
    assert lrs[0] < 0.01
    assert lrs[4] == pytest.approx(0.2)
    assert max(lrs) == pytest.approx(2.0, rel=0.05)
    assert not math.isnan(sum(lrs))


def test_onecycle_keeps_the_optimizer_momentum() -> None:
    param = nn.Parameter(torch.zeros(1))
    optimizer = sgd([param], lr=1.0, weight_decay=0.0, momentum=0.5)
    build_scheduler(optimizer, _schedule_spec({"name": "onecycle"}), steps_per_epoch=4, total_steps=8)
    assert optimizer.param_groups[0]["momentum"] == 0.5


def test_l1_penalty_skips_norm_scales_even_when_they_are_matrices() -> None:
    net = nn.Sequential(nn.Linear(6, 6), nn.Unflatten(1, (2, 3)), nn.LayerNorm((2, 3)))
    for p in net.parameters():
        nn.init.constant_(p, 1.0)
    assert net[2].weight.ndim == 2
    assert l1_penalty(net).item() == pytest.approx(36.0)


def test_fused_update_where_the_optimizer_has_one() -> None:
    from experiments.specs import OptimizerSpec

    net = torch.nn.Linear(4, 2)
    for name, fused in (("adam", True), ("adamw", True), ("sgd", True), ("rmsprop", None)):
        spec = OptimizerSpec.model_validate({"name": name, "lr": 0.1})
        optimizer = build_optimizer(spec.factory(), net.named_parameters(), fused=True)
        assert optimizer.defaults.get("fused") == fused, name
    plain = build_optimizer(OptimizerSpec.model_validate({"name": "adam"}).factory(), net.named_parameters())
    assert not plain.defaults["fused"]
    # the fused kernel computes the same update as the loop
    torch.manual_seed(0)
    a, b = torch.nn.Linear(8, 3), torch.nn.Linear(8, 3)
    b.load_state_dict(a.state_dict())
    spec = OptimizerSpec.model_validate({"name": "adamw", "lr": 0.01})
    factory = spec.factory(0.1)
    opts = [build_optimizer(factory, m.named_parameters(), fused=f) for m, f in ((a, False), (b, True))]
    x = torch.randn(16, 8)
    for _ in range(3):
        for model, opt in zip((a, b), opts, strict=True):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
