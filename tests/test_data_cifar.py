"""Tests of the CIFAR-10/100 loader on tiny archives written in the real format (no network)."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from optbench.core.errors import DataUnavailableError
from optbench.data import FetchContext, FunctionSource, UrlSource, cifar, datasets, is_cached
from optbench.data.cifar import CIFAR10, CIFAR100, CifarDataset, unpickle_batch


def batch_bytes(data: np.ndarray, labels: list[int], key: bytes = b"labels") -> bytes:
    """A batch pickled like the originals: a dict with bytes keys, ``data`` (N, 3072) uint8."""
    return pickle.dumps({b"batch_label": b"test", key: labels, b"data": data,
                         b"filenames": [b"x.png"] * len(labels)}, protocol=2)


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def images(n: int, offset: int) -> np.ndarray:
    """``n`` images whose first pixel of each channel encodes (image index, channel)."""
    data = np.zeros((n, 3, 32, 32), dtype=np.uint8)
    for i in range(n):
        for c in range(3):
            data[i, c, 0, 0] = (offset + i) * 3 + c
        data[i, 2, 31, 31] = 200  # last pixel of the blue plane
    return data.reshape(n, 3072)


def tiny_cifar10() -> tuple[bytes, list[int]]:
    """2 training batches of 10 images + a test batch of 10, labels 0..9 in known orders."""
    labels = [list(range(10)), list(range(9, -1, -1)), [3] * 10]
    members = {
        "cifar-10-batches-py/data_batch_1": batch_bytes(images(10, 0), labels[0]),
        "cifar-10-batches-py/data_batch_2": batch_bytes(images(10, 10), labels[1]),
        "cifar-10-batches-py/test_batch": batch_bytes(images(10, 20), labels[2]),
        "cifar-10-batches-py/batches.meta": pickle.dumps({b"label_names": [b"a"] * 10}, protocol=2),
    }
    return tar_gz(members), labels[0] + labels[1] + labels[2]


def spec_for(archive: bytes, base: CifarDataset = CIFAR10, **changes) -> CifarDataset:
    fields = {"sha256": hashlib.sha256(archive).hexdigest(), "md5": "", "size": len(archive), "sources": ()}
    if base is CIFAR10:
        fields["train_members"] = ("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/data_batch_2")
    fields.update(changes)
    return replace(base, **fields)


def serve(archive: bytes, name: str, label: str = "mirror", calls: list | None = None) -> FunctionSource:
    def function(names: Sequence[str], ctx: FetchContext) -> dict[str, Path]:
        if calls is not None:
            calls.append(list(names))
        path = ctx.workdir / name
        path.write_bytes(archive)
        return {name: path}
    return FunctionSource(label, function)


def test_cifar10_shapes_labels_order(tmp_path: Path) -> None:
    archive, labels = tiny_cifar10()
    spec = spec_for(archive, sources=(serve(archive, CIFAR10.archive),))
    lines: list[str] = []
    assert not spec.is_cached(tmp_path)
    arrays = spec.load(tmp_path, lines.append)
    assert spec.is_cached(tmp_path)
    assert (tmp_path / "cifar10" / "cifar-10-python.tar.gz").read_bytes() == archive
    assert arrays.train_x.shape == (20, 3, 32, 32) and arrays.train_x.dtype == np.uint8
    assert arrays.test_x.shape == (10, 3, 32, 32)
    assert arrays.train_y.dtype == np.int64 and arrays.test_y.dtype == np.int64
    assert arrays.train_y.tolist() + arrays.test_y.tolist() == labels
    # batch order kept and rows decoded as red, green, blue planes of 32x32, row-major
    assert arrays.train_x[:, 1, 0, 0].tolist() == [i * 3 + 1 for i in range(20)]
    assert arrays.test_x[0, :, 0, 0].tolist() == [60, 61, 62]
    assert (arrays.train_x[:, 2, 31, 31] == 200).all() and (arrays.train_x[:, :2, 31, 31] == 0).all()
    assert any("verified" in line for line in lines)


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    fine, coarse = [99, 0, 42, 7], [19, 0, 8, 1]
    members = {}
    for split, offset in (("train", 0), ("test", 4)):
        payload = {b"filenames": [b"x"] * 4, b"batch_label": b"b", b"fine_labels": fine, b"coarse_labels": coarse,
                   b"data": images(4, offset)}
        members[f"cifar-100-python/{split}"] = pickle.dumps(payload, protocol=2)
    archive = tar_gz(members)
    spec = spec_for(archive, CIFAR100)
    (tmp_path / "cifar100").mkdir()
    (tmp_path / "cifar100" / CIFAR100.archive).write_bytes(archive)  # placed by hand: accepted
    arrays = spec.load(tmp_path, lambda line: None)
    assert arrays.train_y.tolist() == fine and arrays.test_y.tolist() == fine
    assert arrays.train_x.shape == (4, 3, 32, 32) and arrays.test_x[0, 0, 0, 0] == 12


def test_corrupt_archive_deleted_and_never_unpickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive, _ = tiny_cifar10()
    spec = spec_for(archive)
    unpickled: list[bytes] = []
    monkeypatch.setattr(cifar, "unpickle_batch", lambda data: unpickled.append(data) or {})
    path = tmp_path / "cifar10" / CIFAR10.archive
    path.parent.mkdir()
    path.write_bytes(archive[:-1] + bytes([archive[-1] ^ 1]))
    assert not spec.is_cached(tmp_path)
    lines: list[str] = []
    with pytest.raises(DataUnavailableError, match="no sources configured"):
        spec.load(tmp_path, lines.append)
    assert not path.exists() and not unpickled
    assert any("deleting corrupt archive" in line and "never unpickled" in line for line in lines)


def test_corrupt_download_rejected_next_source_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive, labels = tiny_cifar10()
    bad = archive[:100] + b"x" + archive[101:]
    first: list = []
    spec = spec_for(archive, sources=(serve(bad, CIFAR10.archive, "bad mirror", first),
                                      serve(archive, CIFAR10.archive, "good mirror")))
    seen: list[bytes] = []
    real = cifar.unpickle_batch
    monkeypatch.setattr(cifar, "unpickle_batch", lambda data: seen.append(data) or real(data))
    arrays = spec.load(tmp_path, lambda line: None)
    assert first == [[CIFAR10.archive]]
    assert arrays.train_y.tolist() == labels[:20] and len(seen) == 3
    assert (tmp_path / "cifar10" / CIFAR10.archive).read_bytes() == archive


def test_missing_archive_message(tmp_path: Path) -> None:
    offline = replace(CIFAR10, sources=(UrlSource((tmp_path / "nowhere").as_uri() + "/", suffix=""),))
    with pytest.raises(DataUnavailableError) as info:
        offline.load(tmp_path / "cache", lambda line: None)
    message = str(info.value)
    assert "\n" not in message and "'cifar10' is unavailable" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert "c58f30108f718f92721af3b95e74349a" in message
    assert f"{tmp_path / 'cache' / 'cifar10' / 'cifar-10-python.tar.gz'}" in message
    assert "URLError" in message and "--task mnist1d_cnn" in message


def test_real_md5_and_size_are_checked() -> None:
    assert CIFAR10.md5 == "c58f30108f718f92721af3b95e74349a" and CIFAR100.md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert (CIFAR10.size, CIFAR100.size) == (170_498_071, 169_001_437)
    assert not CIFAR10.verify(b"\x1f\x8b" + b"\x00" * 100)
    with pytest.raises(DataUnavailableError, match="no checksum"):
        replace(CIFAR10, sha256="", md5="").verify(b"")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo should-never-run",))


def test_unpickler_refuses_other_globals() -> None:
    with pytest.raises(DataUnavailableError, match="not allowed"):
        unpickle_batch(pickle.dumps({b"data": _Evil()}, protocol=2))
    numpy1 = pickle.dumps({b"data": np.arange(3, dtype=np.uint8)}, protocol=2).replace(
        b"numpy._core.multiarray", b"numpy.core.multiarray")  # the originals' module name
    assert unpickle_batch(numpy1)[b"data"].tolist() == [0, 1, 2]
    with pytest.raises(DataUnavailableError, match="not a dict"):
        unpickle_batch(pickle.dumps([1, 2], protocol=2))


def test_malformed_batch_is_an_error(tmp_path: Path) -> None:
    archive = tar_gz({"cifar-10-batches-py/data_batch_1": batch_bytes(np.zeros((2, 100), np.uint8), [0, 1]),
                      "cifar-10-batches-py/test_batch": batch_bytes(images(1, 0), [0])})
    spec = spec_for(archive, train_members=("cifar-10-batches-py/data_batch_1",))
    with pytest.raises(DataUnavailableError, match=r"expected \(N, 3072\)"):
        spec.decode(archive)
    missing = spec_for(archive, train_members=("cifar-10-batches-py/data_batch_9",))
    with pytest.raises(DataUnavailableError, match="data_batch_9 missing"):
        missing.decode(archive)


def test_registered(tmp_path: Path) -> None:
    assert {"cifar10", "cifar100"} <= set(datasets.names())
    info = datasets.get("cifar100").info()
    assert (info.n_train, info.n_test, info.shape, info.classes) == (50000, 10000, (3, 32, 32), 100)
    assert info.sources == ["https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"]
    assert not is_cached("cifar10", tmp_path)
    with pytest.raises(DataUnavailableError, match="no sources configured"):
        replace(CIFAR10, sources=()).load(tmp_path, lambda line: None)
    assert not (tmp_path / "cifar10" / CIFAR10.archive).exists()
