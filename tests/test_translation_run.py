"""A translation run end to end through the CLI: `litbench run` tracks BLEU, chrF, perplexity and the
test translations in MLflow, and `litbench translate` rebuilds the run and translates new lines."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.store import client_for
from experiments.specs import SpecError, validate_run_spec

REPO = Path(__file__).resolve().parents[1]
WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree", "runs", "sleeps"]
SENTENCES = [" ".join(random.Random(i).choices(WORDS, k=4 + i % 3)) for i in range(12)]
CORPUS = """
data:
  name: translation
  corpus: files
  source_lang: src
  target_lang: tgt
  source_file: copy.src
  target_file: copy.tgt
  val_fraction: 0.15
  test_fraction: 0.1
  vocab_size: 40
  batch_size: 16
  eval_batch_size: 8
"""


def write_copy_corpus(folder: Path) -> None:
    """The target is the source: 12 sentences, each written 8 times (val and test sentences recur)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(s + "\n" for s in SENTENCES * 8)
    (folder / "copy.src").write_text(lines)
    (folder / "copy.tgt").write_text(lines)


def litbench(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_translation_run_tracks_bleu_and_translations_then_translates_new_lines(
    tmp_path: Path, tracking_uri: str
) -> None:
    write_copy_corpus(tmp_path / "data")
    (tmp_path / "copy.yaml").write_text(
        CORPUS
        + "model: {name: gru_attention, embed_dim: 32, hidden: 64}\n"
        + "optimizer: {name: adam, lr: 0.005}\n"
        + "trainer: {max_epochs: 30, accelerator: cpu}\n"
        + "decoding: {beam_size: 3}\n"
        + "tracking: {heatmaps: 2}\n"
    )
    ran = litbench("run", "copy.yaml", "--data-dir", "data", "--tracking-uri", tracking_uri, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr

    client = client_for(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("copy").experiment_id])
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert metrics["test/bleu"] > 80 and metrics["test/chrf"] > 80, metrics
    assert {"val/bleu", "val/ppl", "train/ppl", "test/ppl"} <= set(metrics)
    assert run.data.params["decoding.beam_size"] == "3"
    assert run.data.tags["litbench.metric"] == "bleu"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "heatmaps")}
    assert artifacts == {"heatmaps/attention.png"}, "the source attention of 2 test sentences"
    # three source/reference/hypothesis triples per validation epoch and for the test
    samples = sorted(a.path for a in client.list_artifacts(run.info.run_id, "samples"))
    assert samples[:2] == ["samples/test.txt", "samples/val-epoch000.txt"]
    assert len(samples) == 31 and samples[-1] == "samples/val-epoch029.txt"
    test_samples = client.download_artifacts(run.info.run_id, "samples/test.txt", str(tmp_path / "out"))
    triples = Path(test_samples).read_text().split("\n\n")
    assert len(triples) == 3
    for triple in triples:
        header, src, ref, hyp = triple.strip().split("\n")
        assert header.startswith("test #") and src.startswith("  src: ") and ref.startswith("  ref: ")
        assert src[7:] == ref[7:], "the copy task: the source is the reference"
        assert hyp.startswith("  hyp: ")
    client.download_artifacts(run.info.run_id, "translations", str(tmp_path / "out"))
    translations = (tmp_path / "out" / "translations" / "test.txt").read_text().splitlines()
    assert len(translations) == int(run.data.params["data.size.test"])
    # the artifact is in corpus order: scored against the test references it gives the tracked BLEU
    import sacrebleu

    from datamodules.seq2seq import ParallelCorpusDataModule

    options = validate_run_spec(yaml.safe_load(CORPUS)).data.options
    references = ParallelCorpusDataModule(data_dir=str(tmp_path / "data"), **options).references("test")
    bleu = sacrebleu.corpus_bleu(translations, [references]).score
    assert bleu == pytest.approx(metrics["test/bleu"], rel=1e-6)  # logged as float32

    # `litbench translate` rebuilds the run: the same sources give the same translations (an empty
    # line stays empty); the copy task's sources are its references
    stdin = "".join(f"{line}\n" for line in [references[0], "", *references[1:]])
    translated = litbench(
        "translate",
        run.info.run_id,
        "--data-dir",
        "data",
        "--tracking-uri",
        tracking_uri,
        cwd=tmp_path,
        stdin=stdin,
    )
    assert translated.returncode == 0, translated.stderr
    assert translated.stdout.splitlines() == [translations[0], "", *translations[1:]]

    # ... and so does a checkpoint on disk: the run's artifact folder, or its weights file
    folder = Path(client.download_artifacts(run.info.run_id, "", str(tmp_path / "checkpoint")))
    (tmp_path / "sources.txt").write_text(stdin)
    for checkpoint in (folder, folder / "model" / "weights.pt"):
        from_disk = litbench("translate", str(checkpoint), "sources.txt", "--data-dir", "data", cwd=tmp_path)
        assert from_disk.returncode == 0, from_disk.stderr
        assert from_disk.stdout == translated.stdout
    (folder / "spec.yaml").unlink()
    missing = litbench("translate", str(folder), "sources.txt", "--data-dir", "data", cwd=tmp_path)
    assert missing.returncode == 2 and "found no spec.yaml of the run" in missing.stderr


@pytest.mark.parametrize(
    ("data", "model", "expected"),
    [
        ({"name": "digits"}, {"name": "gru_attention"}, "models for tensor data: cnn, cnn_deep, mlp"),
        ("translation", {"name": "mlp"}, "models for a translation corpus: gru_attention, gru_seq2seq"),
    ],
    ids=["seq2seq-model-on-images", "classifier-on-a-corpus"],
)
def test_a_model_that_does_not_fit_the_data_is_one_spec_error(
    tmp_path: Path, data: object, model: dict, expected: str
) -> None:
    write_copy_corpus(tmp_path)
    if data == "translation":
        data = {
            "name": "translation", "corpus": "files", "source_lang": "src", "target_lang": "tgt",
            "source_file": "copy.src", "target_file": "copy.tgt", "vocab_size": 40,
        }  # fmt: skip
    with pytest.raises(SpecError, match=expected):  # at validation, before any data loads
        validate_run_spec({"data": data, "model": model, "trainer": {"max_epochs": 1}})


def test_augment_on_a_translation_corpus_is_a_clear_error(tmp_path: Path) -> None:
    write_copy_corpus(tmp_path)
    with pytest.raises(SpecError, match="no policy for translation"):  # at validation, before anything runs
        validate_run_spec(
            {
                "data": {
                    "name": "translation",
                    "corpus": "files",
                    "source_file": "copy.src",
                    "target_file": "copy.tgt",
                },
                "model": {"name": "gru_attention"},
                "regularization": {"augment": True},
            }
        )
