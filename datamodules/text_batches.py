"""Batches of encoded text: collate functions, datasets, the bucket sampler and ``make_loader``.

Batches are padded to their own longest sequence and drawn from length-sorted buckets, so little
compute goes into padding.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.encoded_text import EncodedSplit, TokenSequences
from datamodules.sharding import shard, shard_size
from datamodules.text_tokenizers import PAD_ID, SEP_ID, Ids


def _as_ids(ids: Ids) -> Tensor:
    tensor = torch.as_tensor(ids, dtype=torch.long)
    if tensor.ndim != 1:
        raise ValueError(f"an example's ids must be 1-D, got shape {list(tensor.shape)}")
    return tensor


def _pad(sequences: list[Tensor]) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    return pad_sequence(sequences, batch_first=True, padding_value=PAD_ID), lengths


def gather(sequences: TokenSequences, index: Tensor) -> tuple[Tensor, Tensor]:
    """Rows ``index`` of ``sequences`` as int64 ``[B, T]`` right-padded with PAD_ID, and their lengths."""
    starts = sequences.offsets[index]
    lengths = sequences.offsets[index + 1] - starts
    position = torch.arange(int(lengths.max()))
    inside = position < lengths[:, None]
    where = torch.where(inside, starts[:, None] + position, 0)  # 0: any valid position, masked below
    return sequences.flat[where].long().masked_fill_(~inside, PAD_ID), lengths


def _batch(
    tokens_a: Tensor, lengths_a: Tensor, tokens_b: Tensor | None = None, lengths_b: Tensor | None = None
) -> dict[str, Tensor]:
    """The batch contract (see ``collate``) from separately padded first and second sentences."""
    for lengths in (lengths_a, lengths_b):
        if lengths is not None and int(lengths.min()) < 1:
            raise ValueError(
                f"example {int(lengths.argmin())} has no tokens; encode() always gives at least one"
            )
    if tokens_b is None or lengths_b is None:
        return {"tokens": tokens_a, "lengths": lengths_a, "segments": torch.zeros_like(tokens_a)}
    rows, width_a, width_b = tokens_a.shape[0], tokens_a.shape[1], tokens_b.shape[1]
    lengths = lengths_a + 1 + lengths_b
    joint = tokens_a.new_full((rows, width_a + 1 + width_b), PAD_ID)
    joint[:, :width_a] = tokens_a  # a's padding is overwritten by [SEP] and b, or stays padding
    joint[torch.arange(rows), lengths_a] = SEP_ID
    joint.scatter_(1, lengths_a[:, None] + 1 + torch.arange(width_b), tokens_b)  # b's padding lands past b
    tokens = joint[:, : int(lengths.max())].contiguous()
    position = torch.arange(tokens.shape[1])
    # b starts one past a's [SEP], which stays in segment 0 with a
    segments = ((position > lengths_a[:, None]) & (position < lengths[:, None])).long()
    return {
        "tokens": tokens,
        "lengths": lengths,
        "segments": segments,
        "tokens_a": tokens_a,
        "lengths_a": lengths_a,
        "tokens_b": tokens_b,
        "lengths_b": lengths_b,
    }


def collate(examples: Sequence[Ids] | Sequence[tuple[Ids, Ids]], pair: bool) -> dict[str, Tensor]:
    """One batch, right-padded with PAD_ID to its longest row; all tensors int64.

    ``examples`` are id sequences, or ``(ids_a, ids_b)`` for pair tasks. Keys:
    ``tokens`` [B, T] (pairs: ``a + [SEP] + b``), ``lengths`` [B] (non-pad tokens, >= 1),
    ``segments`` [B, T] (1 on ``b``, else 0; all zeros for single sentences), and for pairs also
    ``tokens_a`` [B, Ta], ``lengths_a`` [B], ``tokens_b`` [B, Tb], ``lengths_b`` [B], each padded alone.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    if not pair:
        return _batch(*_pad([_as_ids(x) for x in examples]))
    a = _pad([_as_ids(x) for x, _ in examples])  # type: ignore[misc]
    b = _pad([_as_ids(y) for _, y in examples])  # type: ignore[misc]
    return _batch(*a, *b)


