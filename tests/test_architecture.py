"""The shape of the package, read statically from its source (nothing is imported):
no import cycle between its modules, and no private name imported across modules."""
import ast
from pathlib import Path

import coax_nb

PACKAGE = Path(coax_nb.__file__).resolve().parent
ROOT = PACKAGE.parent


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        if "." in f.stem:  # e.g. report.nb.py, a notebook's text source, not a module
            continue
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path, known) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for every import in the file, at any depth
    (an import inside a function is still a dependency)."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{target}.{a.name}"
                # `from . import organisms` imports a module; `from .x import f` a name of x
                out.append((sub, []) if sub in known else (target, [a.name]))
    return out


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Edges between the package's modules, and every (importer, module, name) where a
    leading-underscore name is taken from another module."""
    mods = _modules()
    graph, private = {m: set() for m in mods}, []
    for m, path in mods.items():
        for target, names in _imports(m, path, mods):
            if target in mods and target != m:
                graph[m].add(target)
                private += [(m, target, n) for n in names if n.startswith("_") and not n.startswith("__")]
    return graph, private


def find_cycle(graph: dict[str, set[str]]):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            # the package's own __init__ importing its modules is how a package is built, not a cycle
            if n == "coax_nb":
                continue
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_graph_sees_the_package():
    graph, _ = import_graph()
    assert {"coax_nb.engine", "coax_nb.tasks", "coax_nb.models", "coax_nb.organisms", "coax_nb.inputs"} <= set(graph)
    assert "coax_nb.tasks" in graph["coax_nb.engine"]  # the parser really reads imports


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph()[0])
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_tasks_and_organisms_sit_below_models():
    graph, _ = import_graph()
    assert "coax_nb.models" not in graph["coax_nb.tasks"]
    assert "coax_nb.inputs" not in graph["coax_nb.organisms"]


def test_recipes_are_not_imported_by_the_package():
    graph, _ = import_graph()
    assert not any(m.startswith("coax_nb.organisms.") for m in graph), "only the loader lives in organisms/"
    for m, path in _modules().items():
        assert "recipes" not in {t.split(".")[0] for t, _ in _imports(m, path, graph)}, m


def test_import_reader(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from .scores import _hidden, shown\nfrom . import organisms\n"
                 "def g():\n    from ..x import y\n")
    got = _imports("coax_nb.sub.m", f, {"coax_nb.sub.organisms"})
    assert got == [("coax_nb.sub.scores", ["_hidden"]), ("coax_nb.sub.scores", ["shown"]),
                   ("coax_nb.sub.organisms", []), ("coax_nb.x", ["y"])]


def test_no_private_name_imported_across_modules():
    private = import_graph()[1]
    assert not private, f"private names imported across modules (importer, module, name): {private}"
