"""Read official StyleGAN (v1) network pickles without running anything they carry.

An official ``.pkl`` holds ``dnnlib.tflib.network.Network`` objects whose state
includes the Python source of the network (``build_module_src``); the original
classes ``exec`` it when unpickled. Here a restricted unpickler turns ``Network``
into an inert record of its state and allows only the globals numpy needs to
rebuild arrays; any other global is refused when the pickle names it, before any
call is made. The records are then converted, by an explicit table of names, into
our parameter dict and a :class:`GeneratorConfig`.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from babygan.errors import ModelFileError, first_line
from babygan.stylegan.config import GeneratorConfig

try:  # numpy >= 2 (numpy.core is a deprecated alias there)
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]


class InertNetwork:
    """Stands in for ``dnnlib.tflib.network.Network``: keeps the pickled state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


# (module, name) -> what the unpickler hands back. Nothing else is ever imported.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("dnnlib.tflib.network", "Network"): InertNetwork,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
}


class _RefusedGlobal(Exception):
    def __init__(self, qualname: str) -> None:
        super().__init__(qualname)
        self.qualname = qualname


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"persistent id {pid!r} is not supported")


def safe_unpickle(path: str | Path) -> Any:
    """Unpickle ``path`` with the restricted unpickler; one-line ModelFileError on any problem.

    Any pickle protocol is read (so a payload in an old protocol is refused by name too).
    """
    path = Path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; streamed, not read whole
    except OSError as exc:
        raise ModelFileError(f"{path.name}: cannot read: {exc.strerror or exc}") from exc
    with f:
        head = f.read(1)
        if not head:
            raise ModelFileError(f"{path.name}: the file is empty")
        f.seek(0)
        try:
            return _SafeUnpickler(f).load()
        except _RefusedGlobal as exc:
            raise ModelFileError(
                f"{path.name}: refuses to load: the pickle references {exc.qualname}, which could run code"
            ) from None
        except RecursionError:
            raise ModelFileError(f"{path.name}: the pickle is corrupt (nested too deeply)") from None
        except Exception as exc:  # any other failure: not a pickle, truncated or corrupt
            if head != b"\x80":
                raise ModelFileError(f"{path.name}: not a network pickle (unknown file format)") from None
            msg = first_line(exc)
            if isinstance(exc, EOFError) or "truncated" in msg:
                raise ModelFileError(f"{path.name}: the pickle is truncated (the file ends early)") from None
            raise ModelFileError(f"{path.name}: the pickle is corrupt ({msg})") from None


# ---------------------------------------------------------------------- static kwargs


# Keys that map onto GeneratorConfig fields, with a converter.
_CONFIG_KEYS: dict[str, Callable[[Any], Any]] = {
    "resolution": int,
    "num_channels": int,
    "fmap_base": int,
    "fmap_decay": float,
    "fmap_max": int,
    "latent_size": int,
    "dlatent_size": int,
    "mapping_layers": int,
    "mapping_fmaps": int,
    "mapping_lrmul": float,
    "normalize_latents": bool,
    "use_noise": bool,
    "fused_scale": lambda v: v if v == "auto" else bool(v),
    "blur_filter": lambda v: None if v is None or len(v) == 0 else tuple(float(x) for x in v),
}
# Keys we implement only at one value (the official default, used by every released model).
_FIXED_KEYS: dict[str, Any] = {
    "label_size": 0,
    "use_styles": True,
    "const_input_layer": True,
    "nonlinearity": "lrelu",
    "mapping_nonlinearity": "lrelu",
    "use_wscale": True,
    "use_pixel_norm": False,
    "use_instance_norm": True,
    "dtype": "float32",
}
# Keys that only set defaults for run-time arguments we always pass explicitly, or
# matter only while training / building graphs: they do not change what we compute.
_IGNORED_KEYS = {
    "truncation_psi",
    "truncation_cutoff",
    "truncation_psi_val",
    "truncation_cutoff_val",
    "dlatent_avg_beta",
    "style_mixing_prob",
    "is_training",
    "is_validation",
    "is_template_graph",
    "force_clean_graph",
    "randomize_noise",
    "structure",
    "dlatent_broadcast",  # checked against num_layers below
}


def _state(obj: Any, what: str, fname: str) -> dict[str, Any]:
    if not isinstance(obj, InertNetwork) or not isinstance(obj.state, dict):
        raise ModelFileError(f"{fname}: this is not a StyleGAN v1 generator ({what} is not a dnnlib Network)")
    state = obj.state
    for key in ("version", "name", "static_kwargs", "components", "build_func_name", "variables"):
        if key not in state:
            raise ModelFileError(f"{fname}: the pickle is corrupt ({what} has no {key!r})")
    if state["version"] not in (2, 3, 4):
        raise ModelFileError(f"{fname}: unsupported dnnlib Network version {state['version']!r} in {what}")
    return state


