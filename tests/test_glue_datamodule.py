"""The GLUE and text_classification datamodules through the real runner: tiny files in the official
formats under tmp_path, real SQLite MLflow stores, GLUE's metrics recomputed by hand from the trained
network's predictions, submissions, the cache, and the real GLUE files in ../shared/data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from cli import main
from core import tags as tag
from core.context import Context
from datamodules import DataNotFoundError, create_datamodule
from datamodules.text_classification import take, word_dropout
from datamodules.text_tokenizers import UNK_ID
from experiments.run.prepare import prepare
from experiments.run.runner import execute
from experiments.specs import SpecError, validate_run_spec
from lightning_modules.metrics import predictions as predictions_of

BOM = "\ufeff"
WORDS = [
    "good",
    "great",
    "fine",
    "bad",
    "awful",
    "poor",
    "the",
    "a",
    "film",
    "plot",
    "actor",
    "scene",
    "is",
    "was",
    "very",
]


def _sentence(rng: np.random.Generator, positive: bool) -> str:
    mood = ["good", "great", "fine"] if positive else ["bad", "awful", "poor"]
    filler = [str(w) for w in rng.choice(WORDS[6:], size=int(rng.integers(2, 6)))]
    return " ".join([*filler[:2], str(rng.choice(mood)), *filler[2:]])


def write_glue(root: Path, n_train: int = 80, n_dev: int = 24) -> Path:
    """SST-2, CoLA (headerless), MRPC (byte-order mark), STS-B (float scores) and MNLI (string labels,
    matched and mismatched dev) in the official glue_data layout, with learnable labels."""
    rng = np.random.default_rng(0)
    glue = root / "glue"

    def write(folder: str, name: str, lines: list[str], prefix: str = "") -> None:
        path = glue / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(prefix + "\n".join(lines) + "\n", encoding="utf-8")

    def rows(n: int) -> list[tuple[str, int]]:
        labels = [i % 2 for i in range(n)]
        return [(_sentence(rng, bool(y)), y) for y in labels]

    for split, n in (("train", n_train), ("dev", n_dev)):
        write("SST-2", f"{split}.tsv", ["sentence\tlabel"] + [f"{s}\t{y}" for s, y in rows(n)])
        write("CoLA", f"{split}.tsv", [f"gj04\t{y}\t{'' if y else '*'}\t{s}" for s, y in rows(n)])
        mrpc = [
            f"{y}\t{i}\t{i + 1}\t{s}\t{s if y else _sentence(rng, False)}" for i, (s, y) in enumerate(rows(n))
        ]
        write("MRPC", f"{split}.tsv", ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", *mrpc], BOM)
        stsb = [
            f"{i}\tmain-captions\t{s}\t{s if y else 'x y z'}\t{4.5 * y + 0.25:.3f}"
            for i, (s, y) in enumerate(rows(n))
        ]
        write("STS-B", f"{split}.tsv", ["index\tgenre\tsentence1\tsentence2\tscore", *stsb])
    write("SST-2", "test.tsv", ["index\tsentence"] + [f"{i}\t{s}" for i, (s, _) in enumerate(rows(10))])
    names = ("entailment", "neutral", "contradiction")
    for name, n in (("train.tsv", n_train), ("dev_matched.tsv", n_dev), ("dev_mismatched.tsv", n_dev // 2)):
        mnli = [f"{i}\t{s}\t{s}\t{names[i % 3]}" for i, (s, _) in enumerate(rows(n))]
        write("MNLI", name, ["index\tsentence1\tsentence2\tgold_label", *mnli])
    return root


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_glue(tmp_path_factory.mktemp("data"))


def glue_spec(task: str, model: str = "cbow", epochs: int = 2, **data) -> dict:
    return {
        "seed": 0,
        "data": {"name": "glue", "task": task, "batch_size": 16, "holdout_fraction": 0.2, **data},
        "model": {"name": model, "embed_dim": 16} if model == "cbow" else {"name": model},
        "optimizer": {"name": "adam", "lr": 0.01},
        "trainer": {"max_epochs": epochs, "accelerator": "cpu"},
        "tracking": {"heatmaps": 2, "log_checkpoint": True},
    }


def _test_predictions(spec, data_dir: Path, run_id: str, uri: str, split: str = "test"):
    """Predictions of the run's logged weights on ``split``, and the labels."""
    prepared = prepare(spec, data_dir)
    weights = MlflowClient(uri).download_artifacts(run_id, "model/weights.pt", str(data_dir.parent / run_id))
    prepared.network.load_state_dict(torch.load(weights, weights_only=True))
    prepared.network.eval()
    outputs, labels = [], []
    with torch.no_grad():
        for inputs, y in prepared.datamodule.prediction_loader(split):
            outputs.append(predictions_of(prepared.network(inputs)))
            labels.append(y)
    return torch.cat(outputs).numpy(), torch.cat(labels).numpy()


