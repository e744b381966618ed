"""Reader and writer of the IDX format (the file format of MNIST and Fashion-MNIST).

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number
``0x00 0x00 TT ND`` where ``TT`` is the element type and ``ND`` the number of
dimensions, then ``ND`` dimension sizes as big-endian uint32, then the elements in C
order, big-endian. Element types: ``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16,
``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64.

Gzip-compressed input (the ``*-ubyte.gz`` files of the mirrors) is detected by its
magic bytes ``1f 8b`` and decompressed transparently.
"""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np

# IDX type code -> big-endian numpy dtype of the stored elements.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()
}
_GZIP_MAGIC = b"\x1f\x8b"


def gunzip_if_needed(data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    """``data`` decompressed when it starts with the gzip magic ``1f 8b``, else unchanged.

    Raises:
        ValueError: when the gzip stream is corrupt or truncated.
    """
    if bytes(data[:2]) != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"corrupt or truncated gzip data ({type(exc).__name__}: {exc})") from exc


def read_idx(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Decode IDX bytes (optionally gzip-compressed) into a numpy array.

    Args:
        data: the whole file's content.

    Returns:
        A writable, native-endian array with the file's dimensions, e.g. ``(60000, 28, 28)``
        uint8 for MNIST training images, ``(60000,)`` uint8 for its labels.

    Raises:
        ValueError: for a bad magic number, an unknown type code, a truncated header or
            body, trailing bytes, or corrupt gzip data; the message says which.
    """
    data = gunzip_if_needed(data)
    size = len(data)
    if size < 4:
        raise ValueError(f"not an IDX file: {size} bytes, need at least the 4-byte magic number")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise ValueError(f"not an IDX file: magic number 0x{bytes(data[:4]).hex()} does not start "
                         f"with 0x0000 (expected 0x0000TTDD, e.g. 0x00000803 for MNIST images)")
    if code not in _CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02X}" for c in _CODE_TO_DTYPE)
        raise ValueError(f"unsupported IDX element type 0x{code:02X}; known: {known}")
    header = 4 + 4 * ndim
    if size < header:
        raise ValueError(f"truncated IDX header: {ndim} dimensions need {header} bytes, got {size}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _CODE_TO_DTYPE[code]
    count = int(np.prod(dims, dtype=np.int64))
    expected = header + count * dtype.itemsize
    if size < expected:
        raise ValueError(f"truncated IDX file: dims {dims} of {dtype.name} need {expected} bytes, got {size}")
    if size > expected:
        raise ValueError(f"IDX file has {size - expected} unexpected trailing bytes after dims {dims}")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=header)
    return flat.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def write_idx(array: np.ndarray) -> bytes:
    """Encode ``array`` in the IDX format (uncompressed).

    Args:
        array: 1 to 255 dimensions, each < 2**32, of dtype uint8, int8, int16, int32,
            float32 or float64 (any byte order).

    Returns:
        The file's bytes; :func:`read_idx` of them gives back an equal array.

    Raises:
        ValueError: for an unsupported dtype or number/size of dimensions.
    """
    array = np.asarray(array)
    code = _KIND_TO_CODE.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(f"IDX cannot store dtype {array.dtype}; "
                         "allowed: uint8, int8, int16, int32, float32, float64")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX dimensions must be < 2**32, got {array.shape}")
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    return header + body
