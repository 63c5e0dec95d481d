"""A reader of dlib's face recognition ResNet file (dlib_face_recognition_resnet_model_v1.dat).

The file is dlib's own ``serialize`` of its ``anet_type`` network (dlib's
dnn_face_recognition_ex.cpp). Facts of the format, from dlib/serialize.h, dlib/dnn/core.h,
layers.h, input.h, loss.h and dlib/cuda/tensor.h:

- an integer is one byte (bit 7: negative, bits 0-3: how many bytes follow) then its
  magnitude, little-endian; a bool is the character '0' or '1'; a string is its length
  (an integer) then its bytes; a scalar float is two integers, mantissa and exponent
  (value = mantissa * 2**exponent);
- a tensor is version 2, four integers (N, K, rows, cols), then N*K*rows*cols
  little-endian IEEE float32 values; an alias tensor is version 1 and four integers;
- layers nest from the outside in: each wrapper writes its version and then its subnetwork
  before its own details, so the file holds every wrapper's version (outermost first),
  then the input layer, then each layer's details from the innermost out.

Only the exact network dlib ships is accepted: every layer's type, size and stride and
every tensor's shape are checked; anything else is refused with one line naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from babygan.errors import ModelFileError

#: (filters, stride of the first 3x3 convolution) of each residual unit, input to output
UNITS: tuple[tuple[int, int], ...] = (
    ((32, 1),) * 3
    + ((64, 2),)
    + ((64, 1),) * 3
    + ((128, 2),)
    + ((128, 1),) * 2
    + ((256, 2),)
    + ((256, 1),) * 2
    + ((256, 2),)
)
CHIP_SIZE = 150
DESCRIPTOR_SIZE = 128
STEM_FILTERS = 32


@dataclass(frozen=True)
class _Item:
    """One wrapper of the nested network, outermost first: a layer (with its expected details) or a tag."""

    kind: str  # "con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc", "tag", "skip"
    name: str = ""  # where a layer with parameters stores them
    filters: int = 0
    size: int = 0
    stride: int = 1


def expected_chain() -> list[_Item]:
    """The wrappers of dlib's anet_type from the loss inwards (the stem's convolution last)."""
    chain = [_Item("fc", "fc"), _Item("avg_pool", size=0, stride=1)]
    for i in reversed(range(len(UNITS))):
        n, stride = UNITS[i]
        p = f"unit{i}"
        chain.append(_Item("relu"))
        chain.append(_Item("add_prev"))
        if stride == 2:
            chain += [_Item("avg_pool", size=2, stride=2), _Item("skip"), _Item("tag")]
        chain += [
            _Item("affine", f"{p}.affine_b"),
            _Item("con", f"{p}.conv_b", n, 3, 1),
            _Item("relu"),
            _Item("affine", f"{p}.affine_a"),
            _Item("con", f"{p}.conv_a", n, 3, stride),
            _Item("tag"),
        ]
    chain += [
        _Item("max_pool", size=3, stride=2),
        _Item("relu"),
        _Item("affine", "stem.affine"),
        _Item("con", "stem.conv", STEM_FILTERS, 7, 2),
    ]
    return chain


class _Bytes:
    """A cursor over the file's bytes; every problem becomes a ModelFileError naming the file."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path, self.data, self.pos = path, data, 0

    def fail(self, what: str) -> ModelFileError:
        return ModelFileError(
            f"{self.path}: not dlib's face recognition ResNet v1 ({what}, at byte {self.pos})"
        )

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail("the file ends early")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int_(self, signed: bool = True) -> int:
        head = self.take(1)[0]
        size = head & 0x0F
        if size == 0 or size > 8 or head & 0x70 or (head & 0x80 and not signed):
            raise self.fail(f"a malformed integer (byte {head:#04x})")
        value = int.from_bytes(self.take(size), "little")
        return -value if head & 0x80 else value

    def version(self, allowed: tuple[int, ...], what: str) -> int:
        v = self.int_()
        if v not in allowed:
            raise self.fail(f"{what} version {v}, expected {' or '.join(map(str, allowed))}")
        return v

    def bool_(self) -> bool:
        ch = self.take(1)
        if ch not in (b"0", b"1"):
            raise self.fail(f"a malformed bool {ch!r}")
        return ch == b"1"

    def string(self) -> str:
        n = self.int_(signed=False)
        if n > 64:
            raise self.fail(f"a string of {n} bytes where a layer name was expected")
        try:
            return self.take(n).decode("ascii")
        except UnicodeDecodeError as exc:
            raise self.fail("a name that is not ASCII") from exc

    def expect_string(self, allowed: tuple[str, ...], what: str) -> str:
        s = self.string()
        if s not in allowed:
            raise self.fail(f"found {s!r} where {what} was expected")
        return s

    def float_(self) -> float:
        mantissa, exponent = self.int_(), self.int_()
        if exponent >= 32000:  # dlib's codes for infinities and NaN
            raise self.fail("a non-finite scalar")
        return float(np.ldexp(float(mantissa), exponent))

    def tensor(self, what: str) -> np.ndarray:
        """A tensor: float32 of shape (N, K, rows, cols) (empty shapes allowed)."""
        self.version((2,), f"{what} tensor")
        shape = tuple(self.int_() for _ in range(4))
        if any(s < 0 for s in shape):
            raise self.fail(f"{what} has a negative size {shape}")
        count = int(np.prod(shape))
        raw = self.take(4 * count)
        return np.frombuffer(raw, "<f4").astype(np.float32).reshape(shape)

    def alias(self, what: str) -> tuple[int, ...]:
        self.version((1,), f"{what} alias tensor")
        return tuple(self.int_() for _ in range(4))