def _mcc(p: np.ndarray, y: np.ndarray) -> float:
    tp, tn = float(((p == 1) & (y == 1)).sum()), float(((p == 0) & (y == 0)).sum())
    fp, fn = float(((p == 1) & (y == 0)).sum()), float(((p == 0) & (y == 1)).sum())
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


def _f1(p: np.ndarray, y: np.ndarray) -> float:
    tp = float(((p == 1) & (y == 1)).sum())
    return 2 * tp / (float((p == 1).sum()) + float((y == 1).sum()))


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for value in np.unique(x):  # ties share their mean rank
        ranks[x == value] = ranks[x == value].mean()
    return ranks


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("cola", {"test/mcc": lambda p, y: _mcc(p, y)}),
        ("mrpc", {"test/f1": lambda p, y: _f1(p, y), "test/acc": lambda p, y: float((p == y).mean())}),
        (
            "stsb",
            {
                "test/pearson": lambda p, y: float(np.corrcoef(p, y)[0, 1]),
                "test/spearman": lambda p, y: float(np.corrcoef(_ranks(p), _ranks(y))[0, 1]),
            },
        ),
    ],
)
def test_tracked_metrics_are_glue_metrics_recomputed_by_hand(
    task: str, expected: dict, glue_dir: Path, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = validate_run_spec(glue_spec(task))
    result = execute(spec, Context(uri, glue_dir), experiment=task)
    run = MlflowClient(uri).get_run(result.run_id)
    tracked = {k: v for k, v in run.data.metrics.items() if k.startswith("test/") and k != "test/loss"}
    assert set(tracked) == set(expected)
    assert run.data.tags[tag.TASK_METRIC] == next(iter(expected)).split("/")[1]
    predicted, labels = _test_predictions(spec, glue_dir, result.run_id, uri)
    assert len(labels) == 24  # the dev split is what is reported
    for name, compute in expected.items():
        assert tracked[name] == pytest.approx(compute(predicted, labels), abs=1e-5), name
    params = run.data.params
    assert (params["data.size.train"], params["data.size.val"], params["data.size.test"]) == (
        "64",
        "16",
        "24",
    )


def test_mnli_tests_matched_and_mismatched_dev(glue_dir: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = validate_run_spec(glue_spec("mnli", epochs=1))
    result = execute(spec, Context(uri, glue_dir), experiment="mnli")
    metrics = MlflowClient(uri).get_run(result.run_id).data.metrics
    assert {"test/acc", "test_mismatched/acc"} <= set(metrics)
    predicted, labels = _test_predictions(spec, glue_dir, result.run_id, uri, "test_mismatched")
    assert len(labels) == 12
    assert metrics["test_mismatched/acc"] == pytest.approx(float((predicted == labels).mean()), abs=1e-6)


def test_transformer_on_pairs_logs_attention_heatmaps_and_predicts(glue_dir: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw = glue_spec("sst2", "transformer", tokenizer={"kind": "bpe", "vocab_size": 60, "max_len": 16})
    raw["model"] = {"name": "transformer", "d_model": 16, "heads": 2, "layers": 1, "ff_dim": 32}
    result = execute(validate_run_spec(raw), Context(uri, glue_dir), experiment="sst2")
    client = MlflowClient(uri)
    assert [a.path for a in client.list_artifacts(result.run_id, "heatmaps")] == ["heatmaps/attention.png"]
    assert client.get_run(result.run_id).data.params["data.vocab_size"] == "60"

    out = tmp_path / "submissions"
    code = main(
        ["predict", result.run_id, "--tracking-uri", uri, "--data-dir", str(glue_dir), "--out", str(out)]
    )
    assert code == 0
    lines = (out / "SST-2.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction"
    assert [line.split("\t")[0] for line in lines[1:]] == [str(i) for i in range(10)]
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}
    assert [a.path for a in client.list_artifacts(result.run_id, "submission")] == ["submission/SST-2.tsv"]


def test_predict_without_weights_or_test_split_says_how_to_fix(
    glue_dir: Path, tmp_path: Path, capsys
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw = glue_spec("cola", epochs=1)
    raw["tracking"] = {"heatmaps": 0, "log_checkpoint": False}
    result = execute(validate_run_spec(raw), Context(uri, glue_dir), experiment="cola")
    assert main(["predict", result.run_id, "--tracking-uri", uri, "--data-dir", str(glue_dir)]) == 2
    assert "log_checkpoint: true" in capsys.readouterr().err
    raw["tracking"]["log_checkpoint"] = True
    result = execute(validate_run_spec(raw), Context(uri, glue_dir), experiment="cola")
    assert main(["predict", result.run_id, "--tracking-uri", uri, "--data-dir", str(glue_dir)]) == 2
    assert "no unlabelled split" in capsys.readouterr().err  # the tiny CoLA has no test.tsv


def test_second_setup_reads_the_cache_and_a_setting_change_misses_it(glue_dir: Path) -> None:
    settings = {"kind": "word", "max_size": 77}  # settings no other test uses: the first setup misses
    first = create_datamodule("glue", data_dir=str(glue_dir), task="mrpc", tokenizer=settings)
    first.setup()
    again = create_datamodule("glue", data_dir=str(glue_dir), task="mrpc", tokenizer=settings, split_seed=3)
    again.setup()
    other = create_datamodule(
        "glue", data_dir=str(glue_dir), task="mrpc", tokenizer={**settings, "max_len": 4}
    )
    other.setup()
    assert (first.corpus.cache_hit, again.corpus.cache_hit, other.corpus.cache_hit) == (False, True, False)
    assert first.corpus.path == again.corpus.path != other.corpus.path
    assert first.datasets["test"].a.flat.tolist() == again.datasets["test"].a.flat.tolist()
    assert int(other.datasets["train"].lengths.max()) <= 4 + 1 + 4  # a [SEP] b, each cut at max_len
    # the holdout is seeded by split_seed, disjoint from train, and together they are the train file
    assert first.sizes() == again.sizes() == {"train": 76, "val": 4, "test": 24}
    assert first.token_inputs() == {
        "vocab_size": first.corpus.tokenizer.vocab_size,
        "pad_id": 0,
        "pair": True,
    }
    assert first.input_shape == (2 * 128 + 1,)


def test_holdout_is_deterministic_and_disjoint(glue_dir: Path) -> None:
    make = lambda seed: create_datamodule("glue", data_dir=str(glue_dir), task="sst2", split_seed=seed)  # noqa: E731
    a, b, c = make(0), make(0), make(1)
    for dm in (a, b, c):
        dm.setup()
    train, holdout = a._holdout(80)
    assert torch.equal(train, b._holdout(80)[0]) and not torch.equal(holdout, c._holdout(80)[1])
    assert sorted(train.tolist() + holdout.tolist()) == list(range(80))
    assert a.datasets["val"].a.flat.tolist() == b.datasets["val"].a.flat.tolist()


def test_word_dropout_touches_only_real_tokens() -> None:
    torch.manual_seed(0)
    tokens = torch.tensor([[3, 10, 11, 12, 2, 13] + [0] * 4] * 500)
    out = word_dropout({"tokens": tokens, "lengths": torch.full((500,), 6)}, 0.3)["tokens"]
    assert torch.equal(out[:, [0, 4]], tokens[:, [0, 4]]) and (out[:, 6:] == 0).all()
    dropped = (out[:, [1, 2, 3, 5]] == UNK_ID).float().mean().item()
    assert 0.27 < dropped < 0.33
    assert torch.equal(tokens[0, :6], torch.tensor([3, 10, 11, 12, 2, 13]))  # the input is not modified


def test_take_gathers_rows_in_order() -> None:
    from datamodules.encoded_text import TokenSequences

    seqs = TokenSequences.from_lists([[1], [2, 3], [4, 5, 6], [7]])
    assert take(seqs, torch.tensor([2, 0, 3])).tolist() == [[4, 5, 6], [1], [7]]


def test_missing_task_files_offline_name_the_folder_and_fix(tmp_path: Path) -> None:
    dm = create_datamodule("glue", data_dir=str(tmp_path), task="rte", download=False)
    with pytest.raises(DataNotFoundError, match=r"RTE") as err:
        dm.setup()
    assert "LITBENCH_DATA_DIR" in str(err.value)


def test_unknown_task_and_mismatched_model_are_spec_errors(glue_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"task.*'sst2'"):
        validate_run_spec(glue_spec("sst-2"))
    # a model that does not fit the data is refused when the spec is validated, before any data loads
    with pytest.raises(SpecError, match=r"model 'mlp' reads tensors.*text: .*lstm"):
        validate_run_spec(glue_spec("sst2", "mlp"))
    with pytest.raises(SpecError, match=r"'lstm' is a text model.*tensor data: .*cnn"):
        validate_run_spec({"data": {"name": "digits"}, "model": {"name": "lstm"}})


def test_own_corpus_csv_and_jsonl_pairs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = [(_sentence(rng, bool(i % 2)), "pos" if i % 2 else "neg") for i in range(60)]
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(f'"{s}",{y}\n' for s, y in rows[:48]))
    (tmp_path / "test.csv").write_text("text,label\n" + "".join(f'"{s}",{y}\n' for s, y in rows[48:]))
    (tmp_path / "unlabelled.csv").write_text("text\n" + "".join(f'"{s}"\n' for s, _ in rows[:5]))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    raw = glue_spec("sst2")
    raw["data"] = {"name": "text_classification", "predict_file": "unlabelled.csv", "batch_size": 8}
    result = execute(validate_run_spec(raw), Context(uri, tmp_path), experiment="own")
    assert 0 <= result.metrics["test/acc"] <= 1
    assert (
        main(
            [
                "predict",
                result.run_id,
                "--tracking-uri",
                uri,
                "--data-dir",
                str(tmp_path),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    lines = (tmp_path / "out" / "predict.tsv").read_text().splitlines()
    assert len(lines) == 6 and {line.split("\t")[1] for line in lines[1:]} <= {"neg", "pos"}

    pairs = [{"q": s, "a": s[::-1], "same": i % 2} for i, (s, _) in enumerate(rows)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    dm = create_datamodule(
        "text_classification",
        data_dir=str(tmp_path),
        train_file="pairs.jsonl",
        test_file="pairs.jsonl",
        text_column="q",
        text_pair_column="a",
        label_column="same",
    )
    dm.setup()
    assert dm.pair and dm.num_classes == 2 and dm.sizes()["test"] == 60


@pytest.mark.realdata
def test_real_glue_tasks_load_with_the_readme_row_counts(shared_data: Path) -> None:
    counts = {
        "sst2": (67349, 872, 1821),
        "cola": (8551, 1043, 1063),
        "mrpc": (3668, 408, 1725),
        "stsb": (5749, 1500, 1379),
        "rte": (2490, 277, 3000),
        "wnli": (635, 71, 146),
    }
    for task, (train, dev, test) in counts.items():
        dm = create_datamodule("glue", data_dir=str(shared_data), task=task, download=False)
        dm.setup()
        sizes = dm.sizes()
        assert (sizes["train"] + sizes["val"], sizes["test"], sizes["predict"]) == (train, dev, test), task
        assert len(dm.ids["predict"]) == test


def test_grid_over_two_tasks_reports_each_on_its_own_metric(glue_dir: Path, tmp_path: Path) -> None:
    grid = tmp_path / "two_tasks.yaml"
    grid.write_text(
        "name: two_tasks\n"
        "base:\n"
        "  data: {name: glue, batch_size: 16, holdout_fraction: 0.2}\n"
        "  model: {name: cbow, embed_dim: 8, hidden: 0}\n"
        "  optimizer: {name: adam, lr: 0.01}\n"
        "  trainer: {max_epochs: 1, accelerator: cpu}\n"
        "  tracking: {heatmaps: 0, log_checkpoint: false}\n"
        "axes:\n"
        "  data.task: [sst2, mrpc]\n"
        "  regularization.dropout: [0.0, 0.5]\n"
        "seeds: [0, 1]\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["grid", str(grid), "--tracking-uri", uri, "--data-dir", str(glue_dir)]) == 0
    out = tmp_path / "report"
    assert main(["report", str(grid), "--tracking-uri", uri, "--out", str(out)]) == 0
    for folder, metric, other in (("glue_sst2", "test/acc", "test/f1"), ("glue_mrpc", "test/f1", None)):
        table = (out / folder / "configurations.csv").read_text().splitlines()[0].split(",")
        assert f"{metric} mean" in table and "n" in table
        assert other is None or f"{other} mean" not in table  # SST-2 tracks no F1
        configs = (out / folder / "configurations.csv").read_text().splitlines()[1:]
        assert len(configs) == 2 and all(("task" + folder[5:]) in row for row in configs)
        marginal = (out / folder / "marginal_regularization.dropout.csv").read_text().splitlines()
        assert sorted(row.split(",")[1] for row in marginal[1:]) == ["0", "0.5"]
        assert not (out / folder / "marginal_data.task.csv").exists()  # one task per folder
    summary = (out / "summary.md").read_text()
    assert "## glue/mrpc (`glue_mrpc/`)" in summary and "## glue/sst2 (`glue_sst2/`)" in summary
    assert "compared on **test/f1**" in summary and "compared on **test/acc**" in summary