def _variables(state: dict[str, Any], what: str, fname: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    try:
        items = list(state["variables"])
    except TypeError:
        raise ModelFileError(f"{fname}: the pickle is corrupt ({what} variables are not a list)") from None
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise ModelFileError(f"{fname}: the pickle is corrupt (a variable of {what} is malformed)")
        name, value = item
        if isinstance(value, np.floating):  # scalars such as lod are pickled as numpy scalars
            value = np.asarray(value)
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise ModelFileError(f"{fname}: variable {what}/{name} is not a float array")
        if name in out:
            raise ModelFileError(f"{fname}: variable {what}/{name} appears twice")
        out[name] = value
    return out


def _config_from_kwargs(kwargs: dict[str, Any], fname: str) -> GeneratorConfig:
    unknown = sorted(set(kwargs) - set(_CONFIG_KEYS) - set(_FIXED_KEYS) - _IGNORED_KEYS)
    if unknown:
        raise ModelFileError(
            f"{fname}: this is not a StyleGAN v1 generator (unknown network arguments {', '.join(unknown)})"
        )
    for key, expected in _FIXED_KEYS.items():
        if key in kwargs and kwargs[key] != expected:
            raise ModelFileError(
                f"{fname}: unsupported StyleGAN v1 variant "
                f"({key}={kwargs[key]!r}; only {expected!r} is implemented)"
            )
    values: dict[str, Any] = {}
    for key, convert in _CONFIG_KEYS.items():
        if key in kwargs:
            try:
                values[key] = convert(kwargs[key])
            except (TypeError, ValueError):
                raise ModelFileError(f"{fname}: bad network argument {key}={kwargs[key]!r}") from None
    try:
        config = GeneratorConfig(**values)
    except ValueError as exc:
        raise ModelFileError(f"{fname}: bad network arguments ({exc})") from None
    broadcast = kwargs.get("dlatent_broadcast")
    if broadcast is not None and broadcast != config.num_layers:
        raise ModelFileError(
            f"{fname}: dlatent_broadcast={broadcast!r} does not match "
            f"the {config.num_layers} synthesis layers"
        )
    return config


# ---------------------------------------------------------------------- the name table


def _nchw_to_nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _same(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a)


_DROP = None  # marks an official variable that exists but is not used at lod 0


def official_name_table(config: GeneratorConfig) -> dict[str, tuple[str | None, Callable | None]]:
    """Official variable name (``mapping/``, ``synthesis/``, ``Gs/`` prefixed) -> (our name, transform).

    ``(None, None)`` marks a variable accounted for but not used: ``lod`` (must be 0, checked) and
    the ToRGB layers of the lower resolutions, which only feed the output during progressive
    growing (lod > 0); at lod 0 the image is ToRGB_lod0's.
    """
    table: dict[str, tuple[str | None, Callable | None]] = {}
    for i in range(config.mapping_layers):
        table[f"mapping/Dense{i}/weight"] = (f"mapping.dense{i}.weight", _same)
        table[f"mapping/Dense{i}/bias"] = (f"mapping.dense{i}.bias", _same)
    table["Gs/dlatent_avg"] = ("dlatent_avg", _same)
    table["Gs/lod"] = (_DROP, None)
    table["synthesis/lod"] = (_DROP, None)
    table["synthesis/4x4/Const/const"] = ("synthesis.const", _nchw_to_nhwc)
    for layer in range(config.num_layers):
        res_log2 = layer // 2 + 2
        res = 2**res_log2
        if layer == 0:
            scope = "4x4/Const"
        elif layer == 1:
            scope = "4x4/Conv"
        else:
            scope = f"{res}x{res}/Conv0_up" if layer % 2 == 0 else f"{res}x{res}/Conv1"
        ours = f"synthesis.layer{layer}"
        if layer > 0:
            table[f"synthesis/{scope}/weight"] = (f"{ours}.conv.weight", _same)
        if config.use_noise:
            table[f"synthesis/noise{layer}"] = (f"{ours}.noise", _nchw_to_nhwc)
            table[f"synthesis/{scope}/Noise/weight"] = (f"{ours}.noise_strength", _same)
        table[f"synthesis/{scope}/bias"] = (f"{ours}.bias", _same)
        table[f"synthesis/{scope}/StyleMod/weight"] = (f"{ours}.style.weight", _same)
        table[f"synthesis/{scope}/StyleMod/bias"] = (f"{ours}.style.bias", _same)
    table["synthesis/ToRGB_lod0/weight"] = ("synthesis.torgb.weight", _same)
    table["synthesis/ToRGB_lod0/bias"] = ("synthesis.torgb.bias", _same)
    for lod in range(1, config.resolution_log2 - 1):
        table[f"synthesis/ToRGB_lod{lod}/weight"] = (_DROP, None)
        table[f"synthesis/ToRGB_lod{lod}/bias"] = (_DROP, None)
    return table


def _pick_gs(obj: Any, fname: str) -> InertNetwork:
    if isinstance(obj, tuple):
        if len(obj) != 3:
            raise ModelFileError(
                f"{fname}: this is not a StyleGAN v1 generator (a tuple of {len(obj)}, expected (G, D, Gs))"
            )
        obj = obj[2]
    if not isinstance(obj, InertNetwork):
        raise ModelFileError(
            f"{fname}: this is not a StyleGAN v1 generator "
            f"(it holds a {type(obj).__name__}, not a dnnlib Network)"
        )
    return obj


def convert_official(obj: Any, fname: str) -> tuple[GeneratorConfig, dict[str, np.ndarray]]:
    """Unpickled official object (tuple or lone Gs) -> (config, our params, float32, NHWC)."""
    gs = _state(_pick_gs(obj, fname), "Gs", fname)
    if gs["build_func_name"] != "G_style":
        raise ModelFileError(
            f"{fname}: this is not a StyleGAN v1 generator (its network is built by "
            f"{gs['build_func_name']!r}, not 'G_style')"
        )
    comps = gs["components"]
    if not isinstance(comps, dict) or set(comps) != {"mapping", "synthesis"}:
        names = sorted(comps) if isinstance(comps, dict) else comps
        raise ModelFileError(
            f"{fname}: this is not a StyleGAN v1 generator "
            f"(components {names!r}, expected mapping + synthesis)"
        )
    mapping = _state(comps["mapping"], "Gs.mapping", fname)
    synthesis = _state(comps["synthesis"], "Gs.synthesis", fname)
    for state, func in ((mapping, "G_mapping"), (synthesis, "G_synthesis")):
        if state["build_func_name"] != func:
            raise ModelFileError(
                f"{fname}: this is not a StyleGAN v1 generator ({state['name']!r} is built by "
                f"{state['build_func_name']!r}, not {func!r})"
            )

    # The sub-networks get G_style's kwargs (mapping also dlatent_broadcast); all must agree.
    kwargs: dict[str, Any] = {}
    for state in (gs, mapping, synthesis):
        if not isinstance(state["static_kwargs"], dict):
            raise ModelFileError(f"{fname}: the pickle is corrupt (static_kwargs is not a dict)")
        for key, value in state["static_kwargs"].items():
            if key in kwargs and kwargs[key] != value:
                raise ModelFileError(
                    f"{fname}: sub-networks disagree on {key} ({kwargs[key]!r} vs {value!r})"
                )
            kwargs[key] = value
    config = _config_from_kwargs(kwargs, fname)

    official: dict[str, np.ndarray] = {}
    for prefix, state in (("Gs", gs), ("mapping", mapping), ("synthesis", synthesis)):
        for name, value in _variables(state, prefix, fname).items():
            official[f"{prefix}/{name}"] = value

    table = official_name_table(config)
    missing = [n for n in table if n not in official]
    extra = [n for n in official if n not in table]
    if missing or extra:
        detail = []
        if missing:
            detail.append(f"missing {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else ""))
        if extra:
            detail.append(f"unexpected {', '.join(extra[:3])}" + (" ..." if len(extra) > 3 else ""))
        raise ModelFileError(f"{fname}: this is not a StyleGAN v1 generator ({'; '.join(detail)})")

    for lod_name in ("Gs/lod", "synthesis/lod"):
        if official[lod_name].size != 1 or float(official[lod_name]) != 0.0:
            raise ModelFileError(
                f"{fname}: {lod_name} is {official[lod_name]!r}: a network saved mid-growing"
            )

    expected = config.param_shapes()
    params: dict[str, np.ndarray] = {}
    for off_name, (ours, transform) in table.items():
        if ours is None:
            continue
        assert transform is not None
        if ours in params:  # the table is built so this cannot happen; guard the invariant anyway
            raise AssertionError(f"{ours} filled twice")
        value = transform(official[off_name]).astype(np.float32, copy=False)
        if value.shape != expected[ours]:
            raise ModelFileError(
                f"{fname}: variable {off_name} has shape {official[off_name].shape}, "
                f"which does not fit the architecture ({ours} needs {expected[ours]})"
            )
        params[ours] = value
    unfilled = [n for n in expected if n not in params]
    if unfilled:  # pragma: no cover - table and param_shapes are written together
        raise AssertionError(f"parameters not filled: {unfilled}")
    return config, {n: params[n] for n in expected}


def load_official(path: str | Path) -> tuple[GeneratorConfig, dict[str, np.ndarray]]:
    """Safely read an official StyleGAN v1 pickle -> (config, params)."""
    path = Path(path)
    return convert_official(safe_unpickle(path), path.name)
