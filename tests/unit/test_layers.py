"""nascore's layers: a module imports only from its own subpackage or from lower layers, and no
two modules import each other through any chain (imports inside functions count too)."""
import ast
import sys
from collections import defaultdict
from pathlib import Path

import nascore

PACKAGE = Path(nascore.__file__).resolve().parent

# lowest first; a unit may import from any unit of a strictly lower layer
LAYERS = [
    {"registry", "config", "faults", "layout"},                          # factories; typed config; kill points; paths + atomic writes
    {"genotype", "genotypes", "lock", "perf", "regression"},             # files: genotypes, metrics, locks
    {"runtime"},                                                        # devices, seeds, CPU ISA
    {"data", "ops", "evaluate", "controllers"},                          # datasets, ops, metrics, policies
    {"spaces", "train"},                                                 # cell spaces; the training loop
    {"supernets", "tracking"},                                           # search networks; MLflow
    {"models", "strategies"},                                            # final networks; search strategies
    {"params"},                                                          # params/ -> typed params
    {"report"},                                                          # markdown and figures
    {"methods"},                                                         # one module per paper
    {"cli"},                                                             # the command line
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "nascore"


def _imports() -> dict[str, set[str]]:
    """module -> the nascore modules it imports (anywhere in the file)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        graph[module]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("nascore"):
                targets = [node.module]
                # `from nascore.methods import darts` imports the submodule nascore.methods.darts
                targets += [f"{node.module}.{a.name}" for a in node.names
                            if (PACKAGE.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(".py").is_file()]
                graph[module].update(targets)
            elif isinstance(node, ast.Import):
                graph[module].update(a.name for a in node.names if a.name.startswith("nascore"))
    return graph


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in _imports()} - {"nascore"}
    assert units <= set(RANK), f"put {sorted(units - set(RANK))} into LAYERS"


def test_no_upward_import():
    upward = [f"{m} imports {t} ({_unit(m)} is below {_unit(t)})"
              for m, targets in _imports().items() for t in targets
              if _unit(m) != _unit(t) and _unit(t) != "nascore" and RANK[_unit(t)] >= RANK[_unit(m)]]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = _imports()
    # a package imports its submodules' names through __init__; a submodule importing its own
    # package's __init__ is how registries are shared, so edges to a parent package are left out
    edges = {m: {t for t in ts if t in graph and t != m and not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges[m]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state and (cycle := visit(m)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The walk finds a planted upward import (so the tests above can fail)."""
    fake = tmp_path / "nascore"
    (fake / "ops").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "ops" / "__init__.py").write_text("def f():\n    from nascore.methods import METHODS\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert _imports()["nascore.ops"] == {"nascore.methods"}
