"""The package flows one way: each module imports only from its own layer or the layers below, with no cycles.

Layers, bottom up (../shared/STYLE.md): the SQLite ground (standard library only), the model, pure analysis,
compile (the only Jinja2 user), migrate, PostgreSQL's pg/ (its planner consumes migrate's neutral diff), check,
the dialect registry (dialects/), and the CLI and Database on top. Per-folder rules below: the CLI reaches either
engine only through the registry, and the neutral layers name no engine. The shipped declaration (abathur.py) is data: it imports the model, and no engine module imports it.
"""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "schema_dsl"

LAYERS = {
    "errors": 1, "sqlite": 1, "words": 1, "version": 1,
    "model": 2,
    "abathur": 2.5,
    "analysis": 3,
    "compile": 4,
    "migrate": 5,
    # PostgreSQL's driver layer: psycopg is third-party, so it sits above compile, not beside sqlite/; and above
    # migrate/, whose neutral diff (renames, removals, what is kept, the data-loss count) its planner consumes
    "pg": 5.5,
    "check": 6,
    "dialects": 6.5,  # the registry and the two dialects' operations, over migrate/, pg/ and check/
    "cli": 7, "database": 7, "__main__": 7, "__init__": 7, "outfiles": 7,
}
THIRD_PARTY = {1: set(), 2: {"attrs"}, 2.5: set(), 3: {"attrs"}, 4: {"attrs", "jinja2"}, 5: {"attrs"},
               5.5: {"attrs", "psycopg"}, 6: {"attrs"}, 6.5: set(),
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
            if name.startswith("schema_dsl"):
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


@pytest.mark.parametrize("layer_pkg", ["sqlite", "analysis", "compile", "pg", "migrate", "check", "dialects"])
def test_every_subpackage_ships_in_the_wheel(layer_pkg):
    import tomllib
    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert "schema_dsl." + layer_pkg in config["tool"]["setuptools"]["packages"]


# --- the two dialects (issue 16): the CLI goes through the registry, the neutral layers name no engine ------------

SQLITE_SIDE = ("schema_dsl.migrate", "schema_dsl.dialects.sqlite")
# migrate/'s neutral part, which PostgreSQL's planner consumes too: the change records and the decisions made once
# (diff.py), what a plan loses and its guard (loss.py), the Live model both engines' structure is read into, and
# the one Step, Plan and ApplyResult both engines build (steps.py)
NEUTRAL = ("schema_dsl.migrate.diff", "schema_dsl.migrate.loss", "schema_dsl.migrate.introspect",
           "schema_dsl.migrate.steps")
POSTGRESQL_SIDE = ("schema_dsl.pg", "schema_dsl.dialects.postgresql", "schema_dsl.check.pgcheck",
                   "schema_dsl.compile.postgresql")
# the modules that may name both engines, each for a reason of its own
BOTH_SIDES = {
    "schema_dsl.dialects": "the registry: for_db picks one, render runs each engine's renderer",
    "schema_dsl.check.pgcheck": "PostgreSQL's sample rows are SQLite's own generator run on a scratch file, so the "
                                "same declaration gets the same sample on both engines",
}


def _in(name, side):
    return any(name == prefix or name.startswith(prefix + ".") for prefix in side)


def _schema_dsl_imports(module):
    _, edges = _package_imports()
    return sorted({name for name, _, _ in edges[module] if name.startswith("schema_dsl")})


def test_the_cli_imports_no_dialect_module_only_the_registry():
    """cli.py parses, calls one library function and prints: nothing of either engine (pg/, migrate/, the SQLite
    ground, one dialect's module, psycopg) is imported there, only the registry (schema_dsl.dialects)."""
    _, edges = _package_imports()
    engine = SQLITE_SIDE + POSTGRESQL_SIDE + ("schema_dsl.sqlite",)
    wrong = ["schema_dsl/cli.py:%d imports %s" % (line, name) for name, line, _ in edges["schema_dsl.cli"]
             if _in(name, engine) or name.split(".")[0] == "psycopg"]
    assert not wrong, "\n".join(wrong)
    assert "schema_dsl.dialects" in _schema_dsl_imports("schema_dsl.cli")


def test_the_cli_defines_no_dialect_specific_function_and_does_not_pick_a_dialect():
    """No function or class of cli.py is named for an engine, and cli.py never applies the rule that picks the
    dialect of a --db (dialects.is_postgresql, name_of): it asks the registry for the dialect (for_db)."""
    tree = ast.parse((PACKAGE / "cli.py").read_text(encoding="utf-8"))
    named = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))
             if any(word in n.name.lower() for word in ("pg", "postgres", "sqlite"))]
    assert not named
    picks = [n.lineno for n in ast.walk(tree)
             if isinstance(n, ast.Attribute) and n.attr in ("is_postgresql", "name_of")]
    assert not picks, "cli.py picks a dialect itself at lines %s" % picks


