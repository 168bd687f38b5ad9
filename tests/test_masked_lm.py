"""Masked-LM pretraining: BERT masking statistics, the untrained loss, the encoder keys a classifier
loads, the GLUE vocabulary shared with fine-tuning, the other text sources, and a run through the real
runner on tiny GLUE files under tmp_path with a SQLite MLflow store."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from mlflow import MlflowClient

from core import tags as tag
from core.context import Context
from datamodules import create_datamodule
from experiments.run.prepare import prepare
from experiments.run.runner import execute
from experiments.specs import SpecError, validate_run_spec
from lightning_modules.architectures import create_model
from lightning_modules.architectures.transformer import MLM_MODELS, TransformerMLM, mlm_network
from lightning_modules.masked_lm import MaskedLMModule, seeded_generator
from lightning_modules.masking import IGNORE_INDEX, NUM_SPECIAL, UNK_ID, mask_tokens
from lightning_modules.optim import OptimizerFactory, ScheduleFactory
from tasks import TASKS
from tests.test_glue_datamodule import write_glue

OPTIONS = {"d_model": 16, "heads": 2, "layers": 2, "ff_dim": 32}


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_glue(tmp_path_factory.mktemp("data"))


def random_batch(rows: int, width: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """[CLS] w w ... [SEP] w ... then padding: real words, specials and pads in every row."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(NUM_SPECIAL, vocab, (rows, width), generator=g)
    lengths = torch.randint(3, width + 1, (rows,), generator=g)
    tokens[:, 0] = 3  # [CLS]
    tokens[:, width // 2] = 2  # [SEP]
    tokens[:, 5] = UNK_ID  # an unknown word is a special too: never a target
    return tokens.masked_fill(torch.arange(width) >= lengths[:, None], 0)


# ---- masking ------------------------------------------------------------------------------------


def test_masking_statistics_follow_bert_within_binomial_error() -> None:
    vocab = 1000
    tokens = random_batch(400, 64, vocab)
    out = mask_tokens(tokens, vocab, torch.Generator().manual_seed(0))
    real = tokens >= NUM_SPECIAL
    chosen = out.chosen
    n_real, n_chosen = int(real.sum()), int(chosen.sum())

    def within(count: int, n: int, p: float) -> bool:  # 4 binomial sd: a false alarm ~1 in 16000
        return abs(count - n * p) < 4 * math.sqrt(n * p * (1 - p))

    assert within(n_chosen, n_real, 0.15), n_chosen / n_real
    assert not (chosen & ~real).any()  # never padding, [CLS], [SEP] or [UNK]
    changed = chosen & ~out.masked & (out.inputs != tokens)
    kept = chosen & ~out.masked & (out.inputs == tokens)
    same_word = 1 / (vocab - NUM_SPECIAL)  # a random replacement may draw the original word
    assert within(int(out.masked.sum()), n_chosen, 0.8)
    assert within(int(changed.sum()), n_chosen, 0.1 * (1 - same_word))
    assert within(int(kept.sum()), n_chosen, 0.1 + 0.1 * same_word)
    assert not (out.masked & ~chosen).any() and (out.inputs[out.masked] == UNK_ID).all()
    replaced = out.inputs[changed]
    assert (replaced >= NUM_SPECIAL).all() and (replaced < vocab).all()  # words, never specials
    assert torch.equal(out.inputs[~chosen], tokens[~chosen])
    assert torch.equal(out.targets[chosen], tokens[chosen]) and (out.targets[~chosen] == IGNORE_INDEX).all()


def test_masking_is_reproducible_and_never_empty() -> None:
    tokens = random_batch(8, 12, 50)
    again = [mask_tokens(tokens, 50, torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert torch.equal(again[0].targets, again[1].targets) and torch.equal(again[0].inputs, again[1].inputs)
    assert not torch.equal(again[0].targets, again[2].targets)
    one = torch.tensor([[3, 17, 18, 2, 0, 0]])
    for seed in range(20):  # a rate this small chooses nothing by chance: the fallback chooses one word
        chosen = mask_tokens(one, 50, torch.Generator().manual_seed(seed), rate=1e-9).chosen
        assert int(chosen.sum()) == 1 and bool(chosen[0, 1] | chosen[0, 2])
    specials = torch.tensor([[3, 1, 2, 0]])
    assert not mask_tokens(specials, 50, torch.Generator().manual_seed(0)).chosen.any()
    with pytest.raises(ValueError, match="no words"):
        mask_tokens(one, NUM_SPECIAL, torch.Generator())


# ---- the network --------------------------------------------------------------------------------


def mlm(vocab: int = 60, pair: bool = False, seed: int = 0, **options) -> TransformerMLM:
    torch.manual_seed(seed)
    net = mlm_network("transformer", {**OPTIONS, **options}, vocab, 0, pair, 32, 0.0)
    assert isinstance(net, TransformerMLM)
    return net


def classifier(vocab: int = 60, pair: bool = False, seed: int = 0, **options):
    torch.manual_seed(seed)
    token_inputs = {"vocab_size": vocab, "pad_id": 0, "pair": pair}
    return create_model(
        "transformer", input_shape=(32,), num_classes=3, token_inputs=token_inputs, **{**OPTIONS, **options}
    )


def test_untrained_loss_is_near_log_vocab() -> None:
    vocab = 500
    net = mlm(vocab, d_model=32, ff_dim=64).eval()
    tokens = random_batch(64, 24, vocab, seed=1)
    out = mask_tokens(tokens, vocab, torch.Generator().manual_seed(0))
    batch = {"tokens": out.inputs, "masked": out.masked, "segments": torch.zeros_like(tokens)}
    with torch.no_grad():
        logits = net(batch, out.chosen)
    assert logits.shape == (int(out.chosen.sum()), vocab)
    loss = F.cross_entropy(logits, out.targets[out.chosen]).item()
    assert loss == pytest.approx(math.log(vocab), rel=0.05)


@pytest.mark.parametrize(("positional", "pair"), [("sinusoidal", False), ("learned", True)])
def test_mlm_encoder_has_the_classifiers_keys_and_loads_into_it(positional: str, pair: bool) -> None:
    pretrained, fine = (
        mlm(pair=pair, positional=positional),
        classifier(pair=pair, seed=1, positional=positional),
    )
    ours, theirs = pretrained.state_dict(), fine.state_dict()
    shared = set(ours) & set(theirs)
    assert {k for k in theirs if k not in shared} == {k for k in theirs if k.startswith("head.")}
    mlm_only = set(ours) - shared
    assert "mask_embedding" in mlm_only and all(
        k == "mask_embedding" or k.startswith("mlm_head.") for k in mlm_only
    )
    assert all(ours[k].shape == theirs[k].shape for k in shared)
    encoder = {k: v for k, v in ours.items() if k in shared}
    # the decoder is the token embedding itself (tied): no [vocab, d] matrix of its own
    assert all(p.shape != pretrained.token.weight.shape for p in pretrained.mlm_head.parameters())
    loaded = fine.load_state_dict(encoder, strict=False)
    assert not loaded.unexpected_keys and all(k.startswith("head.") for k in loaded.missing_keys)
    tokens = random_batch(4, 10, 60)
    batch = {"tokens": tokens, "segments": (torch.arange(10) > 5).long().expand(4, 10)}
    with torch.no_grad():
        assert torch.equal(fine.eval().encode(batch)[0], pretrained.eval().encode(batch)[0])


def test_classifier_keys_are_the_ones_checkpoints_hold() -> None:
    keys = list(classifier(pair=True, positional="learned", layers=1, head_hidden=4).state_dict())
    layer = ["norm_attn.weight", "norm_attn.bias", "attn.in_proj_weight", "attn.in_proj_bias"]
    layer += ["attn.out_proj.weight", "attn.out_proj.bias", "norm_ff.weight", "norm_ff.bias"]
    layer += ["ff.0.weight", "ff.0.bias", "ff.3.weight", "ff.3.bias"]
    expected = ["token.weight", "position.weight", "segment.weight", *(f"layers.0.{k}" for k in layer)]
    expected += ["norm.weight", "norm.bias", "head.1.weight", "head.1.bias", "head.4.weight", "head.4.bias"]
    assert keys == expected


def test_mask_embedding_replaces_the_token_vector_at_masked_positions_only() -> None:
    net = mlm().eval()
    tokens = torch.tensor([[3, 10, 11, 12, 2]])
    masked = torch.tensor([[False, True, False, False, False]])
    with torch.no_grad():
        plain = net({"tokens": tokens})
        other_word = net({"tokens": tokens.masked_fill(masked, 40), "masked": masked})
        hidden = net({"tokens": tokens, "masked": masked})
    assert torch.allclose(hidden, other_word, atol=1e-6)  # under the mask, the word does not matter
    assert not torch.allclose(hidden, plain, atol=1e-4)


def test_only_the_transformer_has_an_mlm_head_and_options_are_the_classifiers() -> None:
    assert MLM_MODELS.names() == ["transformer"]
    assert TASKS.get("masked_lm").models() == ["transformer"]
    mlm(pooling="first", head_hidden=8)  # the classifier's head options: accepted, unused
    with pytest.raises(TypeError, match=r"d_modle.*d_model"):
        mlm(d_modle=8)
    with pytest.raises(ValueError, match="divisible"):
        mlm(heads=3)


# ---- the data -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "tokenizer"),
    [("sst2", {"kind": "word", "max_size": 23}), ("mrpc", {"kind": "bpe", "vocab_size": 50})],
)
def test_glue_source_has_the_glue_datamodules_vocabulary_and_splits(
    glue_dir: Path, task: str, tokenizer
) -> None:
    options = {
        "task": task,
        "tokenizer": tokenizer,
        "holdout_fraction": 0.2,
        "split_seed": 3,
        "train_subset": 50,
    }
    glue = create_datamodule("glue", data_dir=str(glue_dir), **options)
    masked = create_datamodule("masked_text", data_dir=str(glue_dir), source="glue", **options)
    glue.setup()
    masked.setup()
    assert masked.corpus.tokenizer.to_json() == glue.corpus.tokenizer.to_json()
    assert masked.sizes() == {"train": 50, "val": 16, "test": 24}  # GLUE's unlabelled test is left out
    assert glue.sizes() == masked.sizes() | ({"predict": 10} if task == "sst2" else {})
    for split in ("train", "val", "test"):
        assert masked.datasets[split].a.flat.tolist() == glue.datasets[split].a.flat.tolist(), split
    assert masked.token_inputs() == glue.token_inputs()
    assert masked.pair == (task == "mrpc")
    ours, theirs = masked.tracking_params(), glue.tracking_params()
    assert ours["data.cache_key"] == theirs["data.cache_key"] and ours["data.cache_hit"]  # one cache entry


def test_text_files_and_parallel_sources(tmp_path: Path) -> None:
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]
    lines = [" ".join(words[(i + j) % 8] for j in range(3 + i % 4)) for i in range(40)]
    (tmp_path / "train.txt").write_text("\n".join(lines[:30]) + "\n\n")  # a blank line is skipped
    (tmp_path / "test.txt").write_text("\n".join(lines[30:]) + "\n")
    files = create_datamodule(
        "masked_text", data_dir=str(tmp_path), source="text_files", holdout_fraction=0.2
    )
    assert files.sizes() == {"train": 24, "val": 6, "test": 10}
    assert files.corpus.tokenizer.vocab_size == NUM_SPECIAL + len(words) and not files.pair

    (tmp_path / "corpus.de").write_text("\n".join(f"ein satz {i}" for i in range(40)) + "\n")
    (tmp_path / "corpus.en").write_text("\n".join(lines) + "\n")
    options = {
        "source": "parallel",
        "corpus": "files",
        "path": "corpus",
        "test_fraction": 0.25,
        "val_fraction": 0.1,
    }
    english = create_datamodule("masked_text", data_dir=str(tmp_path), side="tgt", **options)
    german = create_datamodule("masked_text", data_dir=str(tmp_path), side="src", **options)
    assert english.sizes()["test"] == german.sizes()["test"] == 10  # the translation cut: 40 * 0.25
    assert english.corpus.tokenizer.token_to_id("cat") and german.corpus.tokenizer.token_to_id("satz")
    assert german.corpus.tokenizer.token_to_id("cat") is None
    inputs, labels = next(iter(english.train_dataloader()))
    assert set(inputs) == {"tokens", "lengths", "segments"} and len(labels) == len(inputs["lengths"])
    with pytest.raises(ValueError, match="augment"):
        create_datamodule("masked_text", data_dir=str(tmp_path), augment=True)


def test_validation_masks_repeat_across_epochs_and_seeds(glue_dir: Path) -> None:
    dm = create_datamodule("masked_text", data_dir=str(glue_dir), task="sst2", eval_batch_size=8)
    dm.setup()
    vocab = dm.token_inputs()["vocab_size"]
    factories = OptimizerFactory("adam", 1e-3, 0.0, {}), ScheduleFactory("none", 0.0, {})
    scores = []
    for seed in (0, 0, 5):
        module = MaskedLMModule(mlm(vocab, seed=1), vocab, *factories, seed=seed)
        trainer = L.Trainer(
            accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
        )
        scores.append(trainer.validate(module, datamodule=dm, verbose=False)[0])
    assert scores[0] == scores[1] == scores[2]  # the same network is scored on the same masked positions
    assert set(scores[0]) == {"val/loss", "val/mlm_loss", "val/mlm_acc"}
    assert scores[0]["val/loss"] == scores[0]["val/mlm_loss"]
    a, b = (seeded_generator(torch.device("cpu"), "train", s, 0, 0).initial_seed() for s in (0, 1))
    assert a != b  # training masks follow the run's seed


# ---- runs ---------------------------------------------------------------------------------------


def mlm_spec(**data) -> dict:
    return {
        "seed": 0,
        "data": {
            "name": "masked_text",
            "source": "glue",
            "task": "sst2",
            "batch_size": 16,
            "holdout_fraction": 0.2,
        }
        | data,
        "model": {"name": "transformer", **OPTIONS},
        "optimizer": {"name": "adam", "lr": 0.01},
        "trainer": {"max_epochs": 2, "accelerator": "cpu"},
        "tracking": {"heatmaps": 0, "log_checkpoint": True},
    }


def test_pretraining_run_is_tracked_and_its_encoder_loads_into_a_glue_classifier(
    glue_dir: Path, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = validate_run_spec(mlm_spec())
    result = execute(spec, Context(uri, glue_dir), experiment="mlm")
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert {"train/mlm_loss", "train/loss_step", "val/mlm_loss", "val/mlm_acc", "test/mlm_loss"} <= set(
        run.data.metrics
    )
    assert run.data.metrics["val/loss"] == run.data.metrics["val/mlm_loss"]
    assert (run.data.tags[tag.TASK_KIND], run.data.tags[tag.TASK_METRIC]) == ("masked_lm", "mlm_loss")
    assert run.data.tags[tag.TASK_MODE] == "min"
    assert [a.path for a in client.list_artifacts(result.run_id, "model")] == ["model/weights.pt"]
    assert [a.path for a in client.list_artifacts(result.run_id, "samples")] == ["samples/mlm_samples.txt"]
    samples = Path(client.download_artifacts(result.run_id, "samples/mlm_samples.txt", str(tmp_path)))
    assert samples.read_text().count("\ntext:") == 3
    # fine-tuning on the same GLUE task with the same model section: the pretrained encoder loads by key
    fine = {**mlm_spec(), "data": {**mlm_spec()["data"], "name": "glue"}}
    del fine["data"]["source"]
    prepared = prepare(validate_run_spec(fine), glue_dir)
    weights = client.download_artifacts(result.run_id, "model/weights.pt", str(tmp_path / "w"))
    pretrained = torch.load(weights, weights_only=True)
    encoder = {k: v for k, v in pretrained.items() if k != "mask_embedding" and not k.startswith("mlm_head.")}
    loaded = prepared.network.load_state_dict(encoder, strict=False)
    assert not loaded.unexpected_keys and all(k.startswith("head.") for k in loaded.missing_keys)


def test_a_model_without_an_mlm_head_is_refused_naming_the_ones_that_fit() -> None:
    raw = mlm_spec()
    raw["model"] = {"name": "lstm"}
    with pytest.raises(SpecError, match=r"'lstm'.*masked-language-model head.*transformer"):
        validate_run_spec(raw)
    raw["model"] = {"name": "transformer", "d_modle": 8}
    with pytest.raises(SpecError, match="did you mean 'd_model'"):
        validate_run_spec(raw)
    raw["model"] = {"name": "transformer", "pooling": "first", "head_hidden": 8}  # the fine-tuning section
    assert validate_run_spec(raw).task.name == "masked_lm"
