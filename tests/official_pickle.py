"""Write tiny network pickles in the official StyleGAN (v1) format, for tests.

The official files pickle ``dnnlib.tflib.network.Network`` objects whose state is a dict
(version, name, static_kwargs, components, build_module_src, build_func_name,
variables). Here a stand-in class is written under that module and class name with the
same state, so the bytes have the official structure without the official code. Arrays
can be written under numpy 1 global names (``numpy.core.multiarray``, as in the released
files) or numpy 2 names (``numpy._core.multiarray``), with protocol 4 (STACK_GLOBAL) as
the originals.

The variable names and layouts come from babygan's own ``legacy.official_name_table``, so a
round trip through these files cannot catch a wrong mapping: tests/test_stylegan_parity.py
judges that against the NVlabs-written reference in ../shared/reference.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from babygan.stylegan import Generator
from babygan.stylegan.legacy import official_name_table

try:
    from numpy._core import multiarray as _ma
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _ma  # type: ignore[no-redef]


class Network:
    """Pickles like dnnlib.tflib.network.Network (see save_global below); holds the state dict."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def __getstate__(self) -> dict[str, Any]:
        return self._state


def network(
    name: str,
    build_func_name: str,
    static_kwargs: dict[str, Any],
    variables: list[tuple[str, Any]],
    components: dict[str, Network] | None = None,
) -> Network:
    return Network(
        {
            "version": 3,
            "name": name,
            "static_kwargs": dict(static_kwargs),
            "components": dict(components or {}),
            "build_module_src": "raise RuntimeError('build_module_src must never run')\n",
            "build_func_name": build_func_name,
            "variables": list(variables),
        }
    )


class _OfficialPickler(pickle._Pickler):  # the pure-Python pickler lets us choose global names
    def __init__(self, file: io.BytesIO, numpy_names: int) -> None:
        super().__init__(file, protocol=4)
        self.numpy_module = "numpy.core.multiarray" if numpy_names == 1 else "numpy._core.multiarray"

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is Network:
            module, qualname = "dnnlib.tflib.network", "Network"
        elif obj is _ma._reconstruct:
            module, qualname = self.numpy_module, "_reconstruct"
        elif obj is _ma.scalar:
            module, qualname = self.numpy_module, "scalar"
        else:
            return super().save_global(obj, name)
        self.save(module)
        self.save(qualname)
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)


def dumps(obj: Any, numpy_names: int = 1) -> bytes:
    buf = io.BytesIO()
    _OfficialPickler(buf, numpy_names).dump(obj)
    return buf.getvalue()


def official_gs(G: Generator, *, seed: int = 1, extra_kwargs: dict[str, Any] | None = None) -> Network:
    """Gs of the official structure holding G's weights (official names, NCHW layouts).

    The unused ToRGB_lod1.. layers get random values; ``lod`` is a numpy float32 0, as in
    the real files.
    """
    c = G.config
    kwargs = {
        "num_channels": c.num_channels,
        "resolution": c.resolution,
        "fmap_base": c.fmap_base,
        "fmap_max": c.fmap_max,
        "latent_size": c.latent_size,
        "dlatent_size": c.dlatent_size,
        "mapping_layers": c.mapping_layers,
        "mapping_fmaps": c.mapping_fmaps,
        **(extra_kwargs or {}),
    }
    rng = np.random.default_rng(seed)
    groups: dict[str, list[tuple[str, Any]]] = {"Gs": [], "mapping": [], "synthesis": []}
    for official, (ours, _transform) in official_name_table(c).items():
        prefix, name = official.split("/", 1)
        if name == "lod":
            value: Any = np.float32(0.0)
        elif ours is None:  # unused lower-resolution ToRGB
            res_log2 = c.resolution_log2 - int(name.split("/")[0][len("ToRGB_lod") :])
            ch = c.nf(res_log2 - 1)
            shape = (1, 1, ch, c.num_channels) if name.endswith("weight") else (c.num_channels,)
            value = rng.standard_normal(shape).astype(np.float32)
        else:
            value = G.params[ours]
            if ours == "synthesis.const" or ours.endswith(".noise"):
                value = value.transpose(0, 3, 1, 2)  # NHWC -> official NCHW
            value = np.ascontiguousarray(value, dtype=np.float32)
        groups[prefix].append((name, value))
    synthesis = network("G_synthesis", "G_synthesis", kwargs, groups["synthesis"])
    mapping = network(
        "G_mapping", "G_mapping", {"dlatent_broadcast": c.num_layers, **kwargs}, groups["mapping"]
    )
    return network("Gs", "G_style", kwargs, groups["Gs"], {"mapping": mapping, "synthesis": synthesis})


