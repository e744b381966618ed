"""Datasets: sources, download with checksum, cache, loaders of standard formats.

Public API::

    cache_dir(override=None) -> Path
    read_idx(data) -> np.ndarray;  write_idx(array) -> bytes
    Arrays, DatasetInfo, DatasetSpec, datasets (Registry of DatasetSpec)
    list_datasets() -> list[DatasetInfo]
    is_cached(name, cache=None) -> bool
    fetch(name, cache=None, *, log=None) -> Path
    load_arrays(name, cache=None, *, log=None) -> Arrays
    TextCorpus, load_text(name, cache=None, *, log=None) -> TextCorpus   (shakespeare, brown)
    corpus_from_text(name, train, valid, test, level="char", *, min_count=1) -> TextCorpus
    describe(name, cache=None) -> DatasetReport   (what `optbench data info` shows)

Sources (for custom datasets and tests): FileSpec, UrlSource, NpmSource, DebianSource,
PipSource, FunctionSource, fetch_files. Dataset types: IdxDataset, DigitsDataset,
Mnist1dDataset, CifarDataset (``optbench.data.cifar``), TextDataset (``optbench.data.text``).
"""

from __future__ import annotations

from optbench.data.cache import cache_dir
from optbench.data.cifar import CifarDataset
from optbench.data.datasets import (
    Arrays,
    DatasetInfo,
    DatasetSpec,
    DigitsDataset,
    FileStatus,
    IdxDataset,
    Mnist1dDataset,
    datasets,
    fetch,
    is_cached,
    list_datasets,
    load_arrays,
)
from optbench.data.idx import read_idx, write_idx
from optbench.data.info import DatasetReport, describe
from optbench.data.sources import (
    DebianSource,
    FetchContext,
    FileSpec,
    FunctionSource,
    NpmSource,
    Source,
    SourceError,
    UrlSource,
    fetch_files,
)
from optbench.data.text import PipSource, TextCorpus, TextDataset, corpus_from_text, load_text

__all__ = [
    "Arrays", "CifarDataset", "DatasetInfo", "DatasetReport", "DatasetSpec", "DebianSource", "DigitsDataset",
    "FetchContext", "FileSpec", "FileStatus", "FunctionSource", "IdxDataset", "Mnist1dDataset", "NpmSource",
    "PipSource", "Source", "SourceError", "TextCorpus", "TextDataset", "UrlSource", "cache_dir",
    "corpus_from_text", "datasets", "describe", "fetch", "fetch_files", "is_cached", "list_datasets",
    "load_arrays", "load_text", "read_idx", "write_idx",
]
