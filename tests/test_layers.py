"""The package's layers import only downward (docs/architecture.md): every import, module-level or inside a
function, read with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder in the checkout -> package it installs as (pyproject.toml's package-dir)
FOLDERS = {"logoid": "logoid", "catalog": "logoid.catalog", "augment": "logoid.augment", "engine": "logoid.engine",
           "index": "logoid.index", "finetune": "logoid.finetune"}
# bottom to top; packages in one tuple are siblings that must not import each other
LAYERS: list[tuple[str, ...]] = [
    ("logoid.core",),
    ("logoid.catalog",),
    ("logoid.augment",),
    ("logoid.engine",),
    ("logoid.index", "logoid.finetune"),
    ("logoid.scoring",),
    ("logoid.albums",),
    ("logoid.identify",),
    ("logoid.eval",),
    ("logoid.build",),
    ("logoid.demo",),
    ("logoid",),  # the public API: logoid/__init__.py
    ("logoid.serve",),  # the HTTP server and its client (the CLI's `serve` and `--server`)
    ("logoid.cli",),
    ("logoid.__main__",),
]


def layer_of(module: str) -> tuple[int, str]:
    """(layer number, package) of a dotted module name: the longest package prefix that names a layer."""
    best: tuple[int, str] | None = None
    for i, group in enumerate(LAYERS):
        for pkg in group:
            # the root package is a layer of its own module only: logoid/foo.py must be given a layer
            inside = module == pkg or (pkg != "logoid" and module.startswith(pkg + "."))
            if inside and (best is None or len(pkg) > len(best[1])):
                best = (i, pkg)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS and docs/architecture.md")
    return best


def package_modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for folder, pkg in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            is_pkg = rel[-1] == "__init__"
            if is_pkg:
                rel = rel[:-1]
            out[".".join([pkg, *rel])] = (path, is_pkg)
    return out


def imports_of(module: str, path: Path, is_pkg: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every logoid import in the file, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # ``from logoid import catalog`` imports the subpackage: judge the submodule
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names if f"{target}.{a.name}" in MODULES]
    return [(line, t) for line, t in found if t == "logoid" or t.startswith("logoid.")]


MODULES = package_modules()


def upward_imports(modules: dict[str, tuple[Path, bool]] | None = None) -> list[str]:
    bad = []
    for module, (path, is_pkg) in (modules or MODULES).items():
        mine, my_pkg = layer_of(module)
        for line, target in imports_of(module, path, is_pkg):
            theirs, their_pkg = layer_of(target)
            if theirs > mine or (theirs == mine and their_pkg != my_pkg):
                bad.append(f"{path.name}:{line}: {my_pkg} imports {target} ({their_pkg})")
    return bad


def test_every_import_runs_downward():
    bad = upward_imports()
    assert not bad, "imports that reach up or sideways:\n" + "\n".join(bad)


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("source, expected", [
    ("from logoid.cli import main\n", "logoid.cli"),
    ("def f():\n    from logoid.eval.metrics import evaluate\n", "logoid.eval.metrics"),
    ("from ..eval import metrics\n", "logoid.eval.metrics"),
])
def test_the_checker_sees_upward_imports(tmp_path, source, expected):
    """A module of ``logoid.index`` importing any of these is reported, even inside a function."""
    path = tmp_path / "mod.py"
    path.write_text(source)
    targets = [t for _, t in imports_of("logoid.index.mod", path, False)]
    assert expected in targets
    assert layer_of(expected)[0] > layer_of("logoid.index.mod")[0]


def test_ground_floor_is_imported_one_way():
    """core is imported by its absolute name everywhere, never relatively from another folder."""
    bad = []
    for path, _ in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "relative imports across folders (use `from logoid.x import ...`):\n" + "\n".join(bad)


def test_public_api_is_all_and_loads_lazily():
    """Every name in ``logoid.__all__`` resolves, and ``import logoid`` loads none of the heavy modules."""
    import subprocess
    import sys

    code = ("import sys, logoid; heavy = [m for m in ('torch', 'faiss', 'cv2', 'logoid.identify') if m in sys.modules];"
            "print(heavy); missing = [n for n in logoid.__all__ if getattr(logoid, n, None) is None]; print(missing)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "[]", out


def test_upward_imports_reports_a_fake_module_that_reaches_up(tmp_path):
    """The whole check on a fake tree: a catalog module importing identify (at the top, in a function, or as
    ``import logoid.x.y``) is reported; one importing core is not."""
    (tmp_path / "ok.py").write_text("from logoid.core.errors import LogoidError\n")
    (tmp_path / "top.py").write_text("import logoid.identify.pipeline\n")
    (tmp_path / "inner.py").write_text("def f():\n    from logoid.eval import metrics\n")
    fake = {"logoid.catalog.ok": (tmp_path / "ok.py", False), "logoid.catalog.top": (tmp_path / "top.py", False),
            "logoid.catalog.inner": (tmp_path / "inner.py", False)}
    bad = upward_imports(fake)
    assert {b.split(":")[0] for b in bad} == {"top.py", "inner.py"}


def test_a_new_module_in_the_root_package_needs_a_layer():
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("logoid.newthing")
