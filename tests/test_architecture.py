"""The layout's rules (DESIGN.md, "Layout"), checked on the source with :mod:`ast`.

Every ``.py`` file of ``tuner/`` and ``models/`` is parsed, never imported, so these tests are
fast and need neither Ray nor torch. Imports are collected wherever they are written: at module
level, inside functions, and under ``if TYPE_CHECKING:`` (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tuner", "models")
MAX_LINES = 600
# Private attributes of Ray Tune, Optuna and MLflow objects that code here has reached for;
# each has a public door (OptunaSearch(storage=..., study_name=...), optuna.load_study,
# tune.Tuner.restore, ResultGrid).
PRIVATE_ATTRIBUTES = frozenset(
    {
        "_local_tuner",
        "_run_config",
        "_tune_config",
        "_ot_study",
        "_experiment_analysis",
        "_sampler",
    }
)
CLICK_ALLOWED = frozenset({"tuner.cli", "tuner.ui"})
MODELS_ALLOWED_THIRD_PARTY = frozenset({"torch", "torch_geometric", "numpy"})
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "iterstrat": "iterative-stratification",
    "torch_geometric": "torch-geometric",
}


@dataclass(frozen=True)
class Import:
    """One import statement's target, as written and as resolved to a module of ours."""

    source: str  # the importing module, e.g. "tuner.jobs"
    file: str  # its file, relative to the project's root
    line: int
    name: str  # the imported module, e.g. "tuner.cli" or "click.exceptions"
    local: str | None  # the module of tuner/ or models/ it resolves to, if any

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path = ROOT) -> dict[str, Path]:
    """Every module of ``tuner/`` and ``models/`` by dotted name."""
    files: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            files[module_name(path, root)] = path
    return files


def _resolve(name: str, modules: set[str]) -> str | None:
    """The module of ours that importing ``name`` loads last (its longest known prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def imports_of(
    module: str, file: str, tree: ast.AST, modules: set[str], *, is_package: bool
) -> Iterator[Import]:
    """Every import in ``tree``, wherever it is written, with relative imports made absolute.

    ``from a.b import c`` depends on the module ``a.b.c`` when there is one, else on ``a.b``.
    Importing a submodule does not count as depending on its parent package: a package's
    ``__init__`` that re-exports its submodules is not a cycle.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, file, node.lineno, alias.name, _resolve(alias.name, modules))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".")
                if not is_package:
                    package = package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                target = full if full in modules else _resolve(base, modules)
                yield Import(module, file, node.lineno, base, target)


@dataclass
class Project:
    root: Path
    files: dict[str, Path]
    trees: dict[str, ast.Module]
    imports: list[Import]

    @classmethod
    def parse(cls, root: Path = ROOT) -> Project:
        files = source_files(root)
        trees = {m: ast.parse(p.read_text(encoding="utf-8"), str(p)) for m, p in files.items()}
        modules = set(files)
        imports = [
            imp
            for m, tree in trees.items()
            for imp in imports_of(
                m,
                str(files[m].relative_to(root)),
                tree,
                modules,
                is_package=files[m].name == "__init__.py",
            )
        ]
        return cls(root, files, trees, imports)

    def graph(self) -> dict[str, dict[str, Import]]:
        """``module -> {imported module of ours -> the first import that makes the edge}``."""
        edges: dict[str, dict[str, Import]] = {m: {} for m in self.files}
        for imp in self.imports:
            if imp.local is not None and imp.local != imp.source:
                edges[imp.source].setdefault(imp.local, imp)
        return edges


def find_cycles(edges: dict[str, dict[str, Import]]) -> list[list[Import]]:
    """One cycle (its import statements, in order) per strongly connected component of more
    than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return [_cycle_in(component, edges) for component in components]


def _cycle_in(component: list[str], edges: dict[str, dict[str, Import]]) -> list[Import]:
    """A shortest cycle through the component's first module (breadth-first search)."""
    members = set(component)
    start = component[0]
    came_from: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child, imp in sorted(edges[node].items()):
                if child not in members:
                    continue
                if child == start:
                    path = [imp]
                    while path[0].source != start:
                        path.insert(0, came_from[path[0].source])
                    return path
                if child not in came_from:
                    came_from[child] = imp
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {component}")


def describe_cycle(cycle: list[Import]) -> str:
    steps = [f"{imp.source} -> {imp.local} ({imp.where})" for imp in cycle]
    return "import cycle: " + "; ".join(steps)


