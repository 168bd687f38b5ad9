from __future__ import annotations

import pytest

from experiments.specs import SpecError
from experiments.specs.values import set_value
from experiments.sweeps.grid import GridSpec, expand, label, load_grid

REPO_GRIDS = "experiments/grids"


def test_quickstart_expands_to_twelve_named_unique_runs() -> None:
    grid = load_grid(f"{REPO_GRIDS}/quickstart.yaml")
    cells = expand(grid)
    assert len(cells) == 12
    assert len({c.spec.spec_hash for c in cells}) == 12
    names = [c.run_name for c in cells]
    assert "mlp-sgd-lr0.05-momentum0.9-s0" in names and "cnn-adam-lr0.002-s1" in names
    cnn_rmsprop = [c for c in cells if c.config == "cnn-rmsprop-lr0.001"]
    assert [c.spec.seed for c in cnn_rmsprop] == [0, 1]
    assert all(c.spec.data.name == "digits" for c in cells)


def test_partial_spec_replaces_section_when_the_name_changes() -> None:
    raw = {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}}
    set_value(raw, "optimizer", {"name": "adam", "lr": 0.001})
    assert raw["optimizer"] == {"name": "adam", "lr": 0.001}
    set_value(raw, "optimizer", {"lr": 0.01})
    assert raw["optimizer"] == {"name": "adam", "lr": 0.01}


def test_dotted_axis_and_labels() -> None:
    grid = GridSpec(
        name="g",
        base={"data": "digits"},
        axes={"regularization.dropout": [0.0, 0.5], "regularization.augment": [False, True]},
        seeds=[3],
    )
    cells = expand(grid)
    assert [c.run_name for c in cells] == [
        "do0-augoff-s3",
        "do0-augon-s3",
        "do0.5-augoff-s3",
        "do0.5-augon-s3",
    ]
    assert cells[3].spec.regularization.dropout == 0.5 and cells[3].spec.regularization.augment
    assert label("model.hidden", [64, 32]) == "hidden64x32"


def test_duplicate_cells_are_an_error() -> None:
    grid = GridSpec(name="g", axes={"optimizer.lr": [0.001, 0.001]})
    with pytest.raises(SpecError, match="same run"):
        expand(grid)


def test_invalid_cell_names_cell_and_key() -> None:
    grid = GridSpec(name="g", axes={"model.name": ["mlp", "resnet9000"]})
    with pytest.raises(SpecError, match=r"cell resnet9000 seed 0: model: unknown model 'resnet9000'"):
        expand(grid)


