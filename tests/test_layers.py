"""The package flows one way: each module imports only from its own layer or the layers below, with no cycles.

Layers, bottom up (../shared/STYLE.md): the SQLite ground (standard library only), the model, pure analysis,
compile (the only Jinja2 user), migrate, PostgreSQL's pg/ (its planner consumes migrate's
neutral diff), check, and the CLI and Database on top. The shipped declaration
(abathur.py) is data: it imports the model, and no engine module imports it.
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "schema_dsl"

LAYERS = {
    "errors": 1, "sqlite": 1, "words": 1,
    "model": 2,
    "abathur": 2.5,
    "analysis": 3,
    "compile": 4,
    "migrate": 5,
    # PostgreSQL's driver layer: psycopg is third-party, so it sits above compile, not beside sqlite/; and above
    # migrate/, whose neutral diff (renames, removals, what is kept, the data-loss count) its planner consumes
    "pg": 5.5,
    "check": 6,
    "cli": 7, "database": 7, "__main__": 7, "__init__": 7, "outfiles": 7,
}
THIRD_PARTY = {1: set(), 2: {"attrs"}, 2.5: set(), 3: {"attrs"}, 4: {"attrs", "jinja2"}, 5: {"attrs"},
               5.5: {"attrs", "psycopg"}, 6: {"attrs"},
               7: {"attrs", "click", "aiosqlite"}}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield ".".join(("schema_dsl",) + parts).removesuffix(".__init__"), path


def _layer(module):
    parts = module.split(".")
    if module == "schema_dsl":
        return LAYERS["__init__"]
    return LAYERS[parts[1]]


def _imports(module, path):
    """(imported module, line, at module level) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - node.level + 1]
                name = ".".join(anchor + ([node.module] if node.module else []))
            else:
                name = node.module
            if name.startswith("schema_dsl"):
                # "from . import x" imports the submodule x when it is one
                for a in node.names:
                    sub = name + "." + a.name
                    known = {m for m, _ in _modules()}
                    out.append((sub if sub in known else name, node.lineno, id(node) in top))
            else:
                out.append((name, node.lineno, id(node) in top))
    return out


def _package_imports():
    known = dict(_modules())
    edges = {}
    for module, path in known.items():
        edges[module] = [(name, line, top) for name, line, top in _imports(module, path)]
    return known, edges


def test_every_module_imports_only_its_layer_or_below():
    known, edges = _package_imports()
    wrong = []
    for module, imports in edges.items():
        for name, line, _ in imports:
            if name.startswith("schema_dsl") and name != "schema_dsl":
                if name not in known:
                    wrong.append("%s:%d imports unknown module %s" % (module, line, name))
                elif _layer(name) > _layer(module):
                    wrong.append("%s:%d imports %s from a higher layer" % (module, line, name))
    assert not wrong, "\n".join(wrong)


def test_no_engine_module_imports_the_shipped_declaration():
    _, edges = _package_imports()
    offenders = [m for m, imports in edges.items() if m != "schema_dsl.abathur"
                 for name, _, _ in imports if name == "schema_dsl.abathur"]
    assert not offenders


def test_third_party_imports_stay_in_their_layers():
    _, edges = _package_imports()
    wrong = []
    for module, imports in edges.items():
        allowed = THIRD_PARTY[_layer(module)]
        for name, line, _ in imports:
            root = name.split(".")[0]
            if root in ("attrs", "jinja2", "click", "aiosqlite", "psycopg") and root not in allowed:
                if not (root == "psycopg" and _layer(module) >= 5):
                    wrong.append("%s:%d imports %s" % (module, line, root))
    assert not wrong, "\n".join(wrong)


def test_there_are_no_import_cycles():
    known, edges = _package_imports()
    graph = {m: sorted({n for n, _, _ in imports if n in known and n != m}) for m, imports in edges.items()}
    # a package's __init__ is not a dependency of its submodules' cycle (Python imports it first anyway)
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in graph[m]:
            if n.count(".") < m.count(".") and m.startswith(n + "."):
                continue  # a module importing its own package
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_function_local_imports_say_why():
    """A function-local import is allowed where the import-time budget needs it, with a one-line comment."""
    missing = []
    for module, path in _modules():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        in_functions = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                        for n in ast.walk(f)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) in in_functions:
                if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                    continue
                here = lines[node.lineno - 1]
                k = node.lineno - 2
                while k >= 0 and lines[k].strip().startswith(("from ", "import ")):
                    k -= 1  # a block of imports shares the comment above it
                above = lines[k].strip() if k >= 0 else ""
                if "#" not in here and not above.startswith("#"):
                    missing.append("%s:%d" % (path.relative_to(PACKAGE.parent), node.lineno))
    assert not missing, "function-local imports without a comment: " + ", ".join(missing)


@pytest.mark.parametrize("layer_pkg", ["sqlite", "analysis", "compile", "pg", "migrate", "check"])
def test_every_subpackage_ships_in_the_wheel(layer_pkg):
    import tomllib
    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert "schema_dsl." + layer_pkg in config["tool"]["setuptools"]["packages"]