def private_accesses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """``obj._name`` and ``getattr(obj, "_name")`` (also has/setattr) of a listed name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            yield node.lineno, node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in PRIVATE_ATTRIBUTES
        ):
            yield node.lineno, str(node.args[1].value)


def declared_distributions(root: Path = ROOT) -> set[str]:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    names = set()
    for requirement in project["dependencies"]:
        name = requirement.split(";")[0]
        for stop in "[<>=!~ ":
            name = name.split(stop)[0]
        names.add(name.strip().lower().replace("_", "-"))
    return names


def too_long(project: Project) -> dict[str, int]:
    """Files over :data:`MAX_LINES` lines, with their line counts."""
    counts = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in project.files.items()}
    return {m: n for m, n in counts.items() if n > MAX_LINES}


def cli_or_click_imports(project: Project) -> list[Import]:
    """Imports of the CLI (``tuner.cli`` and the command groups it assembles,
    ``tuner.commands``) outside it, and of click outside the CLI and ``tuner.ui``."""

    def in_cli(module: str) -> bool:
        return (
            module == "tuner.cli"
            or module == "tuner.commands"
            or module.startswith("tuner.commands.")
        )

    return [
        imp
        for imp in project.imports
        if (imp.local is not None and in_cli(imp.local) and not in_cli(imp.source))
        or (
            imp.name.split(".")[0] == "click"
            and imp.source not in CLICK_ALLOWED
            and not in_cli(imp.source)
        )
    ]


def foreign_model_imports(project: Project) -> list[Import]:
    """Imports in ``models/`` of anything but torch, PyG, numpy, the stdlib and ``models``."""
    allowed = MODELS_ALLOWED_THIRD_PARTY | set(sys.stdlib_module_names) | {"models", "__future__"}
    return [
        imp
        for imp in project.imports
        if imp.source.split(".")[0] == "models" and imp.name.split(".")[0] not in allowed
    ]


def private_attribute_uses(project: Project) -> list[str]:
    """``file:line: name`` of each listed private attribute used in ``tuner/``."""
    found = sorted(
        (str(project.files[module].relative_to(project.root)), line, name)
        for module, tree in project.trees.items()
        if module.split(".")[0] == "tuner"
        for line, name in private_accesses(tree)
    )
    return [f"{file}:{line}: {name}" for file, line, name in found]


@pytest.fixture(scope="module")
def project() -> Project:
    return Project.parse()


# ---------------------------------------------------------------------------------------------
# The rules


def test_no_file_over_the_line_limit(project: Project) -> None:
    wrong = too_long(project)
    assert not wrong, f"modules over {MAX_LINES} lines (split them by job): {wrong}"


def test_no_import_cycles(project: Project) -> None:
    cycles = find_cycles(project.graph())
    assert not cycles, "\n".join(describe_cycle(c) for c in cycles)


def test_only_the_cli_imports_the_cli_and_only_cli_and_ui_import_click(project: Project) -> None:
    wrong = [f"{imp.where}: {imp.source} imports {imp.local or imp.name}" for imp in
             cli_or_click_imports(project)]  # fmt: skip
    assert not wrong, "the library must not import its CLI or click:\n" + "\n".join(wrong)


def test_models_import_only_torch_pyg_numpy_and_the_standard_library(project: Project) -> None:
    wrong = [f"{imp.where}: {imp.name}" for imp in foreign_model_imports(project)]
    assert not wrong, "models/ imports only torch, torch_geometric, numpy:\n" + "\n".join(wrong)


def test_no_private_attributes_of_ray_optuna_or_mlflow(project: Project) -> None:
    wrong = private_attribute_uses(project)
    assert not wrong, "private attributes of other libraries (use the public API):\n" + "\n".join(
        wrong
    )


def test_every_third_party_import_is_declared(project: Project) -> None:
    declared = declared_distributions()
    ours = {"tuner", "models", "search_spaces", "__future__"}
    missing = {
        f"{top} ({imp.where})"
        for imp in project.imports
        if (top := imp.name.split(".")[0]) not in ours
        and top not in sys.stdlib_module_names
        and DISTRIBUTIONS.get(top, top).lower().replace("_", "-") not in declared
    }
    assert not missing, f"imported but not in pyproject's dependencies: {sorted(missing)}"


# ---------------------------------------------------------------------------------------------
# The checks catch what they are for (on a small project written here)


def _write(root: Path, files: dict[str, str]) -> Project:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (root / package).mkdir(exist_ok=True)
    return Project.parse(root)


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    project = _write(
        tmp_path,
        {
            "tuner/__init__.py": "",
            "tuner/jobs.py": "def parse():\n    from tuner.cli import cli\n",
            "tuner/cli.py": "from tuner import jobs\n",
            "tuner/a.py": "from .b import x\n",
            "tuner/b.py": "import tuner.c\n",
            "tuner/c.py": "from tuner.a import y\n",
            "tuner/metrics/__init__.py": "from tuner.metrics.registry import compute\n",
            "tuner/metrics/registry.py": "from tuner.metrics.ranking import one_error\n",
            "tuner/metrics/ranking.py": "import math\n",
        },
    )
    cycles = sorted(describe_cycle(c) for c in find_cycles(project.graph()))
    assert cycles == [
        "import cycle: tuner.a -> tuner.b (tuner/a.py:1); tuner.b -> tuner.c (tuner/b.py:1); "
        "tuner.c -> tuner.a (tuner/c.py:1)",
        "import cycle: tuner.cli -> tuner.jobs (tuner/cli.py:1); "
        "tuner.jobs -> tuner.cli (tuner/jobs.py:2)",
    ]


def test_the_rules_flag_what_they_forbid(tmp_path: Path) -> None:
    project = _write(
        tmp_path,
        {
            "tuner/__init__.py": "",
            "tuner/cli.py": "import click\n",
            "tuner/ui.py": "import click\n",
            "tuner/jobs.py": "def f():\n    import click\n    from tuner import cli\n",
            "tuner/search.py": (
                "def g(tuner, searcher):\n"
                "    a = tuner._local_tuner._run_config\n"
                "    return getattr(searcher, '_ot_study'), searcher.public\n"
            )
            + "\n" * MAX_LINES,
            "models/__init__.py": "",
            "models/net.py": "import math\nimport torch\nfrom ray import tune\n",
        },
    )
    assert too_long(project) == {"tuner.search": MAX_LINES + 3}
    assert [(i.source, i.local or i.name, i.line) for i in cli_or_click_imports(project)] == [
        ("tuner.jobs", "click", 2),
        ("tuner.jobs", "tuner.cli", 3),
    ]
    assert [(i.source, i.name) for i in foreign_model_imports(project)] == [("models.net", "ray")]
    assert private_attribute_uses(project) == [
        "tuner/search.py:2: _local_tuner",
        "tuner/search.py:2: _run_config",
        "tuner/search.py:3: _ot_study",
    ]