def _check(b: _Bytes, ok: bool, what: str) -> None:
    if not ok:
        raise b.fail(what)


def _read_con(b: _Bytes, item: _Item, in_channels: int, out: dict[str, np.ndarray]) -> None:
    version = b.expect_string(("con_4", "con_5", "con_6"), f"{item.name}'s convolution")
    params = b.tensor(item.name)
    num_filters = b.int_()
    nr, nc, sy, sx, py, px = (b.int_() for _ in range(6))
    pad = 0 if item.stride != 1 else item.size // 2
    _check(
        b,
        (num_filters, nr, nc, sy, sx, py, px)
        == (item.filters, item.size, item.size, item.stride, item.stride, pad, pad),
        f"{item.name} is a {num_filters}-filter {nr}x{nc} convolution, stride {sy}, padding {py}; expected "
        f"{item.filters} filters {item.size}x{item.size}, stride {item.stride}, padding {pad}",
    )
    shape = (item.filters, in_channels, item.size, item.size)
    _check(b, b.alias(f"{item.name} filters") == shape, f"{item.name}'s filters are not {shape}")
    _check(b, b.alias(f"{item.name} biases") == (1, item.filters, 1, 1), f"{item.name}'s biases")
    for _ in range(4):  # learning-rate and weight-decay multipliers
        b.float_()
    use_bias = b.bool_() if version in ("con_5", "con_6") else True
    if version == "con_6":
        _check(b, not b.bool_(), f"{item.name} has a fused ReLU")
    n_w = int(np.prod(shape))
    _check(b, use_bias and params.size == n_w + item.filters, f"{item.name} holds {params.size} parameters")
    flat = params.reshape(-1)
    # dlib's (O, I, kh, kw) cross-correlation kernel -> Keras' (kh, kw, I, O)
    out[f"{item.name}.weight"] = np.ascontiguousarray(flat[:n_w].reshape(shape).transpose(2, 3, 1, 0))
    out[f"{item.name}.bias"] = np.ascontiguousarray(flat[n_w:])


def _read_affine(b: _Bytes, item: _Item, channels: int, out: dict[str, np.ndarray]) -> None:
    version = b.expect_string(("affine_", "affine_2"), f"{item.name}'s affine (inference batch-norm)")
    params = b.tensor(item.name)
    _check(b, b.alias(f"{item.name} gamma") == (1, channels, 1, 1), f"{item.name}'s gamma")
    _check(b, b.alias(f"{item.name} beta") == (1, channels, 1, 1), f"{item.name}'s beta")
    _check(b, b.int_() == 0, f"{item.name} is not per-channel (dlib's CONV_MODE)")
    if version == "affine_2":
        _check(b, not b.bool_(), f"{item.name} is disabled")
    _check(b, params.size == 2 * channels, f"{item.name} holds {params.size} parameters")
    flat = params.reshape(-1)
    out[f"{item.name}.gamma"] = np.ascontiguousarray(flat[:channels])
    out[f"{item.name}.beta"] = np.ascontiguousarray(flat[channels:])


def _read_pool(b: _Bytes, item: _Item, kind: str) -> None:
    b.expect_string((f"{kind}_2",), kind)
    nr, nc, sy, sx, py, px = (b.int_() for _ in range(6))
    _check(
        b,
        (nr, nc, sy, sx, py, px) == (item.size, item.size, item.stride, item.stride, 0, 0),
        f"a {nr}x{nc} {kind} of stride {sy} where {item.size}x{item.size} stride {item.stride} was expected",
    )