def collate_labeled(examples: Sequence[tuple[Any, Tensor]], pair: bool) -> tuple[dict[str, Tensor], Tensor]:
    """``(collate(ids), labels)`` for ``(ids, label)`` examples as TextDataset yields them."""
    batch = collate([ids for ids, _ in examples], pair)
    return batch, torch.stack([torch.as_tensor(label) for _, label in examples])


class TextDataset(Dataset):
    """Examples ``(ids, label)``, or ``((ids_a, ids_b), label)`` for pair tasks; ids are int32 views.

    Labels are int64 class indices, or float32 targets when given as floats (regression, e.g. STS-B).
    """

    def __init__(
        self,
        a: TokenSequences | Sequence[Sequence[int]],
        labels: Tensor | Sequence[int] | Sequence[float],
        b: TokenSequences | Sequence[Sequence[int]] | None = None,
    ) -> None:
        self.a = a if isinstance(a, TokenSequences) else TokenSequences.from_lists(a)
        self.b = b if b is None or isinstance(b, TokenSequences) else TokenSequences.from_lists(b)
        labels = torch.as_tensor(labels)
        self.labels = labels.float() if labels.is_floating_point() else labels.long()
        if self.labels.ndim != 1 or len(self.labels) != len(self.a):
            raise ValueError(f"{len(self.a)} examples but labels of shape {list(self.labels.shape)}")
        if self.b is not None and len(self.b) != len(self.a):
            raise ValueError(f"{len(self.a)} first sentences but {len(self.b)} second ones")

    @classmethod
    def from_split(cls, split: EncodedSplit, labels: Tensor | Sequence[int] | Sequence[float]) -> TextDataset:
        return cls(split.a, labels, split.b)

    @property
    def pair(self) -> bool:
        return self.b is not None

    @property
    def lengths(self) -> Tensor:
        """int64 ``[N]``: each example's ``tokens`` length in a batch, the bucket sampler's sort key."""
        return EncodedSplit(self.a, self.b).lengths()

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, i: int) -> tuple[Any, Tensor]:
        ids = self.a.tensor(i) if self.b is None else (self.a.tensor(i), self.b.tensor(i))
        return ids, self.labels[i]

    def batch(self, indices: Sequence[int] | Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """``collate_labeled([self[i] for i in indices], self.pair)``, in a few tensor ops."""
        index = torch.as_tensor(indices, dtype=torch.long)
        if index.ndim != 1 or len(index) == 0:
            raise ValueError(f"a batch needs a non-empty 1-D list of indices, got shape {list(index.shape)}")
        if int(index.min()) < 0 or int(index.max()) >= len(self):
            raise IndexError(f"batch indices span {int(index.min())}..{int(index.max())} of {len(self)}")
        b = (None, None) if self.b is None else gather(self.b, index)
        return _batch(*gather(self.a, index), *b), self.labels[index]


class BatchesDataset(Dataset):
    """``view[indices]`` is a whole batch of a TextDataset: a sampler of index lists drives a DataLoader."""

    def __init__(self, dataset: TextDataset, with_index: bool = False) -> None:
        self.dataset = dataset
        self.with_index = with_index  # also yield the examples' indices (a distilled run's soft targets)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> tuple[Any, ...]:
        batch = self.dataset.batch(indices)  # a seq2seq dataset's batch has a shape of its own
        if self.with_index:
            return (*batch, torch.as_tensor(indices, dtype=torch.long))
        return batch


def as_is(batch: Any) -> Any:  # a module-level function, so worker processes can unpickle it
    return batch


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices with similar lengths, in a seeded order, sharded across DDP ranks.

    With ``shuffle``, epoch ``e`` permutes the samples with a generator seeded ``seed + e``, sorts
    each chunk of ``batch_size * bucket_size_multiplier`` by length, cuts it into batches and shuffles
    the batch order, so padding stays small while batches still differ from epoch to epoch. Without
    ``shuffle`` batches are consecutive indices, so predictions come out in data order.

    Rank ``r`` of ``world_size`` takes every ``world_size``-th sample of the permutation. With
    ``pad_shards`` the permutation first wraps around to a multiple of ``world_size``, so every rank
    runs the same number of batches (DDP needs that) and up to ``world_size - 1`` samples appear twice
    in an epoch; without it each sample appears exactly once (right for evaluation) and shard sizes
    may differ by one. ``drop_last`` drops the permutation's tail beyond whole batches, not a bucket.

    Each ``iter()`` runs epoch ``self.epoch`` and then advances it; ``set_epoch`` (or assigning
    ``epoch``) resumes anywhere; Lightning calls ``set_epoch`` on a DataLoader's ``sampler``.
    """

    def __init__(
        self,
        lengths: Tensor | Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        bucket_size_multiplier: int = 50,
        rank: int = 0,
        world_size: int = 1,
        pad_shards: bool = True,
    ) -> None:
        super().__init__()
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        if self.lengths.ndim != 1:
            raise ValueError(f"lengths must be 1-D, got shape {list(self.lengths.shape)}")
        if batch_size < 1 or bucket_size_multiplier < 1:
            raise ValueError(
                f"batch_size and bucket_size_multiplier must be at least 1, got {batch_size} "
                f"and {bucket_size_multiplier}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.drop_last = drop_last
        self.bucket_size_multiplier = bucket_size_multiplier
        self.rank, self.world_size, self.pad_shards = rank, world_size, pad_shards
        self.epoch = 0  # the next epoch's number

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        size = shard_size(len(self.lengths), self.rank, self.world_size, self.pad_shards)
        return size // self.batch_size if self.drop_last else math.ceil(size / self.batch_size)

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of epoch ``epoch``, a pure function of the arguments and ``epoch``."""
        n = len(self.lengths)
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        order = shard(order, self.rank, self.world_size, self.pad_shards)
        if self.drop_last:
            order = order[: len(order) // self.batch_size * self.batch_size]
        if not self.shuffle:
            return [batch.tolist() for batch in order.split(self.batch_size)]
        chunk = self.batch_size * self.bucket_size_multiplier  # a multiple of batch_size: no batch spans two
        buckets = [idx[torch.sort(self.lengths[idx], stable=True).indices] for idx in order.split(chunk)]
        batches = list(torch.cat(buckets).split(self.batch_size)) if buckets else []
        return [batches[i].tolist() for i in torch.randperm(len(batches), generator=generator).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        self.epoch += 1
        return iter(batches)


def make_loader(
    dataset: TextDataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    pair: bool | None = None,
    rank: int = 0,
    world_size: int = 1,
    *,
    drop_last: bool = False,
    bucket_size_multiplier: int = 50,
    pad_shards: bool = True,
    num_workers: int = 0,
    pin_memory: bool = False,
    with_index: bool = False,
) -> DataLoader:
    """A DataLoader of ``(batch dict, labels)`` over ``dataset`` with length-bucketed batches.

    Each batch is gathered whole by ``TextDataset.batch`` (the same tensors ``collate`` makes), which
    takes tens of microseconds; worker processes would spend more on moving batches than that, so
    ``num_workers=0`` is the default. The sampler is the DataLoader's ``sampler``, where Lightning
    calls ``set_epoch``. ``pair`` defaults to the dataset's. Pass ``pad_shards=False`` for evaluation
    under DDP, so each sample counts once (ranks may then run one batch fewer). ``with_index`` makes
    batches ``(batch dict, labels, indices into dataset)``.
    """
    if pair is None:
        pair = dataset.pair
    elif pair != dataset.pair:
        raise ValueError(f"pair={pair} but the dataset {'has' if dataset.pair else 'lacks'} second sentences")
    sampler = BucketBatchSampler(
        dataset.lengths,
        batch_size,
        shuffle,
        seed=seed,
        drop_last=drop_last,
        bucket_size_multiplier=bucket_size_multiplier,
        rank=rank,
        world_size=world_size,
        pad_shards=pad_shards,
    )
    return DataLoader(
        BatchesDataset(dataset, with_index),
        sampler=sampler,
        batch_size=None,  # the sampler already yields whole batches of indices
        collate_fn=as_is,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
