"""Every registered architecture on tiny inputs of every supported shape (timm/DeepOBS style)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from pydantic import ValidationError

from core.registry import UnknownNameError
from lightning_modules.architectures import (
    MODELS,
    available_models,
    count_parameters,
    create_model,
    reads_token_batches,
)

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
NUM_CLASSES = 7
# Text models (tests/test_text_architectures.py) read token batches, not image tensors.
IMAGE_MODELS = [name for name in MODELS.names() if not reads_token_batches(name)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_forward_backward(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = create_model(name, input_shape=shape, num_classes=NUM_CLASSES, dropout=0.25)
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.25 for m in model.modules())
    x = torch.randn(4, *shape)
    out = model(x)
    assert out.shape == (4, NUM_CLASSES)
    assert torch.isfinite(out).all()
    out.logsumexp(dim=1).mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_degenerate_side_does_not_pool_to_zero(name: str) -> None:
    model = create_model(name, input_shape=(2, 1, 3), num_classes=3)
    assert model(torch.randn(2, 2, 1, 3)).shape == (2, 3)


def test_registry_holds_the_documented_models() -> None:
    assert {"mlp", "cnn", "cnn_deep"} <= set(available_models())
    text = {"cbow", "rnn", "gru", "lstm", "textcnn", "transformer"}
    assert text <= set(available_models())
    assert {n for n in available_models() if reads_token_batches(n)} >= text
    assert not any(reads_token_batches(n) for n in IMAGE_MODELS)
    assert available_models("cnn*") == ["cnn", "cnn_deep"]


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(UnknownNameError, match=r"known: .*mlp"):
        create_model("mpl", input_shape=(1, 8, 8), num_classes=10)


def test_unknown_option_is_rejected_by_create_model() -> None:
    with pytest.raises(TypeError, match="widths"):
        create_model("mlp", input_shape=(1, 8, 8), num_classes=10, widths=(3,))


@pytest.mark.parametrize(
    ("shape", "hidden"), [((1, 8, 8), (256, 128)), ((3, 32, 32), (5,)), ((1, 28, 28), ())]
)
def test_mlp_parameter_count(shape: tuple[int, ...], hidden: tuple[int, ...]) -> None:
    widths = [math.prod(shape), *hidden, NUM_CLASSES]
    expected = sum(i * o + o for i, o in itertools.pairwise(widths))
    model = create_model("mlp", input_shape=shape, num_classes=NUM_CLASSES, hidden=hidden)
    assert count_parameters(model) == expected


def test_count_parameters_skips_frozen() -> None:
    model = create_model("mlp", input_shape=(4,), num_classes=2, hidden=(3,))
    assert count_parameters(model) == 4 * 3 + 3 + 3 * 2 + 2
    model[1].weight.requires_grad_(False)
    assert count_parameters(model) == 3 + 3 * 2 + 2


def test_cnn_batch_norm_option_adds_norm_layers() -> None:
    plain = create_model("cnn", input_shape=(1, 8, 8), num_classes=10)
    normed = create_model("cnn", input_shape=(1, 8, 8), num_classes=10, batch_norm=True)
    count = lambda m: sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())  # noqa: E731
    assert (count(plain), count(normed)) == (0, 2)


def test_cnn_rejects_flat_input_shape() -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        create_model("cnn", input_shape=(64,), num_classes=10)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_options_validate_through_the_spec(name: str) -> None:
    specs = pytest.importorskip("experiments.specs")
    options = specs.options_model("model", name)
    defaults = options.model_validate({}).model_dump()
    assert not {"input_shape", "num_classes", "dropout"} & set(defaults)
    model = create_model(name, input_shape=(1, 8, 8), num_classes=3, **defaults)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(ValidationError):
        options.model_validate({"no_such_option": 1})


def test_spec_types_mlp_options() -> None:
    specs = pytest.importorskip("experiments.specs")
    spec = specs.ModelSpec.model_validate({"name": "mlp", "hidden": [16, 8], "activation": "gelu"})
    assert spec.options == {"hidden": [16, 8], "activation": "gelu"}
    with pytest.raises(ValidationError, match="activation"):
        specs.ModelSpec.model_validate({"name": "mlp", "activation": "swish"})
    model = create_model("mlp", input_shape=(1, 8, 8), num_classes=3, **spec.options)
    assert [m.out_features for m in model if isinstance(m, torch.nn.Linear)] == [16, 8, 3]
    assert any(isinstance(m, torch.nn.GELU) for m in model)