def _read_fc(b: _Bytes, in_features: int, out: dict[str, np.ndarray]) -> None:
    version = b.expect_string(("fc_2", "fc_3"), "the final fully connected layer")
    n_out, n_in = b.int_(signed=False), b.int_(signed=False)
    _check(b, (n_out, n_in) == (DESCRIPTOR_SIZE, in_features), f"fc is {n_in} -> {n_out}")
    params = b.tensor("fc")
    _check(b, b.alias("fc weights") == (n_in, n_out, 1, 1), "fc's weights")
    b.alias("fc biases")
    _check(b, b.int_() == 1, "fc has a bias (expected dlib's fc_no_bias)")
    for _ in range(4):
        b.float_()
    if version == "fc_3":
        b.bool_()
    _check(b, params.size == n_in * n_out, f"fc holds {params.size} parameters")
    out["fc.weight"] = np.ascontiguousarray(params.reshape(n_in, n_out))  # (256, 128): x @ W


def _read_layer_details(b: _Bytes, item: _Item, channels: int, out: dict[str, np.ndarray]) -> int:
    """One layer's details; returns the channels of its output."""
    if item.kind == "con":
        _read_con(b, item, channels, out)
        return item.filters
    if item.kind == "affine":
        _read_affine(b, item, channels, out)
    elif item.kind == "relu":
        if b.expect_string(("relu_", "relu_2"), "a ReLU") == "relu_2":
            _check(b, not b.bool_(), "a disabled ReLU")
    elif item.kind in ("max_pool", "avg_pool"):
        _read_pool(b, item, item.kind)
    elif item.kind == "add_prev":
        b.expect_string(("add_prev_",), "add_prev")
    elif item.kind == "fc":
        _read_fc(b, channels, out)
        return DESCRIPTOR_SIZE
    return channels


def _layer_tail(b: _Bytes, version: int, what: str) -> None:
    """add_layer's training state after the details: 3 bools and 2-3 tensors (dropped)."""
    for _ in range(3):
        b.bool_()
    for _ in range(3 if version >= 2 else 2):
        b.tensor(what)


@dataclass(frozen=True)
class DlibResNet:
    """The parameters of dlib's face descriptor ResNet, as named numpy float32 arrays.

    ``params``: ``stem.conv.weight`` (7, 7, 3, 32), ``stem.conv.bias`` (32,),
    ``stem.affine.gamma`` / ``.beta`` (32,), then for each residual unit ``unit{i}``
    (i = 0..13, input to output, see UNITS) ``conv_a`` / ``conv_b`` (3, 3, I, O) + bias and
    ``affine_a`` / ``affine_b`` gamma / beta; ``fc.weight`` (256, 128).
    ``mean_rgb``: the per-channel means the input layer subtracts before dividing by 256.
    """

    params: dict[str, np.ndarray]
    mean_rgb: tuple[float, float, float]


def read_dlib_resnet(path: str | os.PathLike[str]) -> DlibResNet:
    """Read and check dlib_face_recognition_resnet_model_v1.dat; a one-line ModelFileError otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the face descriptor network ({exc.strerror})") from exc
    b = _Bytes(path, data)
    b.version((1,), "loss layer")
    if b.expect_string(("loss_metric_", "loss_metric_2"), "dlib's metric loss") == "loss_metric_2":
        b.float_(), b.float_()  # margin and distance threshold: training only
    chain = expected_chain()
    versions = []
    for item in chain[:-1]:
        wrapper = item.kind in ("tag", "skip")
        versions.append(b.version((1,) if wrapper else (1, 2), f"{item.kind} layer"))
    # the innermost add_layer holds the input layer
    stem_version = b.version((2, 3), "input layer")
    b.expect_string(("input_rgb_image_sized",), "dlib's sized RGB input")
    mean_rgb = (b.float_(), b.float_(), b.float_())
    size = (b.int_(signed=False), b.int_(signed=False))
    _check(b, size == (CHIP_SIZE, CHIP_SIZE), f"an input of {size} px (expected {CHIP_SIZE})")
    params: dict[str, np.ndarray] = {}
    channels = _read_layer_details(b, chain[-1], 3, params)
    for _ in range(3):
        b.bool_()
    for _ in range(3):
        b.tensor("stem")
    if stem_version == 3:
        b.int_(signed=False)
    # the rest, innermost out; channels follow the data (a skip resumes at its tag's)
    tagged: list[int] = []
    for item, version in zip(reversed(chain[:-1]), reversed(versions), strict=True):
        if item.kind == "tag":
            tagged.append(channels)
            continue
        if item.kind == "skip":
            channels = tagged[-2]  # skip1 resumes at the unit's input (tag1, before tag2)
            continue
        if item.kind == "add_prev":
            channels = max(channels, tagged[-1])
        channels = _read_layer_details(b, item, channels, params)
        _layer_tail(b, version, item.kind)
    if b.pos != len(data):
        raise b.fail(f"{len(data) - b.pos} bytes after the network")
    for key, arr in params.items():
        if not np.all(np.isfinite(arr)):
            raise b.fail(f"{key} holds NaN or infinite values")
    return DlibResNet(params, mean_rgb)