def tiny_discriminator() -> Network:
    rng = np.random.default_rng(0)
    variables = [
        ("lod", np.float32(0.0)),
        ("FromRGB_lod0/weight", rng.standard_normal((1, 1, 3, 4)).astype(np.float32)),
        ("FromRGB_lod0/bias", np.zeros(4, np.float32)),
    ]
    return network("D", "D_basic", {"num_channels": 3, "resolution": 8}, variables)


def write_official_pickle(
    path: str | Path,
    G: Generator,
    *,
    form: str = "tuple",
    numpy_names: int = 1,
    gs: Network | None = None,
) -> Path:
    """Write G as an official-format pickle: ``form`` "tuple" = (G, D, Gs), "gs" = lone Gs."""
    gs = gs if gs is not None else official_gs(G)
    obj: Any = (gs, tiny_discriminator(), gs) if form == "tuple" else gs
    path = Path(path)
    path.write_bytes(dumps(obj, numpy_names))
    return path


# ------------------------------------------------------------------ malicious payloads


def global_payload(module: str, name: str, args: tuple[Any, ...], protocol: int = 0) -> bytes:
    """A pickle calling module.name(*args) through GLOBAL + REDUCE (protocol 0 text opcodes)."""
    out = io.BytesIO()
    if protocol >= 2:
        out.write(pickle.PROTO + bytes([protocol]))
    out.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
    out.write(pickle.MARK)
    for a in args:
        out.write(_save(a, protocol=2)[2:-1])  # the argument's opcodes without PROTO/STOP
    out.write(pickle.TUPLE + pickle.REDUCE + pickle.STOP)
    return out.getvalue()


def stack_global_payload(module: str, name: str, args: tuple[Any, ...]) -> bytes:
    """The same through STACK_GLOBAL (protocol 4), as an official file would name a class."""
    body = io.BytesIO()
    body.write(pickle.PROTO + b"\x04")
    for s in (module, name):
        data = s.encode()
        body.write(pickle.SHORT_BINUNICODE + bytes([len(data)]) + data)
    body.write(pickle.STACK_GLOBAL)
    body.write(pickle.MARK)
    for a in args:
        body.write(_save(a, protocol=4)[2:-1])
    body.write(pickle.TUPLE + pickle.REDUCE + pickle.STOP)
    return body.getvalue()


def _save(obj: Any, protocol: int) -> bytes:
    # plain data (str, list, tuple) only: no frames for such small objects
    return pickle.dumps(obj, protocol=protocol)


def nested_payload(G: Generator, module: str, name: str, args: tuple[Any, ...]) -> bytes:
    """A well-formed official-looking (G, D, Gs) whose variables include a REDUCE of module.name."""

    class _Call:
        def __reduce__(self) -> tuple[Any, ...]:
            return (_Marker, args)

    class _Pickler(_OfficialPickler):
        def save_global(self, obj: Any, name_: str | None = None) -> None:
            if obj is _Marker:
                self.save(module)
                self.save(name)
                self.write(pickle.STACK_GLOBAL)
                self.memoize(obj)
                return
            super().save_global(obj, name_)

    gs = official_gs(G)
    gs._state["variables"].append(("evil", _Call()))
    buf = io.BytesIO()
    _Pickler(buf, 1).dump((gs, tiny_discriminator(), gs))
    return buf.getvalue()


class _Marker:
    """Stands for the dangerous callable while pickling (a class, so save_global is consulted)."""

    def __init__(self, *args: Any) -> None:
        raise AssertionError("never called")
