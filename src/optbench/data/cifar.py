"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny
Images") from the canonical python-pickle archives.

Source: https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (resp. ``cifar-100-python``);
no other source exists. The archive is cached as is under ``{cache}/{name}/`` (a user may
place it there by hand) and checked on every load by its size, sha256 and the md5 published
on the dataset's page. The batches inside are Python pickles: they are unpickled only from
the bytes whose checksums matched (read once into memory, so the file cannot change between
check and use), with ``encoding="bytes"`` (as the dataset page says) by an unpickler that
resolves only the few globals a numpy array needs.

Layout: CIFAR-10 ``cifar-10-batches-py/data_batch_1..5`` (10,000 images each) and
``test_batch`` with ``b"labels"``; CIFAR-100 ``cifar-100-python/train`` and ``test`` with
``b"fine_labels"`` (the 100 classes; the 20 coarse labels are not used). ``b"data"`` is
``(N, 3072)`` uint8, each row the red, green, blue 32x32 planes in row-major order.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optbench.core.errors import DataUnavailableError
from optbench.data.cache import atomic_write_bytes
from optbench.data.datasets import Arrays, DatasetSpec, FileStatus, file_status
from optbench.data.sources import (
    _SOURCE_FAILURES,
    NO_DOWNLOAD_HINT,
    FetchContext,
    Log,
    Source,
    UrlSource,
    brief,
)