def test_only_the_registry_names_both_dialects():
    """A module that imports both an SQLite-side module (migrate/, dialects/sqlite.py) and a PostgreSQL-side one
    (pg/, dialects/postgresql.py, check/pgcheck.py, compile/postgresql.py) is the registry or one of the listed
    exceptions; migrate/'s neutral part (NEUTRAL) is no side; pg/transfer.py reads SQLite through the SQLite ground (sqlite/), not migrate/."""
    _, edges = _package_imports()
    both = {}
    for module, imports in edges.items():
        names = {name for name, _, _ in imports}
        if any(_in(n, SQLITE_SIDE) and not _in(n, NEUTRAL) for n in names) and any(_in(n, POSTGRESQL_SIDE) for n in names):
            both[module] = sorted(n for n in names if _in(n, SQLITE_SIDE + POSTGRESQL_SIDE))
    unexpected = {m: n for m, n in both.items() if m not in BOTH_SIDES}
    assert not unexpected, unexpected
    assert set(BOTH_SIDES) <= set(both), "an exception no longer needed: drop it"


def test_the_neutral_layers_import_no_dialect():
    """The model, analysis/ and compile/ (but for compile/postgresql.py, PostgreSQL's renderer) import nothing of
    pg/, the dialects, migrate/ or check/, and not psycopg."""
    _, edges = _package_imports()
    wrong = []
    for module, imports in edges.items():
        if not _in(module, ("schema_dsl.model", "schema_dsl.analysis", "schema_dsl.compile")):
            continue
        if module == "schema_dsl.compile.postgresql":
            continue
        for name, line, _ in imports:
            if _in(name, POSTGRESQL_SIDE + SQLITE_SIDE + ("schema_dsl.dialects", "schema_dsl.check")) or \
                    name.split(".")[0] == "psycopg":
                wrong.append("%s:%d imports %s" % (module, line, name))
    assert not wrong, "\n".join(wrong)


def test_pg_modules_are_not_imported_by_the_sqlite_dialect():
    """dialects/sqlite.py and migrate/ import nothing of PostgreSQL's side (so apply on a file loads none of it)."""
    _, edges = _package_imports()
    wrong = ["%s imports %s" % (m, name) for m, imports in edges.items() if _in(m, SQLITE_SIDE)
             for name, _, _ in imports if _in(name, POSTGRESQL_SIDE)]
    assert not wrong, "\n".join(wrong)


def test_apply_on_an_sqlite_file_loads_no_postgresql_module(tmp_path):
    """The registry imports PostgreSQL's dialect only for a URL: `schemagen apply` (and validate) on a file load no
    pg/ module, no dialects/postgresql.py and no psycopg (apply's start-up time is benchmarked)."""
    import subprocess
    import sys
    script = ("import sys\n"
              "from schema_dsl.cli import main\n"
              "for args in (['apply', '--db', sys.argv[1]], ['validate', '--db', sys.argv[1]]):\n"
              "    try:\n"
              "        main(args, prog_name='schemagen')\n"
              "    except SystemExit as exc:\n"
              "        assert not exc.code, exc.code\n"
              "print(' '.join(sorted(m for m in sys.modules if m.startswith(('schema_dsl', 'psycopg')))))\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "app.db")], capture_output=True, text=True,
                          cwd=tmp_path, check=True)
    loaded = done.stdout.splitlines()[-1].split()
    assert "schema_dsl.dialects.sqlite" in loaded and "schema_dsl.migrate.apply" in loaded
    assert not [m for m in loaded
                if m.startswith(("schema_dsl.pg", "psycopg")) or m == "schema_dsl.dialects.postgresql"]


def test_one_sql_tokenizer_and_ddl_reader_in_the_ground_layer():
    """sqlite/ddl.py is the one SQL tokenizer and DDL reader (compile/, migrate/, pg/ and sqlite/structure.py use
    it): no other module defines its functions, and it imports the standard library only (the standalone validator
    embeds it)."""
    import sys
    names = {"tokenize", "token_spans", "join_tokens", "normalize_sql", "matching_paren", "split_top",
             "parse_create_table", "view_body", "table_options", "index_where"}
    defined = {}
    for module, path in _modules():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name in names:
                defined.setdefault(node.name, []).append(module)
    assert defined == {name: ["schema_dsl.sqlite.ddl"] for name in names}
    _, edges = _package_imports()
    imported = {name.split(".")[0] for name, _, _ in edges["schema_dsl.sqlite.ddl"]}
    assert imported and imported <= set(sys.stdlib_module_names), imported
