"""The package layout: one ``poselift`` namespace that user files cannot shadow, and the layering
of its subpackages, checked by reading the imports of every library module."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Repository folder -> the package it installs as.
PACKAGES = {"poselift": "poselift", "model": "poselift.model", "stream": "poselift.stream",
            "train": "poselift.train", "bench": "poselift.bench"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module that ``path`` imports, absolute, including imports inside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def _library_files() -> list[Path]:
    return sorted(p for folder in PACKAGES for p in (ROOT / folder).rglob("*.py"))


def _violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in (ROOT / folder).rglob("*.py"):
        for module in _imports(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    return bad


def test_import_reader_sees_real_imports():
    """The checks below only mean something if the reader finds imports of every kind."""
    engine = _imports(ROOT / "stream" / "engine.py")
    assert "poselift.model" in engine  # absolute
    assert any(m.startswith("poselift.stream.") for m in engine)  # relative, resolved
    assert "poselift.errors" in _imports(ROOT / "poselift" / "cli.py")


def test_model_is_the_ground_floor():
    assert _violations("model", ("poselift.stream", "poselift.train", "poselift.bench", "poselift.cli")) == []


def test_stream_never_imports_train():
    assert _violations("stream", ("poselift.train", "poselift.bench", "poselift.cli")) == []


def test_clients_do_not_import_the_server():
    """Senders and consumers need the socket plumbing (stream/transport.py), not the server."""
    for name in ("client.py", "transport.py", "protocol.py"):
        imported = _imports(ROOT / "stream" / name)
        assert not any(m == "poselift.stream.service" or m.startswith("poselift.stream.service.")
                       for m in imported), name


def test_nothing_imports_the_cli():
    bad = [f"{p.relative_to(ROOT)}" for p in _library_files()
           if p.name not in ("__main__.py", "cli.py") and any(m == "poselift.cli" or m.startswith("poselift.cli.")
                                                             for m in _imports(p))]
    assert bad == []


def test_no_bare_top_level_imports():
    """Every import of the project's own packages goes through the poselift namespace."""
    bare = ("model", "stream", "train", "bench")
    bad = [f"{p.relative_to(ROOT)}: {m}" for p in _library_files() for m in _imports(p) if m.split(".")[0] in bare]
    assert bad == []


@pytest.mark.parametrize("argv", [
    ["-m", "poselift", "info"],
    ["-c", "from poselift.model import TemporalModel, StreamingLifter; print(TemporalModel.__module__)"],
])
def test_user_files_named_like_subpackages_do_not_shadow_poselift(tmp_path, argv):
    for name in ("model", "stream", "train", "bench"):
        (tmp_path / f"{name}.py").write_text("raise ImportError('the decoy was imported')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "decoy" not in r.stderr
    if argv[0] == "-c":
        assert r.stdout.strip() == "poselift.model.temporal"
    else:
        assert "receptive field" in r.stdout
