"""The package's layers, read from the source's own imports (AST, every import at any depth).

core (top-level modules, ``data``, ``generative``, ``metrics``, ``train``) <- papers (``mime``, ``hbr``,
``gcm``, ``aimfair``) <- the harness (``book``). The core imports no paper and not the harness; a paper
imports neither the harness nor another paper; a paper's ``experiment`` never imports its ``claims``;
there is no import cycle; an import inside a function is a heavy optional dependency (named below, with
why) or keeps a torch-free module torch-free.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from fairbook import paths

PKG = paths.PACKAGE_DIR
#: third-party modules a function may import lazily, and why
HEAVY = {
    "torch": "sd.py, the harness and the numpy-only theory stay importable without torch (~1 s)",
    "torchvision": "pretrained-model and ResNet internals only some models need",
    "diffusers": "Stable Diffusion / DDPM (seconds to import)", "transformers": "Stable Diffusion's text encoder",
    "sklearn": "baselines and one metric", "fairlearn": "GCM's baselines", "imblearn": "SMOTE only",
    "safetensors": "loading weights from disk", "PIL": "image files only", "ray": "optional executor",
    "papermill": "executing a chapter", "jupytext": "reading a chapter", "jupyter_client": "the kernel",
    "nbformat": "reading executed notebooks", "myst_nb": "glue, inside a notebook only",
    "sphinx": "the Sphinx extension only", "matplotlib": "plotting only", "tqdm": "progress bars",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(name: str) -> bool:
    return (PKG.parent / Path(*name.split(".")) / "__init__.py").exists()


def is_module(name: str) -> bool:
    return is_package(name) or (PKG.parent / Path(*name.split("."))).with_suffix(".py").exists()


def imports(path: Path):
    """(imported module, line, inside a function) of every import in ``path``; relative ones resolved."""
    name = module_name(path)
    return parse_imports(path.read_text(), name if path.name == "__init__.py" else name.rpartition(".")[0])


def parse_imports(source: str, package: str):
    """The imports of a module of ``package`` whose text is ``source``."""
    tree = ast.parse(source)
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module
                for a in child.names:  # `from pkg import module` imports pkg.module
                    found.append((f"{mod}.{a.name}" if is_module(f"{mod}.{a.name}") else mod,
                                  child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


SOURCES = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)
PAPERS = paths.papers()


def layer(name: str) -> str:
    parts = name.split(".")
    if len(parts) > 1 and parts[1] == paths.HARNESS:
        return "harness"
    if len(parts) > 1 and parts[1] in PAPERS:
        return parts[1]
    return "core"


def graph() -> dict[str, list[tuple[str, int, bool]]]:
    return {module_name(p): [(m, line, fn) for m, line, fn in imports(p) if m.split(".")[0] == "fairbook"]
            for p in SOURCES}


def test_the_four_papers_are_subpackages():
    assert set(PAPERS) == {"mime", "hbr", "gcm", "aimfair"}
    for paper in PAPERS:
        assert (PKG / paper / "claims.py").exists() and (PKG / paper / "chapter.py").exists()
    flat = [p.name for p in PKG.glob("*.py") if any(p.stem.startswith(x) for x in PAPERS) or p.stem == "robust"]
    assert not flat, f"paper code left at the top level: {flat}"


def violations(g) -> list[str]:
    bad = []
    for mod, deps in g.items():
        src = layer(mod)
        for dep, line, _ in deps:
            dst = layer(dep)
            if src == "core" and dst != "core":
                bad.append(f"{mod}:{line} (core) imports {dep} ({dst})")
            elif src in PAPERS and dst not in ("core", src):
                bad.append(f"{mod}:{line} ({src}) imports {dep} ({dst})")
            if mod.endswith(".experiment") and src in PAPERS and dep == f"fairbook.{src}.claims":
                bad.append(f"{mod}:{line}: an experiment imports its claims")
    return bad


def test_layers():
    bad = violations(graph())
    assert not bad, "\n".join(bad)


def test_the_layer_check_can_fail():
    """A negative control: the import reader and the rules catch each kind of violation."""
    source = "import os\nfrom . import claims\ndef f():\n    from ..gcm import methods\n    from ..book import runner\n"
    found = parse_imports(source, "fairbook.hbr")
    assert found == [("os", 1, False), ("fairbook.hbr.claims", 2, False), ("fairbook.gcm.methods", 4, True),
                     ("fairbook.book.runner", 5, True)]
    bad = violations({"fairbook.hbr.experiment": [f for f in found if f[0] != "os"],
                      "fairbook.stats": [("fairbook.mime.theory", 1, False)]})
    assert len(bad) == 4, bad


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(g):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycle():
    g = {}
    for mod, deps in graph().items():
        # a package's __init__ re-exporting its submodules is not a cycle with them
        g[mod] = {d for d, _, _ in deps if d != mod and not mod.startswith(d + ".")}
    assert cycles(g) == []


def test_the_cycle_check_can_fail():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("fairbook.book.site") == "harness" and layer("fairbook.hbr.claims") == "hbr"


def test_function_level_imports_are_heavy_dependencies_only():
    bad = []
    for path in SOURCES:
        found = imports(path)
        torch_free = not any(m.split(".")[0] == "torch" for m, _, fn in found if not fn)
        for mod, line, in_function in found:
            top = mod.split(".")[0]
            if not in_function or top in HEAVY:
                continue
            if top == "fairbook" and torch_free:  # keeps this module importable without torch
                continue
            bad.append(f"{module_name(path)}:{line} imports {mod} inside a function")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("paper", ["mime", "hbr", "gcm", "aimfair"])
def test_each_paper_has_a_public_api(paper):
    import importlib

    pkg = importlib.import_module(f"fairbook.{paper}")
    assert pkg.__all__ and all(hasattr(pkg, n) for n in pkg.__all__)
    for sub in ("experiment", "claims", "chapter"):
        assert getattr(pkg, sub).__name__ == f"fairbook.{paper}.{sub}"
    hooks = importlib.import_module(f"fairbook.{paper}.chapter")
    assert callable(hooks.check_parameters) and callable(hooks.input_files)


def test_sizes():
    """No module over 600 lines; no function over 80 lines but the ones listed (with why)."""
    long_ok = {}
    big = [f"{p.relative_to(PKG)}: {n}" for p in SOURCES if (n := len(p.read_text().splitlines())) > 600]
    assert not big, big
    longf = []
    for p in SOURCES:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                name = f"{module_name(p)}.{node.name}"
                if n > 80 and name not in long_ok:
                    longf.append(f"{name}: {n}")
    assert not longf, longf