#: Globals a pickled numpy array refers to; anything else in a batch is refused.
_ALLOWED_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`_ALLOWED_GLOBALS` (defence in depth: batches are
    unpickled only after the archive's checksums matched)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"CIFAR batch refers to {module}.{name}, which is not allowed")
        return super().find_class(module, name)


def unpickle_batch(data: bytes) -> dict[bytes, object]:
    """One CIFAR batch (bytes of a verified archive member) as a dict with bytes keys.

    Raises:
        DataUnavailableError: when the bytes are not a batch dict.
    """
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataUnavailableError(f"unreadable CIFAR batch ({exc})") from exc
    if not isinstance(batch, dict):
        raise DataUnavailableError(f"CIFAR batch is a {type(batch).__name__}, not a dict")
    return batch


@dataclass(frozen=True)
class CifarDataset(DatasetSpec):
    """A CIFAR archive: ``train_x`` / ``test_x`` uint8 ``(N, 3, 32, 32)``, labels int64.

    Args (beyond :class:`DatasetSpec`):
        archive: file name of the archive (``cifar-10-python.tar.gz``).
        url: where it is published (for messages).
        size / sha256 / md5: its size in bytes and digests; each one given (non-zero / non-empty)
            is checked, and at least one digest must be given.
        train_members / test_members: pickled batches inside the archive, in order.
        label_key: the labels' key in each batch (``b"labels"``, ``b"fine_labels"``).
        sources: tried in order when the archive is not in the cache.
    """

    archive: str = ""
    url: str = ""
    size: int = 0
    sha256: str = ""
    md5: str = ""
    train_members: tuple[str, ...] = ()
    test_members: tuple[str, ...] = ()
    label_key: bytes = b"labels"
    sources: tuple[Source, ...] = ()

    @property
    def source_labels(self) -> list[str]:
        return [f"{s.base.rstrip('/')}/{self.archive}{s.suffix}" if isinstance(s, UrlSource) else s.label
                for s in self.sources]

    def archive_path(self, cache: Path) -> Path:
        """Where the archive lives: ``{cache}/{name}/{archive}``."""
        return self.directory(cache) / self.archive

    def verify(self, data: bytes) -> bool:
        """True when ``data`` has the archive's size and digests.

        Raises:
            DataUnavailableError: when the spec gives neither sha256 nor md5.
        """
        if not (self.sha256 or self.md5):
            raise DataUnavailableError(f"dataset {self.name!r} has no checksum to verify its archive against")
        return ((not self.size or len(data) == self.size)
                and (not self.sha256 or hashlib.sha256(data).hexdigest() == self.sha256)
                and (not self.md5 or hashlib.md5(data, usedforsecurity=False).hexdigest() == self.md5))

    def _cached_bytes(self, cache: Path, log: Log) -> bytes | None:
        """The verified archive bytes from the cache; a corrupt archive is deleted."""
        path = self.archive_path(cache)
        if not path.is_file():
            return None
        data = path.read_bytes()
        if self.verify(data):
            return data
        log(f"deleting corrupt archive {path} (size or checksum mismatch; never unpickled)")
        path.unlink()
        return None

    def obtain(self, cache: Path, log: Log) -> bytes:
        """The verified archive's bytes, from the cache or the sources (stored atomically).

        Raises:
            DataUnavailableError: one line naming the URL, each source's failure and where to
                place the archive by hand.
        """
        data = self._cached_bytes(cache, log)
        if data is not None:
            return data
        path = self.archive_path(cache)
        failures = []
        for source in self.sources:
            log(f"{self.name}: trying {source.label}")
            try:
                with tempfile.TemporaryDirectory(prefix="optbench-fetch-") as tmp:
                    got = dict(source.retrieve([self.archive], FetchContext(Path(tmp), cache, log)))
                    data = got[self.archive].read_bytes() if self.archive in got else None
            except _SOURCE_FAILURES as exc:
                failures.append(f"{source.label} ({brief(exc)})")
                continue
            if data is None:
                failures.append(f"{source.label} (did not provide {self.archive})")
            elif not self.verify(data):
                log(f"{self.archive} from {source.label}: checksum mismatch; deleted, never unpickled")
                failures.append(f"{source.label} (checksum mismatch, deleted)")
            else:
                atomic_write_bytes(path, data)
                log(f"verified {self.archive} -> {path}")
                return data
        tried = "; ".join(failures) if failures else "no sources configured"
        raise DataUnavailableError(
            f"dataset {self.name!r} is unavailable: tried {tried}. Download {self.url} (md5 {self.md5 or '-'}) "
            f"yourself and place it at {path}, {NO_DOWNLOAD_HINT}.")

    def is_cached(self, cache: Path) -> bool:
        path = self.archive_path(cache)
        return path.is_file() and self.verify(path.read_bytes())

    def fetch(self, cache: Path, log: Log) -> Path:
        self.obtain(cache, log)
        return self.archive_path(cache)

    def file_status(self, cache: Path) -> list[FileStatus]:
        return [file_status(self.archive_path(cache), lambda path: self.verify(path.read_bytes()))]

    def decode(self, data: bytes) -> Arrays:
        """Arrays from verified archive bytes (call only after :meth:`verify`).

        Raises:
            DataUnavailableError: when a batch is missing or malformed.
        """
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}

            def read(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
                xs, ys = [], []
                for name in names:
                    handle = archive.extractfile(members[name]) if name in members else None
                    if handle is None:
                        raise DataUnavailableError(f"dataset {self.name!r}: {name} missing from {self.archive}")
                    with handle:
                        batch = unpickle_batch(handle.read())
                    x = np.asarray(batch.get(b"data"), dtype=np.uint8)
                    y = np.asarray(batch.get(self.label_key), dtype=np.int64)
                    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y.shape != (x.shape[0],):
                        raise DataUnavailableError(f"dataset {self.name!r}: {name} has data {x.shape} and "
                                                   f"{self.label_key!r} {y.shape}, expected (N, 3072) and (N,)")
                    xs.append(x.reshape(-1, 3, 32, 32))
                    ys.append(y)
                return np.concatenate(xs), np.concatenate(ys)

            train_x, train_y = read(self.train_members)
            test_x, test_y = read(self.test_members)
        if min(train_y.min(), test_y.min()) < 0 or max(train_y.max(), test_y.max()) >= self.classes:
            raise DataUnavailableError(f"dataset {self.name!r}: labels outside 0..{self.classes - 1}")
        return Arrays(train_x, train_y, test_x, test_y)

    def load(self, cache: Path, log: Log) -> Arrays:
        """Verify (fetching if needed) and decode; about 3 s for the real archive."""
        return self.decode(self.obtain(cache, log))


_BASE = "https://www.cs.toronto.edu/~kriz/"

CIFAR10 = CifarDataset(
    name="cifar10",
    description="CIFAR-10 (Krizhevsky 2009), 32x32 RGB uint8 (N, 3, 32, 32), 10 classes",
    n_train=50000, n_test=10000, shape=(3, 32, 32), classes=10,
    archive="cifar-10-python.tar.gz", url=_BASE + "cifar-10-python.tar.gz", size=170_498_071,
    sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    md5="c58f30108f718f92721af3b95e74349a",
    train_members=tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
    test_members=("cifar-10-batches-py/test_batch",), label_key=b"labels",
    sources=(UrlSource(_BASE, suffix="", timeout=60.0),),
)

CIFAR100 = CifarDataset(
    name="cifar100",
    description="CIFAR-100 (Krizhevsky 2009), 32x32 RGB uint8 (N, 3, 32, 32), 100 fine classes",
    n_train=50000, n_test=10000, shape=(3, 32, 32), classes=100,
    archive="cifar-100-python.tar.gz", url=_BASE + "cifar-100-python.tar.gz", size=169_001_437,
    sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    train_members=("cifar-100-python/train",), test_members=("cifar-100-python/test",), label_key=b"fine_labels",
    sources=(UrlSource(_BASE, suffix="", timeout=60.0),),
)
