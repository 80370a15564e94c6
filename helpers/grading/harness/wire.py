"""The harness's wire format: frames of a JSON header plus raw buffers, carrying data only.

Nothing here can run code when decoding: values are JSON scalars, lists, tuples, dicts, NumPy
arrays of numeric or bool dtype and torch tensors (bytes plus dtype and shape). Any other object
stays on its side and is named by a handle. The decoder refuses unknown tags, object dtypes,
deep nesting and frames over the size cap, so a hostile worker can only send wrong data.
"""
from __future__ import annotations

import json
import math
import struct

import numpy as np

MAX_FRAME_BYTES = 256 << 20  # the biggest test input is ~75 MB
# Tensor dtypes that hold plain numbers (no quantized or bit-packed ones: torch cannot use those safely).
TENSOR_DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32",
                 "float64", "complex64", "complex128")
MAX_HEADER_BYTES = 16 << 20
MAX_DEPTH = 32
HEADER = struct.Struct(">II")  # header length, number of buffers
NUMPY_KINDS = "biufc"  # bool, signed, unsigned, float, complex


class ProtocolError(ValueError):
    """A frame or value that breaks the format (a bug or a hostile peer); the message says which rule."""


class Handle:
    """A name for an object that stays on the other side (a model, a function, an optimizer)."""

    def __init__(self, ref: int, type_name: str = ""):
        self.ref, self.type_name = int(ref), str(type_name)

    def __repr__(self) -> str:
        return f"<remote {self.type_name or 'object'} #{self.ref}>"


def _torch():
    import torch
    return torch


def _is_tensor(value) -> bool:
    torch = __import__("sys").modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


class Encoder:
    """Turns a value into JSON plus buffers; `to_handle(obj) -> Handle` names what is not data."""

    def __init__(self, to_handle=None):
        self.buffers: list[bytes] = []
        self.to_handle = to_handle

    def _buffer(self, data: bytes) -> int:
        self.buffers.append(data)
        return len(self.buffers) - 1

    def encode(self, value, depth: int = 0):
        if depth > MAX_DEPTH:
            raise ProtocolError(f"value nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, np.ndarray) or isinstance(value, np.generic):
            arr = np.asarray(value)
            if arr.dtype.kind not in NUMPY_KINDS:
                return self._handle(value)
            return {"$nd": {"dtype": arr.dtype.str, "shape": list(arr.shape), "buf": self._buffer(
                np.ascontiguousarray(arr).tobytes()), "scalar": isinstance(value, np.generic)}}
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return value if type(value) is int else int(value)
        if isinstance(value, float):
            return value if math.isfinite(value) else {"$f": repr(float(value))}
        if isinstance(value, Handle):
            return {"$ref": value.ref}
        if _is_tensor(value):
            torch = _torch()
            t = value.detach()
            if t.layout != torch.strided or str(t.dtype).removeprefix("torch.") not in TENSOR_DTYPES:
                return self._handle(value)
            flat = t.cpu().contiguous().reshape(-1)
            raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
            return {"$tensor": {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape),
                                "buf": self._buffer(raw), "requires_grad": bool(value.requires_grad),
                                "device": str(value.device)}}
        torch = __import__("sys").modules.get("torch")
        if torch is not None and isinstance(value, torch.dtype):
            return {"$dtype": str(value).removeprefix("torch.")}
        if torch is not None and isinstance(value, torch.device):
            return {"$device": str(value)}
        if torch is not None and isinstance(value, torch.Size):
            return {"$tuple": [int(v) for v in value]}
        if type(value) in (list, tuple):
            items = [self.encode(v, depth + 1) for v in value]
            return {"$list": items} if type(value) is list else {"$tuple": items}
        if isinstance(value, dict) and all(type(k) in (str, int) for k in value):
            return {"$dict": [[k, self.encode(v, depth + 1)] for k, v in value.items()]}
        return self._handle(value)

    def _handle(self, value):
        if self.to_handle is None:
            raise ProtocolError(f"cannot send a {type(value).__name__} across the boundary; send data or a handle")
        handle = self.to_handle(value)
        return {"$handle": handle.ref, "type": handle.type_name}


