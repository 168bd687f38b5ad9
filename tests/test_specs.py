from __future__ import annotations

import pytest

from experiments.specs import (
    RunSpec,
    SpecError,
    load_run_spec,
    parse_override,
    validate_run_spec,
)
from experiments.specs.values import set_dotted
from tests.conftest import tiny_raw_spec


def test_defaults_are_filled_so_spelled_out_defaults_hash_alike() -> None:
    short = validate_run_spec({"model": {"name": "mlp"}, "optimizer": {"name": "sgd", "lr": 0.1}})
    spelled = validate_run_spec(
        {
            "model": {"name": "mlp", "hidden": [256, 128], "activation": "relu"},
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0, "nesterov": False},
            "regularization": {"l2": 0.0},
        }
    )
    assert short.model.options == {"hidden": [256, 128], "activation": "relu"}
    assert short.spec_hash == spelled.spec_hash
    assert short == spelled


def test_hash_changes_with_what_is_trained_but_not_with_tracking_options() -> None:
    base = validate_run_spec(tiny_raw_spec())
    assert validate_run_spec(tiny_raw_spec(seed=1)).spec_hash != base.spec_hash
    assert validate_run_spec(tiny_raw_spec(optimizer={"lr": 0.02})).spec_hash != base.spec_hash
    assert validate_run_spec(tiny_raw_spec(tracking={"heatmaps": 0})).spec_hash == base.spec_hash
    assert len(base.spec_hash) == 16


def test_registry_section_shorthand_string() -> None:
    assert validate_run_spec({"model": "cnn"}).model.name == "cnn"


def test_misspelled_top_level_key_names_key_and_suggests() -> None:
    with pytest.raises(SpecError) as err:
        validate_run_spec({"optimiser": {"name": "adam"}}, where="my.yaml")
    message = str(err.value)
    assert message.startswith("my.yaml: unknown key 'optimiser'")
    assert "did you mean 'optimizer'?" in message
    assert "regularization" in message  # the valid keys are listed


def test_misspelled_nested_key_names_its_path() -> None:
    with pytest.raises(SpecError, match=r"unknown key 'regularization\.dropuot'.*did you mean 'dropout'"):
        validate_run_spec({"regularization": {"dropuot": 0.5}})


def test_unknown_model_lists_known_models_and_closest() -> None:
    with pytest.raises(SpecError) as err:
        validate_run_spec({"model": {"name": "cnnn"}})
    assert "unknown model 'cnnn'" in str(err.value)
    assert "mlp" in str(err.value) and "Did you mean 'cnn'?" in str(err.value)


def test_unknown_model_option_is_rejected_with_valid_options() -> None:
    with pytest.raises(SpecError) as err:
        validate_run_spec({"model": {"name": "mlp", "hiden": [8]}})
    assert "model 'mlp' takes no option 'hiden'" in str(err.value)
    assert "did you mean 'hidden'" in str(err.value)


def test_option_types_come_from_the_builder_signature() -> None:
    with pytest.raises(SpecError, match=r"model\.hidden"):
        validate_run_spec({"model": {"name": "mlp", "hidden": "wide"}})
    with pytest.raises(SpecError, match=r"optimizer\.lr"):
        validate_run_spec({"optimizer": {"name": "adam", "lr": -1}})


def test_runner_injected_parameters_are_not_user_options() -> None:
    with pytest.raises(SpecError, match="takes no option 'num_classes'"):
        validate_run_spec({"model": {"name": "mlp", "num_classes": 3}})


def test_overrides_keep_yaml_types(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: cnn\noptimizer: {name: sgd, lr: 0.1}\n")
    spec = load_run_spec(path, ["optimizer.lr=0.5", "model.hidden=64", "regularization.augment=true"])
    assert spec.optimizer.lr == 0.5
    assert spec.model.options["hidden"] == 64
    assert spec.regularization.augment is True
    assert parse_override("model.hidden=[8, 4]") == ("model.hidden", [8, 4])
    with pytest.raises(SpecError, match="key=value"):
        parse_override("optimizer.lr")


def test_set_dotted_creates_sections() -> None:
    tree: dict = {}
    set_dotted(tree, "a.b.c", 1)
    assert tree == {"a": {"b": {"c": 1}}}


def test_missing_and_malformed_files(tmp_path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_run_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_run_spec(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_run_spec(listy)


def test_flat_params_cover_every_field() -> None:
    params = RunSpec().flat_params()
    assert params["optimizer.name"] == "adam"
    assert params["regularization.dropout"] == 0.0
    assert params["trainer.max_epochs"] == 5
    assert "model.hidden" in params and "data.batch_size" in params
