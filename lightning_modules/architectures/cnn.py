"""Small convolutional networks, sized from ``input_shape`` so one builder runs on 8x8 digits,
28x28 MNIST and 32x32 colour images alike."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from lightning_modules.architectures.registry import MODELS


def _halving_pool(height: int, width: int) -> tuple[nn.Module, int, int]:
    """A 2x2 max-pool that rounds odd sides up and leaves a side of 1 alone, so that any input size
    survives any number of pools; returns the module and the new height and width."""
    kh, kw = (2 if height > 1 else 1), (2 if width > 1 else 1)
    if kh == kw == 1:
        return nn.Identity(), height, width
    pool = nn.MaxPool2d(kernel_size=(kh, kw), stride=(kh, kw), ceil_mode=True)
    return pool, -(-height // kh), -(-width // kw)


def _image_shape(input_shape: tuple[int, ...], builder: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"{builder} needs images, input_shape=(C, H, W); got {tuple(input_shape)}")
    channels, height, width = (int(s) for s in input_shape)
    return channels, height, width


def _classifier(features: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


@MODELS.register("cnn")
def cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    dropout: float = 0.0,
    channels: tuple[int, int] = (32, 64),
    hidden: int = 128,
    batch_norm: bool = False,
) -> nn.Module:
    """LeNet-style: two (conv5x5 -> ReLU -> maxpool 2) stages, then a hidden fully connected layer."""
    in_channels, height, width = _image_shape(input_shape, "cnn")
    layers: list[nn.Module] = []
    for out_channels in channels:
        # a bias before BatchNorm is cancelled by its mean subtraction
        layers.append(nn.Conv2d(in_channels, out_channels, 5, padding=2, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        pool, height, width = _halving_pool(height, width)
        layers += [nn.ReLU(), pool]
        in_channels = out_channels
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(*layers),
            classifier=_classifier(in_channels * height * width, hidden, num_classes, dropout),
        )
    )


@MODELS.register("cnn_deep")
def cnn_deep(
    input_shape: tuple[int, ...],
    num_classes: int,
    dropout: float = 0.0,
    channels: tuple[int, int, int] = (32, 64, 128),
    hidden: int = 256,
) -> nn.Module:
    """Three (conv3x3 -> BatchNorm -> ReLU -> maxpool 2) blocks, then a hidden fully connected layer."""
    in_channels, height, width = _image_shape(input_shape, "cnn_deep")
    blocks: list[nn.Module] = []
    for out_channels in channels:
        pool, height, width = _halving_pool(height, width)
        blocks.append(
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
                pool,
            )
        )
        in_channels = out_channels
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(*blocks),
            classifier=_classifier(in_channels * height * width, hidden, num_classes, dropout),
        )
    )
