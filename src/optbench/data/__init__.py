"""Datasets: sources, download with checksum, cache, loaders of standard formats.

Public API::

    cache_dir(override=None) -> Path
    read_idx(data) -> np.ndarray;  write_idx(array) -> bytes
    Arrays, DatasetInfo, DatasetSpec, datasets (Registry of DatasetSpec)
    list_datasets() -> list[DatasetInfo]
    is_cached(name, cache=None) -> bool
    fetch(name, cache=None, *, log=None) -> Path
    load_arrays(name, cache=None, *, log=None) -> Arrays

Sources (for custom datasets and tests): FileSpec, UrlSource, NpmSource, DebianSource,
FunctionSource, fetch_files. See DESIGN.md section 4.
"""

from __future__ import annotations

from optbench.data.cache import cache_dir
from optbench.data.datasets import (
    Arrays, DatasetInfo, DatasetSpec, DigitsDataset, IdxDataset, Mnist1dDataset, datasets, fetch,
    is_cached, list_datasets, load_arrays,
)
from optbench.data.idx import read_idx, write_idx
from optbench.data.sources import (
    DebianSource, FetchContext, FileSpec, FunctionSource, NpmSource, Source, SourceError, UrlSource,
    fetch_files,
)

__all__ = [
    "Arrays", "DatasetInfo", "DatasetSpec", "DebianSource", "DigitsDataset", "FetchContext", "FileSpec",
    "FunctionSource", "IdxDataset", "Mnist1dDataset", "NpmSource", "Source", "SourceError", "UrlSource",
    "cache_dir", "datasets", "fetch", "fetch_files", "is_cached", "list_datasets", "load_arrays",
    "read_idx", "write_idx",
]
