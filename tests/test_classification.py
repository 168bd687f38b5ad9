"""The classification LightningModule in tiny CPU fits, and the saliency maps."""

from __future__ import annotations

import warnings

import lightning
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader

from experiments.specs import OptimizerSpec, RegularizationSpec, ScheduleSpec
from lightning_modules.architectures import create_model
from lightning_modules.classification import ClassificationModule
from lightning_modules.errors import NonFiniteLossError
from lightning_modules.interpret import saliency_maps, save_saliency_figure
from lightning_modules.optim import OptimizerFactory, ScheduleFactory
from lightning_modules.regularization import LossOptions

SHAPE = (1, 4, 4)
CLASSES = 3


def _dataset(n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A learnable problem: the class is the quadrant-sum with the largest value among three."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *SHAPE, generator=g)
    y = torch.stack([x[:, 0, :2, :2].sum((1, 2)), x[:, 0, 2:, :2].sum((1, 2)), x[:, 0, :, 2:].sum((1, 2))], 1)
    return list(zip(x, y.argmax(1), strict=True))


def _loader(data: list, batch_size: int = 16) -> DataLoader:
    return DataLoader(data, batch_size=batch_size, shuffle=False)


def _module(
    optimizer: dict | None = None, schedule: dict | None = None, **regularization: float
) -> ClassificationModule:
    torch.manual_seed(0)
    network = create_model("mlp", input_shape=SHAPE, num_classes=CLASSES, hidden=(32,))
    reg = RegularizationSpec(**regularization)
    return ClassificationModule(
        network,
        CLASSES,
        OptimizerSpec.model_validate(optimizer or {"name": "adam", "lr": 0.02}).factory(reg.l2),
        ScheduleSpec.model_validate(schedule or {"name": "none"}).factory(),
        reg.loss_options(),
        grad_clip=reg.grad_clip,
    )


def _trainer(**overrides) -> lightning.Trainer:
    options = dict(
        max_epochs=2,
        limit_train_batches=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    return lightning.Trainer(**{**options, **overrides})


class _RecordingLogger(Logger):
    """A logger that keeps what it is given, to check what the module sends and when."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int | None, dict]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.records.append((step, dict(metrics)))


def _full_batch(data: list) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([x for x, _ in data]), torch.stack([y for _, y in data])


def test_fit_lowers_the_loss_and_logs_every_metric() -> None:
    train, val = _dataset(48, seed=1), _dataset(32, seed=2)
    module = _module()
    x, y = _full_batch(train)
    with torch.no_grad():
        before = F.cross_entropy(module.network(x), y).item()
    logger = _RecordingLogger()
    trainer = _trainer(logger=logger)
    trainer.fit(module, _loader(train), _loader(val))
    with torch.no_grad():
        after = F.cross_entropy(module.network(x), y).item()
    assert trainer.global_step == 6
    assert after < 0.8 * before

    metrics = trainer.callback_metrics
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(metrics)
    assert not {"train/loss_epoch", "train/loss_step_epoch"} & set(metrics)
    # the step loss goes straight to the loggers, once per optimizer step
    step_losses = [(step, m["train/loss_step"]) for step, m in logger.records if "train/loss_step" in m]
    assert [step for step, _ in step_losses] == list(range(6))
    assert all(isinstance(v, float) and v > 0 for _, v in step_losses)
    # validation ran last, on the final weights: its metrics must equal a hand computation
    xv, yv = _full_batch(val)
    with torch.no_grad():
        logits = module.network(xv)
    assert metrics["val/loss"].item() == pytest.approx(F.cross_entropy(logits, yv).item(), rel=1e-5)
    assert metrics["val/acc"].item() == pytest.approx((logits.argmax(1) == yv).float().mean().item())

    trainer.test(module, _loader(val, batch_size=10), verbose=False)
    metrics = trainer.callback_metrics
    assert metrics["test/loss"].item() == pytest.approx(F.cross_entropy(logits, yv).item(), rel=1e-5)
    assert metrics["test/acc"].item() == pytest.approx((logits.argmax(1) == yv).float().mean().item())


def test_configure_optimizers_applies_decay_and_schedule() -> None:
    module = _module(
        optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9},
        schedule={"name": "cosine", "min_lr_ratio": 0.5, "warmup_epochs": 0.0},
        l2=0.01,
    )
    trainer = _trainer(limit_val_batches=0)
    trainer.fit(module, _loader(_dataset(48, seed=1)))
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    assert trainer.lr_scheduler_configs[0].interval == "step"
    # cosine over the 6 estimated steps ends at min_lr_ratio * lr
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


def test_warmup_in_a_fit_starts_small() -> None:
    module = _module(schedule={"name": "none", "warmup_epochs": 1.0})
    seen: list[float] = []

    class Record(lightning.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    _trainer(callbacks=[Record()], limit_val_batches=0).fit(module, _loader(_dataset(48, seed=1)))
    assert seen[0] < 1e-3 * 0.02 * 1.01
    assert seen[1] < seen[2] < seen[3] == pytest.approx(0.02)  # warm-up spans the 3 steps of epoch 1


def _global_norm(tensors) -> float:
    return torch.linalg.vector_norm(torch.stack([t.norm() for t in tensors])).item()


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_a_fit_step_moves_the_weights_by_the_clipped_gradient(clip: float) -> None:
    """Plain SGD at lr 1 moves the weights by exactly the gradient; with grad_clip by the gradient
    scaled to that global norm (the module steps its optimizer itself, so it clips itself)."""
    data = _dataset(16, seed=1)
    module = _module(optimizer={"name": "sgd", "lr": 1.0}, grad_clip=clip)
    x, y = _full_batch(data)
    F.cross_entropy(module.network(x), y).backward()
    gradient = _global_norm([p.grad for p in module.network.parameters()])
    module.zero_grad()
    before = [p.detach().clone() for p in module.network.parameters()]
    _trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0).fit(module, _loader(data))
    moved = _global_norm([p.detach() - b for p, b in zip(module.network.parameters(), before, strict=True)])
    assert moved == pytest.approx(min(gradient, clip) if clip else gradient, rel=1e-4)
    assert clip == 0 or gradient > 2 * clip  # the clip did act


def _training_loss(module: ClassificationModule, batch) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer warns and does nothing
        return module.training_loss(batch, 0)


def test_label_smoothing_matches_functional_cross_entropy() -> None:
    x, y = _full_batch(_dataset(16, seed=3))
    plain, smoothed = _module(), _module(label_smoothing=0.2)
    with torch.no_grad():
        logits = plain.network(x)
        loss_plain = _training_loss(plain, (x, y))
        loss_smoothed = _training_loss(smoothed, (x, y))
    assert loss_plain.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    expected = F.cross_entropy(logits, y, label_smoothing=0.2).item()
    assert loss_smoothed.item() == pytest.approx(expected, rel=1e-6)
    assert abs(loss_smoothed.item() - loss_plain.item()) > 1e-3


def test_l1_term_is_added_to_the_optimized_loss() -> None:
    x, y = _full_batch(_dataset(16, seed=3))
    plain, penalized = _module(), _module(l1=0.01)
    weights = [m.weight for m in penalized.network if isinstance(m, nn.Linear)]
    expected_penalty = 0.01 * sum(w.abs().sum().item() for w in weights)
    with torch.no_grad():
        difference = _training_loss(penalized, (x, y)).item() - _training_loss(plain, (x, y)).item()
    assert expected_penalty > 0.1
    assert difference == pytest.approx(expected_penalty, rel=1e-4)


def test_nan_input_raises_before_the_weights_change() -> None:
    data = _dataset(48, seed=1)
    data[0] = (torch.full(SHAPE, float("nan")), data[0][1])
    module = _module()
    before = [p.detach().clone() for p in module.network.parameters()]
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at epoch 0, step 0"):
        _trainer(limit_val_batches=0).fit(module, _loader(data))
    assert all(torch.equal(b, p) for b, p in zip(before, module.network.parameters(), strict=True))


def test_huge_learning_rate_raises() -> None:
    module = _module(optimizer={"name": "sgd", "lr": 1e6})
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        _trainer(max_epochs=20, limit_val_batches=0).fit(module, _loader(_dataset(48, seed=1)))
    assert module.trainer.global_step < 60


def test_unknown_metric_is_rejected() -> None:
    with pytest.raises(ValueError, match="acc"):
        ClassificationModule(
            nn.Linear(2, 2), 2, OptimizerFactory(), ScheduleFactory(), LossOptions(), metric="bleu"
        )


def _linear_network(weight: torch.Tensor) -> nn.Module:
    network = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], weight.shape[0]))
    with torch.no_grad():
        network[1].weight.copy_(weight)
        network[1].bias.zero_()
    return network


def test_saliency_of_a_linear_network_is_its_weight() -> None:
    torch.manual_seed(0)
    weight = torch.randn(CLASSES, 2 * 4 * 4)
    weight[:, :16] *= 0.1  # channel 1 dominates wherever it is non-zero
    weight[:, 16:24] = 0.0  # first two rows of channel 1 are ignored by every class
    network = _linear_network(weight).train()
    images = torch.randn(5, 2, 4, 4)
    target = torch.tensor([0, 1, 2, 0, 1])

    saliency = saliency_maps(network, images, target)

    assert saliency.shape == (5, 4, 4)
    assert (saliency >= 0).all()
    expected = weight[target].abs().view(5, 2, 4, 4).amax(dim=1)
    assert torch.allclose(saliency, expected)
    assert torch.equal(saliency[:, :2, :], weight[target, :8].abs().view(5, 2, 4))  # from channel 0
    assert network.training
    assert all(p.grad is None for p in network.parameters())


def test_saliency_is_zero_where_the_weight_is_zero_and_uses_the_prediction() -> None:
    weight = torch.zeros(2, 9)
    weight[0, 4] = 3.0  # only the centre pixel matters, and only to class 0
    weight[1, 0] = -1.0
    network = _linear_network(weight)
    images = torch.ones(3, 1, 3, 3)
    with torch.inference_mode():  # as inside Lightning's test loop
        saliency = saliency_maps(network, images)
    expected = torch.zeros(3, 3, 3)
    expected[:, 1, 1] = 3.0  # predicted class 0 (logit 3 > -1)
    assert torch.equal(saliency, expected)


def test_saliency_figure_is_a_png(tmp_path) -> None:
    network = create_model("cnn", input_shape=(3, 8, 8), num_classes=CLASSES)
    images = torch.randn(4, 3, 8, 8)
    saliency = saliency_maps(network, images)
    predictions = network.eval()(images).argmax(1)
    path = save_saliency_figure(images, saliency, [0, 1, 2, 1], predictions, tmp_path / "fig" / "sal.png")
    assert path == tmp_path / "fig" / "sal.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    import matplotlib.pyplot as plt

    height, width, _ = matplotlib.image.imread(path).shape
    assert width > height  # 4 columns by 2 rows
    assert plt.get_fignums() == []  # the figure was closed