def test_grid_file_errors(tmp_path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("axis: {model.name: [mlp]}\n")
    with pytest.raises(SpecError, match=r"unknown key 'axis'.*did you mean 'axes'"):
        load_grid(path)
    path.write_text("axes: {model.name: []}\n")
    with pytest.raises(SpecError, match="has no values"):
        load_grid(path)
    path.write_text("seeds: [1, 1]\n")
    with pytest.raises(SpecError, match="seeds repeat"):
        load_grid(path)
    path.write_text("base: {model: mlp}\n")
    assert load_grid(path).name == "g"  # the file name when the grid names none


def write_grid(tmp_path, text: str, name: str = "g.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_zip_pairs_values_and_counts_as_one_axis() -> None:
    grid = GridSpec(
        name="g",
        axes={"model.name": ["mlp", "cnn"]},
        zip=[{"optimizer.name": ["sgd", "adam", "rmsprop"], "optimizer.lr": [0.1, 0.001, 0.01]}],
        seeds=[0, 1],
    )
    cells = expand(grid)
    assert len(cells) == 2 * 3 * 2  # not 2 * 3 * 3 * 2: the group is one axis
    assert {(c.spec.optimizer.name, c.spec.optimizer.lr) for c in cells} == {
        ("sgd", 0.1),
        ("adam", 0.001),
        ("rmsprop", 0.01),
    }
    assert [c.run_name for c in cells[:4]] == [
        "mlp-sgd-lr0.1-s0",
        "mlp-sgd-lr0.1-s1",
        "mlp-adam-lr0.001-s0",
        "mlp-adam-lr0.001-s1",
    ]
    assert [c.run_name for c in expand(grid)] == [c.run_name for c in cells]  # deterministic


def test_zip_lists_of_unequal_length_are_an_error(tmp_path) -> None:
    path = write_grid(
        tmp_path,
        "name: g\nzip:\n"
        "  - {optimizer.name: [sgd]}\n"
        "  - {optimizer.lr: [0.1, 0.2], regularization.l2: [0.0]}\n",
    )
    with pytest.raises(SpecError) as err:
        load_grid(path)
    message = str(err.value)
    assert message.startswith(f"{path}:4: zip[1]: ")
    assert (
        "(optimizer.lr, regularization.l2)" in message and "optimizer.lr: 2, regularization.l2: 1" in message
    )


def test_exclude_removes_exactly_the_matching_cells() -> None:
    grid = GridSpec(
        name="g",
        axes={"model.name": ["mlp", "cnn"], "optimizer.name": ["sgd", "adam", "rmsprop"]},
        exclude=[
            {"model.name": "cnn", "optimizer.name": ["sgd", "rmsprop"]},  # a list: any of these
            {"optimizer.name": "adam", "seed": 1},
        ],
        seeds=[0, 1],
    )
    names = [c.run_name for c in expand(grid)]
    assert names == [
        "mlp-sgd-s0",
        "mlp-sgd-s1",
        "mlp-adam-s0",
        "mlp-rmsprop-s0",
        "mlp-rmsprop-s1",
        "cnn-adam-s0",
    ]


def test_exclude_matches_lr_written_as_yaml_string(tmp_path) -> None:
    path = write_grid(tmp_path, "axes: {optimizer.lr: [0.1, 0.001]}\nexclude: [{optimizer.lr: 1e-3}]\n")
    assert [c.spec.optimizer.lr for c in expand(load_grid(path))] == [0.1]  # YAML reads 1e-3 as a string


def test_include_adds_a_cell_for_every_seed() -> None:
    grid = GridSpec(
        name="g",
        base={"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}},
        axes={"model.name": ["mlp", "cnn"]},
        include=[
            {"model.name": "cnn", "optimizer": {"name": "adamw", "lr": 0.003}},
            {"regularization.dropout": 0.5, "seed": 7},  # its own seed: that seed only
        ],
        seeds=[0, 1],
    )
    cells = expand(grid)
    assert [c.run_name for c in cells[4:]] == ["cnn-adamw-lr0.003-s0", "cnn-adamw-lr0.003-s1", "do0.5-s7"]
    adamw = cells[4].spec
    assert adamw.model.name == "cnn" and adamw.optimizer.name == "adamw" and adamw.optimizer.lr == 0.003
    assert "momentum" not in adamw.optimizer.options  # a new name replaces the section, as in axes
    assert cells[6].spec.regularization.dropout == 0.5 and cells[6].spec.optimizer.name == "sgd"


def test_unknown_filter_key_names_it_and_suggests(tmp_path) -> None:
    path = write_grid(tmp_path, "axes: {optimizer.name: [sgd, adam]}\nexclude:\n  - {optimizer.nme: adam}\n")
    with pytest.raises(SpecError) as err:
        expand(load_grid(path))
    message = str(err.value)
    assert message.startswith(f"{path}:3: exclude[0].optimizer.nme: 'optimizer.nme' is not a field")
    assert "close valid keys: optimizer.name" in message
    grid = GridSpec(name="g", include=[{"optimiser.name": "sgd"}])
    with pytest.raises(
        SpecError, match=r"include\[0\]\.optimiser\.name: .*close valid keys: optimizer\.name"
    ):
        expand(grid)


def test_top_level_trainer_applies_to_every_cell_and_set_wins(tmp_path) -> None:
    path = write_grid(
        tmp_path,
        "base: {trainer: {max_epochs: 20, accelerator: cpu}}\ntrainer: {max_epochs: 3}\n"
        "axes: {model.name: [mlp, cnn]}\nseeds: [0, 1]\n",
    )
    cells = expand(load_grid(path))
    assert len(cells) == 4
    assert all(c.spec.trainer.max_epochs == 3 and c.spec.trainer.accelerator == "cpu" for c in cells)
    cells = expand(load_grid(path, ["trainer.max_epochs=1"]))
    assert all(c.spec.trainer.max_epochs == 1 for c in cells)
    path = write_grid(tmp_path, "trainer: {max_epoch: 3}\n")
    with pytest.raises(
        SpecError, match=r"g\.yaml:1: unknown key 'trainer\.max_epoch'.*did you mean 'max_epochs'"
    ):
        load_grid(path)


def test_bad_value_deep_in_axes_reports_its_line_and_path(tmp_path) -> None:
    path = write_grid(
        tmp_path,
        "name: g\n"
        "base:\n"
        "  data: {name: digits}\n"
        "axes:\n"
        "  model.name: [mlp]\n"
        "  optimizer:\n"
        "    - {name: sgd, lr: 0.1}\n"
        "    - name: adam\n"
        "      lr: -1\n",
    )
    with pytest.raises(SpecError) as err:
        expand(load_grid(path))
    message = str(err.value)
    assert message.startswith(f"{path}:9: axes.optimizer[1].lr: cell mlp-adam-lr-1 seed 0: ")
    assert "optimizer.lr: Input should be greater than 0" in message


def test_bad_option_in_base_and_bad_override_point_at_their_source(tmp_path) -> None:
    path = write_grid(
        tmp_path, "base:\n  data: digits\n  optimizer: {momentm: 0.9, name: sgd}\naxes: {model.name: [mlp]}\n"
    )
    with pytest.raises(
        SpecError, match=r"g\.yaml:3: base\.optimizer\.momentm: cell mlp seed 0: .*'momentum'"
    ):
        expand(load_grid(path))
    path = write_grid(tmp_path, "axes: {model.name: [mlp]}\n")
    with pytest.raises(SpecError, match=r"g\.yaml: override 'regularization\.dropout=2': cell mlp seed 0"):
        expand(load_grid(path, ["regularization.dropout=2"]))


def test_unknown_top_level_key_reports_its_line(tmp_path) -> None:
    path = write_grid(tmp_path, "name: g\n\nseeds: [0]\naxess:\n  model.name: [mlp]\n")
    with pytest.raises(SpecError) as err:
        load_grid(path)
    assert str(err.value).startswith(f"{path}:4: unknown key 'axess'")
    assert "did you mean 'axes'?" in str(err.value)


def test_a_key_varies_in_one_place_only() -> None:
    with pytest.raises(ValueError, match=r"'optimizer\.lr' varies in both axes and zip\[0\]"):
        GridSpec(name="g", axes={"optimizer.lr": [0.1]}, zip=[{"optimizer.lr": [0.2]}])
