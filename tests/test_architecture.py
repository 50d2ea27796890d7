"""The shape of the house, read from the source: who may import whom, no cycles, small
modules, and a reason beside every import that is not at the top of its module."""

from __future__ import annotations

import ast
import importlib
import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli_process import run_python

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "pix2pix_core")
MAX_LINES = 400
# What each part of pipelines/ may import from pipelines/ besides the shared layer
# (common/, config/): the jobs below it. retrain and demo sit on top.
JOBS_BELOW: dict[str, set[str]] = {
    "prepare": set(),
    "train": set(),
    "registry": set(),
    "translate": set(),
    "tune": {"train", "registry"},
    "retrain": {"prepare", "train", "tune", "registry"},
    "demo": {"retrain", "translate"},
}
SHARED = {"common", "config"}
NOT_IN_CORE = ("ray", "mlflow", "fsspec", "s3fs", "pipelines")


@dataclass(frozen=True)
class Import:
    module: str  # the module that imports
    target: str  # what it imports (a module, or a name inside one)
    line: int
    top_level: bool  # at module level, as opposed to inside a function


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text())
    # Module level: the module's own statements, and those of an `if TYPE_CHECKING:` block
    # (what type checkers read in place of names a module loads lazily).
    body = [*tree.body]
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            body += node.body
    top = {id(node) for node in body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from a.b import c`: c may be a module (a.b.c) or a name in a.b.
            targets = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [Import(module, t, node.lineno, id(node) in top) for t in targets]
    return found


def _resolve(target: str, modules: set[str]) -> str | None:
    """The project module `target` names (the longest matching prefix), if any."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in modules:
            return name
    return None


SOURCES = _sources()
IMPORTS = [i for m, p in SOURCES.items() for i in _imports(m, p)]


def test_pix2pix_core_imports_no_ray_mlflow_fsspec_nor_pipelines():
    bad = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in IMPORTS
        if i.module.startswith("pix2pix_core") and i.target.split(".")[0] in NOT_IN_CORE
    ]
    assert not bad, bad


def _part(module: str) -> str | None:
    """`pipelines.train.worker` -> "train"; the top-level modules (cli) -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "pipelines" and len(parts) > 2 else None


def test_each_job_imports_only_the_shared_layer_and_the_jobs_below_it():
    modules = set(SOURCES)
    bad = []
    for i in IMPORTS:
        target = _resolve(i.target, modules)
        if not target or not i.module.startswith("pipelines.") or target == "pipelines":
            continue
        here, there = _part(i.module), _part(target)
        if here is None or there is None or here == there:
            continue
        allowed = {"common"} if here == "common" else SHARED | JOBS_BELOW.get(here, set())
        if here == "config":
            allowed = {"common"}
        if there not in allowed:
            bad.append(f"{i.module}:{i.line} imports {target}")
    assert not bad, bad


def test_module_level_imports_form_no_cycle():
    modules = set(SOURCES)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for i in IMPORTS:
        target = _resolve(i.target, modules)
        if i.top_level and target and target != i.module:
            graph[i.module].add(target)
            # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
            parents = target.split(".")
            for end in range(1, len(parents)):
                parent = ".".join(parents[:end])
                if (
                    parent in modules
                    and i.module != parent
                    and not i.module.startswith(parent + ".")
                ):
                    graph[i.module].add(parent)
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [*path, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_no_module_is_over_400_lines():
    long = {m: n for m, p in SOURCES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_every_import_inside_a_function_says_why_it_is_there():
    """Function-local imports keep a heavy or optional dependency off a path that does not
    need it; the comment beside the block says which."""
    bad = []
    for module, path in SOURCES.items():
        lines = path.read_text().splitlines()
        for i in IMPORTS:
            if i.module != module or i.top_level:
                continue
            # The comment may close the import's line or precede its block of imports.
            above = itertools.takewhile(
                lambda text: not text.strip() or text.strip().startswith(("import ", "from ")),
                reversed(lines[: i.line - 1]),
            )
            block = [lines[i.line - 1], *above]
            start = i.line - len(block)
            reason = "#" in lines[i.line - 1] or (start >= 1 and "#" in lines[start - 1])
            if not reason:
                bad.append(f"{module}:{i.line}: {lines[i.line - 1].strip()}")
    assert not bad, sorted(set(bad))


def test_start_up_imports_stay_light():
    """Every Ray worker of a job runs ray_runtime's start-up hook, and every process that
    runs a model imports pix2pix_core.inference: the hook must not import torch (about
    1.2 s a process), nor inference torch._dynamo (about 1.3 s). Prepare's tasks only
    decode and resize (no torch), and a training worker or Ray Train's controller, which
    import the worker's module, leave MLflow to rank 0 (about 1 s each). One process, in
    an order where each module adds to what the ones before imported."""
    probe = (
        "import importlib, sys\n"
        "for module, heavy in [('pipelines.common.ray_runtime', 'torch'),\n"
        "                      ('pipelines.prepare.pairs', 'torch'),\n"
        "                      ('pix2pix_core.inference', 'torch._dynamo'),\n"
        "                      ('pipelines.train.worker', 'mlflow')]:\n"
        "    importlib.import_module(module)\n"
        "    print(f'{module}:{heavy in sys.modules}')\n"
    )
    done = run_python(probe)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout.split()
    assert out == [
        "pipelines.common.ray_runtime:False",
        "pipelines.prepare.pairs:False",
        "pix2pix_core.inference:False",
        "pipelines.train.worker:False",
    ], out


LAZY_PACKAGES = ("pix2pix_core", *(f"pipelines.{job}" for job in JOBS_BELOW))


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_a_packages_lazy_names_are_its_exports_and_each_loads(package):
    """`__all__` and the lazy table are kept by hand side by side: they must agree."""
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(module.__getattr__.names)
    for name in module.__all__:
        assert getattr(module, name).__name__ == name
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        module.nothing_here  # noqa: B018
