"""The dataset cache: where files live, atomic writes, checksums.

The cache directory is ``$OPTBENCH_DATA`` when set, else the platform's user cache
directory (``$XDG_CACHE_HOME/optbench`` or ``~/.cache/optbench`` on Linux and other
POSIX systems, ``~/Library/Caches/optbench`` on macOS, ``%LOCALAPPDATA%\\optbench`` on
Windows). Every dataset gets a subdirectory named after it.

Every write into the cache goes to a temporary file in the destination directory
that is then renamed over the target with :func:`os.replace` (atomic on POSIX and
Windows), so a process killed mid-write never leaves a half-written file under the
final name.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from optbench.core.errors import ConfigError
from optbench.core.fileio import atomic_writer  # noqa: F401  (re-exported for data modules)

ENV_VAR = "OPTBENCH_DATA"
_APP = "optbench"
_CHUNK = 1 << 20  # bytes read at a time when hashing a file


def _platform_cache_root() -> Path:
    """The user cache directory of this platform (without the ``optbench`` part)."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return Path(local) if local else Path.home() / "AppData" / "Local"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative paths are invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg)
    return Path.home() / ".cache"


def cache_dir(override: str | Path | None = None) -> Path:
    """The dataset cache directory, created on demand.

    Args:
        override: use this directory instead (e.g. a ``--data-dir`` option); ``~`` is
            expanded.

    Returns:
        ``override`` if given, else ``$OPTBENCH_DATA`` if set and non-empty, else the
        platform user cache (see the module docstring), as an absolute path that exists.

    Raises:
        ConfigError: when the directory cannot be created (names the path and how to
            choose another one).
    """
    if override is not None and str(override) != "":
        path, field = Path(override).expanduser(), "data directory"
    elif os.environ.get(ENV_VAR):
        path, field = Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"
    else:
        path, field = _platform_cache_root() / _APP, "cache directory"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(field, str(path),
                          f"a writable directory ({exc.strerror or exc}); set ${ENV_VAR} to choose one") from exc
    return path.resolve()


def atomic_write_bytes(path: Path, data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`); returns ``path``."""
    with atomic_writer(path) as handle:
        handle.write(data)
    return path


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    """Hex sha256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 digest of the file at ``path``, read in 1 MiB chunks.

    Raises:
        OSError: when the file cannot be read.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
