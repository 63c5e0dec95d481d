"""House rules a green test run would not show otherwise (docs/architecture.md).

- no module of the library is over 500 lines;
- no two modules import each other (lazy imports inside functions count too);
- only the babygan.backend package imports a deep-learning framework directly (TensorFlow,
  JAX, PyTorch): everything else speaks keras.ops, so it runs under every backend;
- the public API (babygan/__init__.py) names only what its modules define, and imports
  none of them when ``babygan`` is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "babygan"
FRAMEWORKS = {"tensorflow", "jax", "jaxlib", "torch"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The babygan modules and top-level packages a file imports, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # "from babygan.encoder import cache" imports the module babygan.encoder.cache
            names.update(
                f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules
            )
    return names


def test_no_module_is_over_500_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert {n: k for n, k in long.items() if k > 500} == {}


def test_no_two_modules_import_each_other():
    modules = _modules()
    graph = {n: {m for m in _imports(p, modules) if m in modules and m != n} for n, p in modules.items()}
    # a package's __init__ re-exporting its modules is the one allowed way back
    pairs = sorted(
        (a, b)
        for a, deps in graph.items()
        for b in deps
        if a < b and a in graph[b] and not (b.startswith(a + ".") or a.startswith(b + "."))
    )
    assert pairs == []


def test_only_the_backend_package_imports_a_framework():
    modules = _modules()
    users = {
        name
        for name, path in modules.items()
        if {i.split(".")[0] for i in _imports(path, modules)} & FRAMEWORKS
    }
    assert {u for u in users if u != "babygan.backend" and not u.startswith("babygan.backend.")} == set()
    assert "babygan.backend" in users  # the rule still looks where the framework code is


def test_public_api_is_lazy_and_each_name_has_an_owner():
    init = PACKAGE / "__init__.py"
    tree = ast.parse(init.read_text())
    eager = [
        node
        for node in tree.body  # top level, outside "if TYPE_CHECKING:"
        if isinstance(node, ast.Import | ast.ImportFrom)
        and any(
            (a.name if isinstance(node, ast.Import) else node.module or "").startswith("babygan")
            for a in node.names
        )
    ]
    assert eager == []
    import babygan

    assert set(babygan.__all__) == {"__version__", *babygan._PUBLIC}
    modules = _modules()
    for name, owner in babygan._PUBLIC.items():
        assert owner in modules, (name, owner)
        defined = {
            n.name
            for n in ast.parse(modules[owner].read_text()).body
            if isinstance(n, ast.FunctionDef | ast.ClassDef)
        } | {
            t.id
            for n in ast.parse(modules[owner].read_text()).body
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        assert name in defined, f"{name} is not defined in {owner} (re-exported from elsewhere?)"


def test_every_package_is_installed():
    """pyproject.toml lists babygan's packages by name: a new one left out installs without it."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in PACKAGE.rglob("__init__.py")
        if "static" not in p.parts
    }
    assert found <= listed, sorted(found - listed)
