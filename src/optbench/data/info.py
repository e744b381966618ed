"""What ``optbench data info NAME`` shows: facts, cache files with checksum status, class counts.

:func:`describe` never downloads or generates anything: it reads the files that are in the
cache (verifying their checksums) and decodes the data only when every file verified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optbench.data.cache import cache_dir
from optbench.data.datasets import DatasetSpec, FileStatus, datasets
from optbench.data.sources import _quiet
from optbench.data.text import TextDataset


@dataclass(frozen=True)
class DatasetReport:
    """A dataset's description for ``data info``.

    Attributes:
        name / description / kind: from the spec (``kind`` ``"arrays"`` or ``"text"``).
        sizes: examples per split (``{"train": 50000, "test": 10000}``); tokens for text
            (``train``/``valid``/``test``), measured from the cached corpus when present.
        shape: one example's shape (``()`` for a token).
        classes: number of classes, or vocabulary size for text.
        class_counts: examples per class ``{"train": [...], "test": [...]}`` when the data is
            cached, else None (arrays only).
        status: ``"verified"`` (every file present and its checksum right), ``"corrupt"``
            (some file present with a wrong checksum) or ``"missing"``.
        directory: the dataset's directory in the cache.
        files: each file with size in bytes and status.
        sources: where the data comes from, in the order tried.
    """

    name: str
    description: str
    kind: str
    sizes: dict[str, int]
    shape: tuple[int, ...]
    classes: int
    class_counts: dict[str, list[int]] | None
    status: str
    directory: Path
    files: list[FileStatus] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


def _overall(files: list[FileStatus]) -> str:
    states = {f.status for f in files}
    if "corrupt" in states:
        return "corrupt"
    return "missing" if "missing" in states or not files else "verified"


def _sizes_and_counts(spec: DatasetSpec, cache: Path, cached: bool
                      ) -> tuple[dict[str, int], int, dict[str, list[int]] | None]:
    if isinstance(spec, TextDataset):
        if cached:
            corpus = spec.load_text(cache, _quiet)
            sizes = {"train": len(corpus.train), "valid": len(corpus.valid), "test": len(corpus.test)}
            return sizes, corpus.vocab_size, None
        return {"train": spec.n_train, "valid": spec.n_valid, "test": spec.n_test}, spec.classes, None
    sizes = {"train": spec.n_train, "test": spec.n_test}
    if not cached:
        return sizes, spec.classes, None
    arrays = spec.load(cache, _quiet)
    counts = {split: np.bincount(getattr(arrays, f"{split}_y"), minlength=spec.classes).tolist()
              for split in ("train", "test")}
    return {"train": len(arrays.train_y), "test": len(arrays.test_y)}, spec.classes, counts


def describe(name: str, cache: str | Path | None = None) -> DatasetReport:
    """The :class:`DatasetReport` of dataset ``name`` (reads and verifies cached files; no
    download or generation). Decoding cached data takes up to a few seconds (CIFAR).

    Raises:
        UnknownNameError: for an unknown dataset name (lists the known ones).
    """
    spec = datasets.get(name)
    root = cache_dir(cache)
    files = spec.file_status(root)
    status = _overall(files)
    sizes, classes, counts = _sizes_and_counts(spec, root, spec.is_cached(root))
    directory = files[0].path.parent if files and not files[0].path.is_relative_to(root) else spec.directory(root)
    return DatasetReport(spec.name, spec.description, spec.kind, sizes, spec.shape, classes, counts, status,
                         directory, files, spec.source_labels)