class Decoder:
    """The inverse of Encoder, strict: only the tags above; `from_ref(int)` resolves a `$ref`."""

    def __init__(self, buffers: list[bytes], from_ref=None):
        self.buffers, self.from_ref = buffers, from_ref
        self.used: set[int] = set()

    def _buf(self, index) -> bytes:
        """Each buffer backs one value at most, so a frame decodes to no more memory than it holds."""
        if type(index) is not int or not 0 <= index < len(self.buffers):
            raise ProtocolError(f"buffer index {index!r} out of range")
        if index in self.used:
            raise ProtocolError(f"buffer {index} is used twice")
        self.used.add(index)
        return self.buffers[index]

    def decode(self, obj, depth: int = 0):
        if depth > MAX_DEPTH:
            raise ProtocolError(f"value nested deeper than {MAX_DEPTH} levels")
        if obj is None or type(obj) in (bool, int, float, str):
            return obj
        if type(obj) is not dict or len(obj) == 0:
            raise ProtocolError(f"unexpected {type(obj).__name__} in a value")
        tag = next(iter(obj))
        body = obj[tag]
        if tag == "$f" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag in ("$list", "$tuple") and type(body) is list:
            items = [self.decode(v, depth + 1) for v in body]
            return items if tag == "$list" else tuple(items)
        if tag == "$dict" and type(body) is list:
            out = {}
            for pair in body:
                if type(pair) is not list or len(pair) != 2 or type(pair[0]) not in (str, int):
                    raise ProtocolError("a dict entry must be [str or int key, value]")
                out[pair[0]] = self.decode(pair[1], depth + 1)
            return out
        if tag == "$nd" and type(body) is dict:
            return self._array(body)
        if tag == "$tensor" and type(body) is dict:
            return self._tensor(body)
        if tag == "$dtype" and type(body) is str:
            return _torch_dtype(body)
        if tag == "$device" and type(body) is str:
            return _torch().device(body.split(":")[0] if body.startswith("cuda") and not _torch().cuda.is_available()
                                   else body)
        if tag == "$handle" and type(body) is int:
            return Handle(body, str(obj.get("type", ""))[:200])
        if tag == "$ref" and type(body) is int and self.from_ref is not None:
            return self.from_ref(body)
        raise ProtocolError(f"unknown or malformed tag {str(tag)[:40]!r}")

    def _array(self, body: dict):
        dtype = _numpy_dtype(body.get("dtype"))
        shape = _shape(body.get("shape"))
        raw = self._buf(body.get("buf"))
        count = math.prod(shape)
        if count * dtype.itemsize != len(raw):
            raise ProtocolError(f"array of shape {shape} {dtype} needs {count * dtype.itemsize} bytes, got {len(raw)}")
        arr = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        return arr[()] if body.get("scalar") is True and arr.ndim == 0 else arr

    def _tensor(self, body: dict):
        torch = _torch()
        dtype = _torch_dtype(body.get("dtype"))
        shape = _shape(body.get("shape"))
        raw = self._buf(body.get("buf"))
        itemsize = torch.empty((), dtype=dtype).element_size()
        count = math.prod(shape)
        if count * itemsize != len(raw):
            raise ProtocolError(f"tensor of shape {shape} {dtype} needs {count * itemsize} bytes, got {len(raw)}")
        t = torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape) if count else torch.empty(shape, dtype=dtype)
        if body.get("requires_grad") is True and (t.is_floating_point() or t.is_complex()):
            t.requires_grad_(True)
        return t


def _shape(shape) -> tuple:
    if type(shape) is not list or len(shape) > 16 or any(type(s) is not int or s < 0 for s in shape):
        raise ProtocolError(f"bad shape {str(shape)[:80]}")
    return tuple(shape)


def _numpy_dtype(text):
    if type(text) is not str or len(text) > 8:
        raise ProtocolError("bad dtype")
    try:
        dtype = np.dtype(text)
    except TypeError as exc:
        raise ProtocolError(f"bad dtype {text!r}") from exc
    if dtype.kind not in NUMPY_KINDS or dtype.hasobject or dtype.fields:
        raise ProtocolError(f"dtype {text!r} is not allowed (numeric and bool only)")
    return dtype


def _torch_dtype(text):
    torch = _torch()
    dtype = getattr(torch, text, None) if text in TENSOR_DTYPES else None
    if not isinstance(dtype, torch.dtype):
        raise ProtocolError(f"bad torch dtype {str(text)[:40]!r}")
    return dtype


# ----------------------------------------------------------------------------- frames

def pack(header: dict, buffers: list[bytes]) -> bytes:
    """One frame: lengths, the JSON header (with the buffer sizes), then the buffers."""
    header = dict(header, sizes=[len(b) for b in buffers])
    text = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
    return b"".join([HEADER.pack(len(text), len(buffers)), text, *buffers])


def read_exact(stream, n: int) -> bytes:
    """n bytes into one preallocated buffer (no second copy while joining)."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        chunk = stream.read(min(n - got, 1 << 24))
        if not chunk:
            raise EOFError("the other side closed the connection")
        view[got:got + len(chunk)] = chunk
        got += len(chunk)
    return bytes(buf) if n < 1 << 20 else buf


def read_frame(stream, max_bytes: int = MAX_FRAME_BYTES) -> tuple[dict, list[bytes]]:
    """(header, buffers) of the next frame; ProtocolError when it breaks a size rule or is not JSON."""
    size, count = HEADER.unpack(read_exact(stream, HEADER.size))
    if size > MAX_HEADER_BYTES or count > 100_000:
        raise ProtocolError(f"frame header of {size} bytes with {count} buffers is over the limit")
    try:
        header = json.loads(bytes(read_exact(stream, size)))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise ProtocolError(f"frame header is not JSON: {str(exc)[:200]}") from None
    sizes = header.get("sizes") if isinstance(header, dict) else None
    if type(sizes) is not list or len(sizes) != count or any(type(s) is not int or s < 0 for s in sizes):
        raise ProtocolError("frame header lacks valid buffer sizes")
    if sum(sizes) > max_bytes:
        raise ProtocolError(f"frame of {sum(sizes)} bytes is over the {max_bytes}-byte limit")
    return header, [read_exact(stream, s) for s in sizes]
