"""Streamed data (StreamSplit through a DataLoader): the same batches in the same order as the in-memory
path, resumable, bounded in memory, with one-line errors naming the dataset, the index and the fault."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import IterableDataset

from optbench.core.errors import ConfigError
from optbench.core.spec import Dataset, Recipe, RunStatus, Split, StreamSplit, Task
from optbench.data.readers import TensorItems, streamed
from optbench.engine import split_data, train
from optbench.engine.checkpoint import Checkpointer
from optbench.engine.data import shuffled_batches
from optbench.tasks import check_task, get_task
from optbench.tasks.classification import classification_task
from test_checkpoint import _conv_digits, _interrupt  # the same conv task and kill-like interruption


def _curves(result) -> list[tuple]:
    return [(e.epoch, e.step, e.lr, e.metrics) for e in result.epochs]


def _close(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for (ea, sa, la, ma), (eb, sb, lb, mb) in zip(a, b, strict=True):
        assert (ea, sa) == (eb, sb) and la == pytest.approx(lb)
        assert ma.keys() == mb.keys()
        for key in ma:
            assert ma[key] == pytest.approx(mb[key], rel=1e-6, abs=1e-7), key


RECIPE = Recipe("momentum", {"lr": 0.05, "momentum": 0.9}, batch_size=32, epochs=3, schedule="cosine",
                techniques=["random_crop:padding=1", "horizontal_flip:p=0.5", "gaussian_noise:std=0.1"])


@pytest.mark.parametrize("workers", [0, 1])
def test_streamed_run_equals_the_in_memory_run(workers: int) -> None:
    task = _conv_digits()
    twin = streamed(task, workers=workers)
    memory = train(task, split_data(task.load_data(), task.valid_size, 3, 300), RECIPE, seed=3)
    stream_data = split_data(twin.load_data(), twin.valid_size, 3, 300)
    assert isinstance(stream_data.train, StreamSplit) and len(stream_data.train) == 300
    stream = train(twin, stream_data, RECIPE, seed=3)
    assert memory.status is stream.status is RunStatus.FINISHED, stream.error
    _close(_curves(stream), _curves(memory))  # same order, same batches, same augmentation draws


def test_streamed_run_resumes_with_the_same_data_order(tmp_path: Path) -> None:
    twin = streamed(_conv_digits(), workers=0)
    data = split_data(twin.load_data(), twin.valid_size, 1, 200)
    full = train(twin, data, RECIPE, seed=1)
    checkpoint = Checkpointer(tmp_path / "r.pt", full.run_id)
    _interrupt(twin, data, RECIPE, 1, checkpoint, after=1)
    resumed = train(twin, data, RECIPE, seed=1, checkpoint=checkpoint)
    assert resumed.environment["checkpoint"] == {"resumed_epoch": 1}
    assert _curves(resumed) == _curves(full)  # bitwise: the data order after the resume is unchanged


def test_batches_follow_the_seeded_permutation() -> None:
    x, y = torch.arange(50.0).unsqueeze(1), torch.arange(50) % 3
    split = StreamSplit(TensorItems(x, y), workers=0)
    got = list(shuffled_batches(split, 8, torch.Generator().manual_seed(4)))
    expected = list(shuffled_batches(Split(x, y), 8, torch.Generator().manual_seed(4)))
    assert [b[0].shape[0] for b in got] == [8] * 6 + [2]
    for (gx, gy), (ex, ey) in zip(got, expected, strict=True):
        assert torch.equal(gx, ex) and torch.equal(gy, ey)


def test_a_separate_validation_set_is_used_whole() -> None:
    x, y = torch.randn(40, 3), torch.arange(40) % 2
    dataset = Dataset(StreamSplit(TensorItems(x, y)), Split(x[:5], y[:5]), valid=Split(x[:7], y[:7]))
    data = split_data(dataset, valid_size=10, seed=0)
    assert len(data.train) == 40 and len(data.valid) == 7  # valid_size is not used
    assert len(split_data(dataset, valid_size=10, seed=0, train_size=25).train) == 25


class _Items(TorchDataset):
    """50 items (x of shape (4,), label i % 3) with one fault at ``bad``."""

    def __init__(self, fault: str, bad: int = 37) -> None:
        self.fault, self.bad = fault, bad

    def __len__(self) -> int:
        return 50

    def __getitem__(self, i: int):
        if i == self.bad:
            if self.fault == "not a pair":
                return torch.zeros(4)
            if self.fault == "label":
                return torch.zeros(4), 7
            if self.fault == "shape":
                return torch.zeros(5), 1
            if self.fault == "raises":
                raise OSError("disk read failed")
            if self.fault == "dies":
                os._exit(3)  # a worker process that dies
        return torch.full((4,), float(i)), i % 3


@pytest.mark.parametrize(("fault", "message"), [
    ("not a pair", "invalid dataset d item 37 'a Tensor'; allowed: a pair (x, y)"),
    ("label", "invalid dataset d item 37 label 7; allowed: a class index in [0, 3)"),
    ("shape", "invalid dataset d item 37 x shape (5,); allowed: (4,) (the shape of item 0)"),
    ("raises", "invalid dataset d item 37 'OSError: disk read failed'; allowed: an item that can be read"),
])
def test_bad_items_name_the_dataset_the_index_and_the_fault(fault: str, message: str) -> None:
    split = StreamSplit(_Items(fault), name="d", classes=3, workers=0)
    with pytest.raises(ConfigError) as err:
        list(shuffled_batches(split, 8, torch.Generator().manual_seed(0)))
    assert str(err.value) == message
    with pytest.raises(ConfigError) as err:  # through a subset: the user's index, not the subset's
        split.subset(torch.arange(30, 50)).item(7)
    assert str(err.value) == message
    split = StreamSplit(_Items(fault), name="d", classes=3, workers=1)  # read in a worker: the same one line
    with pytest.raises(RuntimeError, match="DataLoader worker: ConfigError: " + message.replace("(", r"\(")
                       .replace(")", r"\)").replace("[", r"\[")):
        list(shuffled_batches(split, 8, torch.Generator().manual_seed(0)))


def _items_task(fault: str, bad: int, workers: int) -> Task:
    def load() -> Dataset:
        return Dataset(StreamSplit(_Items(fault, bad), name="d", classes=3, workers=workers),
                       StreamSplit(_Items("none"), name="t", classes=3, workers=0))
    return classification_task("items", "items", lambda: nn.Linear(4, 3), load, target_accuracy=0.9,
                               valid_size=10, recipe={})


def test_a_bad_item_among_the_first_stops_before_any_run_and_a_dying_worker_fails_its_run() -> None:
    task = _items_task("label", 1, 0)
    with pytest.raises(ConfigError, match="dataset d item 1 label 7"):
        check_task(task, task.load_data())  # the CLI's check before anything is stored: exit 2
    task = _items_task("dies", 45, 1)
    data = split_data(task.load_data(), task.valid_size, 0)
    result = train(task, data, Recipe("sgd", {"lr": 0.1}, batch_size=8, epochs=1), seed=0)
    assert result.status is RunStatus.FAILED and result.error.startswith("RuntimeError: DataLoader worker")


def test_refused_datasets() -> None:
    class Stream(IterableDataset):  # no __len__: schedules could not count its steps
        def __iter__(self):
            yield torch.zeros(2), 0

    with pytest.raises(ConfigError, match="dataset s 'Stream'; allowed: a torch.utils.data.Dataset or"):
        StreamSplit(Stream(), name="s")
    with pytest.raises(ConfigError, match="workers"):
        StreamSplit(TensorItems(torch.zeros(2, 1), torch.zeros(2)), workers=-1)
    with pytest.raises(ConfigError, match="empty dataset"):
        _ = StreamSplit(TensorItems(torch.zeros(0, 1), torch.zeros(0)), name="e").input_shape


LARGE = textwrap.dedent("""
    import resource, sys
    import numpy as np, torch
    from torch import nn
    from optbench.core.spec import Dataset, Recipe, Split, StreamSplit
    from optbench.data.readers import NpyArrays
    from optbench.engine import split_data, train
    from optbench.tasks.classification import classification_task

    root = sys.argv[1]
    def load():
        test = Split(torch.randn(64, 1024), torch.randint(0, 10, (64,)))
        return Dataset(StreamSplit(NpyArrays(root + "/x.npy", root + "/y.npy"), classes=10, workers=0), test)
    task = classification_task("large", "large", lambda: nn.Linear(1024, 10), load, target_accuracy=0.9,
                               valid_size=256, recipe={})
    data = split_data(task.load_data(), task.valid_size, 0)
    torch.set_num_threads(1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = train(task, data, Recipe("sgd", {"lr": 0.01}, batch_size=256, epochs=1), seed=0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(result.status.value, result.steps, before, after, result.error)
""")


def test_a_dataset_larger_than_the_allowed_memory_trains_in_bounded_memory(tmp_path: Path) -> None:
    n, features, allowed = 100_000, 1024, 128 * 2**20  # 410 MB of inputs; the run may grow by 128 MiB
    with (tmp_path / "x.npy").open("wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, features)})
        rng = np.random.default_rng(0)
        for _ in range(n // 10_000):
            f.write(rng.standard_normal((10_000, features), dtype=np.float32).tobytes())
    np.save(tmp_path / "y.npy", np.arange(n) % 10)
    size = (tmp_path / "x.npy").stat().st_size
    assert size > 3 * allowed
    out = subprocess.run([sys.executable, "-c", LARGE, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    status, steps, before, after, _ = out.stdout.split(maxsplit=4)
    assert status == "finished" and int(steps) == -(-(n - 256) // 256)
    assert int(after) - int(before) < allowed, f"peak RSS grew by {(int(after) - int(before)) / 2**20:.0f} MiB"


def test_the_streamed_built_in_task_checks_and_loads_like_the_original() -> None:
    task = get_task("mnist1d_mlp")
    twin = streamed(task, workers=0)
    data = twin.load_data()
    check_task(twin, data)
    assert isinstance(data.train, StreamSplit) and data.train.input_shape == task.load_data().train.input_shape


class Shards(IterableDataset):
    """An iterable of shards (each a tensor pair), the shard order shuffled by ``set_epoch``'s seed and the
    shards divided among DataLoader workers: how sharded streaming datasets (WebDataset, Hugging Face
    ``IterableDataset``) behave."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, shards: int) -> None:
        self.parts = list(zip(x.chunk(shards), y.chunk(shards), strict=True))
        self.epoch_seeds: list[int] = []
        self.seed = 0

    def __len__(self) -> int:
        return sum(len(px) for px, _ in self.parts)

    def set_epoch(self, seed: int) -> None:
        self.seed = seed
        self.epoch_seeds.append(seed)

    def __iter__(self):
        from torch.utils.data import get_worker_info

        order = torch.randperm(len(self.parts), generator=torch.Generator().manual_seed(self.seed)).tolist()
        info = get_worker_info()
        mine = order if info is None else order[info.id::info.num_workers]
        for shard in mine:
            px, py = self.parts[shard]
            yield from zip(px, py, strict=True)


def _shard_task(workers: int) -> tuple[Task, Shards]:
    base = get_task("mnist1d_mlp").load_data()
    stream = Shards(base.train.x[:1000], base.train.y[:1000], shards=10)

    def load() -> Dataset:
        return Dataset(StreamSplit(stream, name="shards", classes=10, workers=workers), base.test,
                       valid=Split(base.train.x[1000:1300], base.train.y[1000:1300]))
    return classification_task("shards", "mnist1d shards", lambda: nn.Sequential(nn.Linear(40, 10)), load,
                               target_accuracy=0.9, valid_size=0, recipe={}), stream


def test_an_iterable_of_shards_trains_reproducibly_and_resumes(tmp_path: Path) -> None:
    recipe = Recipe("adam", {"lr": 1e-2}, batch_size=50, epochs=3)
    task, stream = _shard_task(0)
    data = split_data(task.load_data(), task.valid_size, 0)
    check_task(task, task.load_data())
    first = train(task, data, recipe, seed=4)
    assert first.status is RunStatus.FINISHED, first.error
    assert first.steps == 3 * 20 and len(set(stream.epoch_seeds)) == 3  # a new seeded order every epoch
    again = train(task, split_data(task.load_data(), 0, 0), recipe, seed=4)
    assert _curves(again) == _curves(first) and stream.epoch_seeds[3:] == stream.epoch_seeds[:3]
    checkpoint = Checkpointer(tmp_path / "r.pt", first.run_id)
    _interrupt(task, data, recipe, 4, checkpoint, after=1)
    resumed = train(task, data, recipe, seed=4, checkpoint=checkpoint)
    assert _curves(resumed) == _curves(first)  # the epochs after the resume get the same set_epoch seeds
    task1, _ = _shard_task(1)
    one_worker = train(task1, split_data(task1.load_data(), 0, 0), recipe, seed=4)
    _close(_curves(one_worker), _curves(first))


def test_an_iterable_needs_its_own_validation_set_and_all_of_its_examples() -> None:
    task, stream = _shard_task(0)
    data = task.load_data()
    without = Dataset(data.train, data.test)
    with pytest.raises(ConfigError, match="an IterableDataset training pool without a validation set"):
        check_task(dataclasses.replace(task, valid_size=10), without)
    with pytest.raises(ConfigError, match="an IterableDataset split by index"):
        split_data(data, 0, 0, train_size=500)
