"""Which declaration a command works on, and whether its rendered files are in step with it.

Precedence: the `--schema SPEC` flag, then the project's `[tool.schemagen]`
table, then the shipped Abathur declaration.

- SPEC is `path/to/file.py[:NAME]`, `package.module[:NAME]`, or `abathur`
  for the shipped one; NAME defaults to `SCHEMA`.
- The project is found by walking up from the current directory to the first
  `pyproject.toml` that has a `[tool.schemagen]` table:

      [tool.schemagen]
      declaration = "myapp/schema.py"     # a SPEC, relative to the project root
      out = "generated"                   # where `schemagen render` writes (default)

- The project's own declaration works from the project's rendered files
  (`out/declaration.json` and the DDL files), which keeps apply's fast path
  free of Jinja2. The compiled declaration records a hash of its source, the
  declaration file and the project files it imports; when they no longer
  match, apply and plan refuse ("generated/ is stale for DECL: run
  schemagen render"). Any other declaration is compiled in memory.
- A declaration file inside a package (a folder with `__init__.py`) is
  loaded with that package as its parent, so relative imports work; when the
  package is already imported from elsewhere (schemagen installed from a
  wheel, run inside a checkout), the file itself is loaded all the same: the
  working tree's declaration, whatever the install mode.
- The files of a declaration's source are the declaration file, every other
  declaration it loads through `load_declaration`, and the modules first
  imported while it loads that live in the project (schemagen's own engine
  modules excepted).
"""
from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from pathlib import Path

try:  # the builtin sha256: hashlib loads OpenSSL first, 2 ms of apply's start-up for the same digest
    from _sha256 import sha256
except ImportError:  # pragma: no cover - an interpreter without it
    from hashlib import sha256

from ..errors import SchemagenError, StaleFiles
from .target import DECLARATION_FILE, Target, read_target, shipped_target

SHIPPED = "abathur"
DEFAULT_NAME = "SCHEMA"
DEFAULT_OUT = "generated"
ENGINE_DIR = Path(__file__).resolve().parent.parent  # the running schema_dsl package


class Project:
    """A project that names its declaration in pyproject.toml's [tool.schemagen].

    Plain classes here, not attrs: apply's fast path resolves the declaration and builds no model.
    """

    __slots__ = ("root", "declaration", "out", "dialects")

    def __init__(self, root, declaration, out=DEFAULT_OUT, dialects=None):
        self.root, self.declaration, self.out = Path(root), declaration, out
        self.dialects = tuple(dialects) if dialects else None  # [tool.schemagen] dialects; None: not listed

    @property
    def out_dir(self):
        return self.root / self.out


class Declaration:
    """A resolved declaration: where it comes from, and whether it is the project's own.

    spec: as named ("abathur", "db/schema.py:SCHEMA", "pkg.mod:S"); file: the declaration file (a path
    spec, or the shipped one); module: for a module spec; attr: the Schema's name in it; project: set when
    this is the project's own declaration; explicit: False for the fallback to the shipped declaration;
    root: labels are relative to it (the project root, else the file's folder).
    """

    __slots__ = ("spec", "file", "module", "attr", "project", "explicit", "root")

    def __init__(self, spec, file=None, module=None, attr=DEFAULT_NAME, project=None, explicit=True, root=None):
        self.spec, self.file, self.module, self.attr = spec, file, module, attr
        self.project, self.explicit, self.root = project, explicit, root

    @property
    def shipped(self):
        return self.spec == SHIPPED

    @property
    def label(self):
        """How headers and messages name the declaration: a path relative to the project root, '/' separators."""
        if self.file is not None:
            base = self.root or self.file.parent
            try:
                return self.file.relative_to(base).as_posix()
            except ValueError:
                return self.file.name
        return self.module

    @property
    def render_command(self):
        return "schemagen render" if self.project is not None or not self.explicit else \
            "schemagen render --schema %s" % self.spec


_TABLE_HEADER = re.compile(r"^\[\s*tool\s*\.\s*schemagen\s*\]\s*(#.*)?$")
_SIMPLE_ENTRY = re.compile(r"""^([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"([^"\\]*)"|'([^']*)')\s*(#.*)?$""")
# dialects = ["sqlite", "postgresql"]: a one-line list of plain double-quoted strings
_LIST_ENTRY = re.compile(r"""^([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*\[\s*((?:"[A-Za-z0-9_.-]*"\s*,\s*)*(?:"[A-Za-z0-9_.-]*"\s*)?)\]\s*(#.*)?$""")


def _schemagen_table(text):
    """The [tool.schemagen] table of a pyproject.toml text, or None when it has none.

    The usual form (a [tool.schemagen] header, then `key = "string"` lines) is read here; anything else
    that mentions schemagen goes to tomllib, whose import (5 ms) apply's start-up does not pay otherwise.
    """
    if "schemagen" not in text:
        return None
    lines = text.splitlines()
    starts = [k for k, line in enumerate(lines) if _TABLE_HEADER.match(line.strip())]
    if len(starts) == 1:
        table = {}
        for line in lines[starts[0] + 1:]:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                break
            m = _SIMPLE_ENTRY.match(line)
            listed = _LIST_ENTRY.match(line) if m is None else None
            if listed is not None and listed.group(1) not in table:
                table[listed.group(1)] = re.findall(r'"([^"]*)"', listed.group(2))
                continue
            if m is None or m.group(1) in table:
                table = None
                break
            table[m.group(1)] = m.group(2) if m.group(2) is not None else m.group(3)
        if table is not None and not _mentioned_elsewhere(lines, starts[0]):
            return table
    import tomllib  # only an unusual pyproject.toml needs the full TOML parser
    return tomllib.loads(text).get("tool", {}).get("schemagen")


def _mentioned_elsewhere(lines, header):
    """Whether anything but the one [tool.schemagen] table could add to it: a [tool.schemagen.x] subtable, a
    dotted `tool.schemagen...` key, or a `schemagen = ...` key inside [tool]."""
    current = None
    for k, line in enumerate(lines):
        text = line.strip()
        if text.startswith("["):
            current = re.sub(r"\s+", "", text.split("#")[0])
            if k != header and "schemagen" in current:
                return True
            continue
        key = re.sub(r"\s+", "", text.split("=")[0])
        if "schemagen" in key and (current == "[tool]" or key.startswith("tool.")):
            return True
    return False


def find_project(start=None):
    """The nearest enclosing project with a [tool.schemagen] table, or None."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if not candidate.is_file():
            continue
        try:
            table = _schemagen_table(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
            raise SchemagenError("%s: cannot be read as TOML (%s)" % (candidate, exc)) from None
        if table is None:
            continue
        if not isinstance(table, dict) or not isinstance(table.get("declaration"), str):
            raise SchemagenError("%s: [tool.schemagen] must name its declaration, e.g. declaration = "
                                 "\"myapp/schema.py\"" % candidate)
        out = table.get("out", DEFAULT_OUT)
        if not isinstance(out, str) or not out:
            raise SchemagenError("%s: [tool.schemagen] out must be a folder name, got %r" % (candidate, out))
        dialects = table.get("dialects")
        if dialects is not None and (not isinstance(dialects, list) or not dialects
                                     or not set(dialects) <= {"sqlite", "postgresql"}):
            raise SchemagenError("%s: [tool.schemagen] dialects must list \"sqlite\" and/or \"postgresql\", got %r" % (
                candidate, dialects))
        return Project(folder, table["declaration"], out, dialects)
    return None


def _split(spec):
    spec = spec.strip()
    head, sep, name = spec.rpartition(":")
    if sep and name.isidentifier() and head and not (len(head) == 1 and head.isalpha()):
        return head, name
    return spec, DEFAULT_NAME


def _is_path(target):
    return target.endswith(".py") or "/" in target or os.sep in target


def _shipped_file():
    return ENGINE_DIR / (SHIPPED + ".py")


def _same_file(a, b):
    try:
        return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def resolve(spec=None, cwd=None):
    """The Declaration a command works on: the flag's, the project's, or the shipped one."""
    cwd = Path(cwd or os.getcwd()).resolve()
    project = find_project(cwd)
    if spec is None and project is not None:
        return _from_spec(project.declaration, project.root, project, project.root)
    if spec is None:
        return Declaration(SHIPPED, file=_shipped_file(), module=__package__.rpartition(".")[0] + "." + SHIPPED,
                           explicit=False, root=ENGINE_DIR.parent)
    decl = _from_spec(spec, cwd, None, project.root if project else None)
    if project is not None:
        own = _from_spec(project.declaration, project.root, project, project.root)
        if (decl.file is not None and _same_file(decl.file, own.file) and decl.attr == own.attr) or \
                (decl.module is not None and decl.module == own.module and decl.attr == own.attr):
            return own
    return decl


def fallback_notice(cwd=None):
    """The one line that says a command or Database fell back to the shipped declaration."""
    return ("no --schema and no [tool.schemagen] in a pyproject.toml from %s up: using the shipped '%s' declaration"
            % (Path(cwd or os.getcwd()).resolve(), SHIPPED))


def render_dialects(decl, out_dir, dialect=None):
    """Which dialects render writes or checks: --dialect, the project's dialects, else sqlite (and postgresql
    where OUT/postgresql/ exists)."""
    if dialect is not None:
        return (dialect,)
    if decl.project is not None and decl.project.dialects:
        return decl.project.dialects
    return ("sqlite", "postgresql") if os.path.isdir(os.path.join(out_dir, "postgresql")) else ("sqlite",)


def refuse_dialect(decl, dialect, shown):
    """A project that lists its dialects ([tool.schemagen] dialects) refuses a database of another engine, in one
    line, before anything is read: a PostgreSQL-only project has no SQLite files to apply (and the reverse)."""
    dialects = decl.project.dialects if decl.project is not None else None
    if dialects and dialect not in dialects:
        raise SchemagenError("%s is %s, but %s declares dialects = [%s] ([tool.schemagen] in %s); nothing was "
                             "changed" % (shown, "a PostgreSQL URL" if dialect == "postgresql" else "an SQLite file",
                                          decl.label, ", ".join('"%s"' % d for d in dialects),
                                          decl.project.root / "pyproject.toml"))


def refuse_foreign(tables, declared, name=SHIPPED, api=False):
    """The guard of the fallback to the shipped declaration: a database that holds tables, none of them declared
    (declared: the shipped declaration's table names), is another application's; SchemagenError, exit 2.
    api: the hint names Database's schema= instead of --schema."""
    if not tables or {t.lower() for t in tables} & {t.lower() for t in declared}:
        return
    shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
    hint = ("pass schema= (a Schema or a SPEC) to Database, or schema=%r to use it on this file anyway" % name if api
            else "name your declaration with --schema SPEC or [tool.schemagen] in pyproject.toml, or pass --schema %s "
                 "to use it on this file anyway" % name)
    raise SchemagenError("database holds none of the tables of the shipped '%s' declaration (it has %s): %s; "
                         "nothing was changed" % (name, shown, hint))


def _from_spec(spec, base, project, root):
    target, name = _split(spec)
    if not target:
        raise SchemagenError("--schema %r: expected path/to/file.py[:NAME], package.module[:NAME] or abathur" % spec)
    if target == SHIPPED:
        shipped = _shipped_file()
        return Declaration(SHIPPED, file=shipped, module=__package__.rpartition(".")[0] + "." + SHIPPED, attr=name,
                           project=project, root=root or ENGINE_DIR.parent)
    if _is_path(target):
        path = (Path(base) / target).resolve()
        if not path.is_file():
            raise SchemagenError("declaration %r: no such file %s" % (spec, path))
        if root is not None:
            try:
                path.relative_to(root)
            except ValueError:
                root = None
        return Declaration(spec, file=path, attr=name, project=project, root=root)
    if not all(part.isidentifier() for part in target.split(".")):
        raise SchemagenError("--schema %r: expected path/to/file.py[:NAME], package.module[:NAME] or abathur" % spec)
    return Declaration(spec, module=target, attr=name, project=project, root=root)


# --- loading ----------------------------------------------------------------

_LOADED = {}      # (file or module, attr) -> (schema, source files)
_LOADING = []     # stack of source-file sets of the declarations being loaded (nested loads register here)


def load_declaration(spec, relative_to=None):
    """The Schema a SPEC names, loaded the way `--schema` loads it.

    For a declaration that derives from another: `load_declaration("schema_dsl/abathur.py",
    relative_to=__file__)`; the other file then counts as part of this one's source.
    """
    base = Path(relative_to).resolve().parent if relative_to and Path(relative_to).is_file() else \
        Path(relative_to or os.getcwd()).resolve()
    decl = _from_spec(spec, base, None, None)
    return load_schema(decl)


def _system_dirs():
    """The interpreter's standard library and installed-packages folders (sysconfig: loaded only here)."""
    import sysconfig  # loading a declaration only
    paths = sysconfig.get_paths()
    return {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib") if paths.get(k)}


def load_schema(decl):
    """Import a declaration and return its Schema (each file or module is loaded once per process)."""
    key = (str(decl.file) if decl.file is not None and not decl.shipped else decl.module, decl.attr)
    if key in _LOADED and _LOADED[key][3] != _digest(_LOADED[key][1]):
        # a declaration edited while this process runs (a long-lived process, a test): load it again
        for name in _LOADED.pop(key)[2]:
            sys.modules.pop(name, None)
    if key not in _LOADED:
        before = set(sys.modules)
        files = {decl.file.resolve()} if decl.file is not None else set()
        _LOADING.append(files)
        try:
            module = _import(decl)
        finally:
            _LOADING.pop()
        # the declaration's own modules: first imported while it loaded, from a file neither of this package
        # (but the shipped declaration) nor of the interpreter's standard library or installed packages (so a
        # declaration's helper modules count when they live in the project, not when they are installed); only
        # they count as its source and are dropped when it is loaded again (schema_dsl.model, attrs or decimal
        # imported first here are not the declaration's, and a second copy of the model would break isinstance)
        own = {module.__name__} if getattr(module, "__name__", None) else set()
        for name in set(sys.modules) - before:
            found = getattr(sys.modules.get(name), "__file__", None)
            if found:
                path = Path(found).resolve()
                shipped = path.name == SHIPPED + ".py" and _inside(path, ENGINE_DIR)
                if shipped or not (_inside(path, ENGINE_DIR) or any(_inside(path, p) for p in _system_dirs())):
                    files.add(path)
                    own.add(name)
        new_modules = own
        if getattr(module, "__file__", None):
            files.add(Path(module.__file__).resolve())
        from ..model import Schema  # only loading a declaration needs the model
        schema = getattr(module, decl.attr, None)
        if not isinstance(schema, Schema):
            raise SchemagenError("declaration %r: %s is %s, expected a schema_dsl.model.Schema" % (
                decl.spec, decl.attr, "missing" if schema is None else "a %s" % type(schema).__name__))
        _LOADED[key] = (schema, frozenset(files), frozenset(new_modules), _digest(files))
    schema, files = _LOADED[key][:2]
    if _LOADING:
        _LOADING[-1].update(files)
    return schema


def _digest(files):
    digest = sha256()
    for path in sorted(files):
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"\0missing")
    return digest.hexdigest()


def _inside(path, folder):
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _import(decl):
    """Import the declaration; anything its code raises or exits with becomes one SchemagenError naming
    file:line in the declaration's own code and what failed there. Ctrl-C stays an interrupt. Whatever the
    declaration prints goes to stderr: stdout is the command's own (--json)."""
    try:
        with contextlib.redirect_stdout(sys.stderr), _no_os_exit():
            if decl.file is None or (decl.shipped and decl.project is None):
                if decl.module is None:
                    raise SchemagenError("declaration %r: nothing to import" % decl.spec)
                with _on_path(os.getcwd()):
                    return importlib.import_module(decl.module)
            return _import_file(decl.file)
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:
        if getattr(exc, "_schemagen_located", False):
            raise
        raise _located(decl, exc) from None


class _OsExit(SystemExit):
    """os._exit called by a declaration while it loads (see _no_os_exit)."""


@contextlib.contextmanager
def _no_os_exit():
    """While a declaration loads, os._exit raises instead of ending the process on the spot (exit status as
    given, often 0, with nothing said): the load then fails as a sys.exit does, naming the line."""
    real = os._exit

    def refuse(status):
        raise _OsExit(status)
    os._exit = refuse
    try:
        yield
    finally:
        os._exit = real


def _located(decl, exc):
    """The SchemagenError for an exception raised while loading decl: 'declaration FILE:LINE (SOURCE): WHAT'."""
    frame = _user_frame(exc.__traceback__, decl)
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:  # raised by the compiler: no frame of its own
        frame = (exc.filename, exc.lineno)
    where = repr(decl.spec)
    if frame is not None:
        filename, lineno = frame
        where = "%s:%d" % (_shown_path(decl, filename), lineno)
        import linecache  # only a failed load needs the source line
        code = linecache.getline(filename, lineno).strip()
        if code:
            where += " (%s)" % (code if len(code) <= 80 else code[:77] + "...")
    if isinstance(exc, _OsExit):
        what = "the declaration exited (os._exit(%r)) while loading; a declaration must only build SCHEMA" % (exc.code,)
    elif isinstance(exc, SystemExit):
        what = "the declaration exited (sys.exit(%r)) while loading; a declaration must only build SCHEMA" % (exc.code,)
    elif isinstance(exc, SyntaxError):
        what = "%s: %s" % (type(exc).__name__, exc.msg)
    elif isinstance(exc, ImportError):
        what = "cannot import it (%s)" % " ".join(str(exc).split())
    elif isinstance(exc, SchemagenError):
        what = " ".join(str(exc).split())
    else:
        what = _attrs_sentence(exc, exc.__traceback__) or "%s: %s" % (type(exc).__name__, " ".join(str(exc).split()))
    error = SchemagenError("declaration %s: %s" % (where, what))
    error._schemagen_located = True
    return error


def _user_frame(tb, decl):
    """(filename, line) of the innermost traceback frame in the declaration's own code: a file that is neither
    schemagen's engine (the shipped declaration excepted), the standard library, site-packages nor generated."""
    import sysconfig  # only a failed load needs it
    stdlib = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib")}
    site = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    found = outermost = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith("<"):
            path = Path(filename).resolve()
            engine = _inside(path, ENGINE_DIR) and path.name != SHIPPED + ".py"
            if not engine and not any(_inside(path, folder) for folder in stdlib):
                if not any(_inside(path, folder) for folder in site):
                    found = (filename, tb.tb_lineno)
                elif outermost is None:  # a declaration installed as a package: its own top-level line
                    outermost = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found or outermost


def _shown_path(decl, filename):
    path = Path(filename).resolve()
    for base in (decl.root, Path.cwd()):
        if base is not None and _inside(path, Path(base).resolve()):
            return path.relative_to(Path(base).resolve()).as_posix()
    return str(path)


def _attrs_sentence(exc, tb):
    """attrs' validators raise (message, Attribute, expected, value): one sentence naming the class and field."""
    args = getattr(exc, "args", ())
    if len(args) != 4 or not hasattr(args[1], "name") or not hasattr(args[1], "validator"):
        return None
    owner = None
    while tb is not None:  # the attrs-generated __init__ of the class being built: "<attrs generated init M.C>"
        code = tb.tb_frame.f_code
        if code.co_name == "__init__" and code.co_filename.startswith("<attrs generated"):
            owner = code.co_filename.rstrip(">").rpartition(".")[2]
        tb = tb.tb_next
    field = "%s.%s" % (owner, args[1].name) if owner else args[1].name
    expected, value = args[2], args[3]
    if isinstance(expected, type) or (isinstance(expected, tuple) and all(isinstance(t, type) for t in expected)):
        names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
        return "%s must be a %s, got %r (%s)" % (field, names, value, type(value).__name__)
    try:
        options = ", ".join(repr(o) for o in expected)
    except TypeError:
        return "%s: %s" % (field, args[0])
    return "%s must be one of %s, got %r" % (field, options, value)


class _on_path:
    def __init__(self, folder):
        self.folder = str(folder)

    def __enter__(self):
        self.added = self.folder not in sys.path
        if self.added:
            sys.path.insert(0, self.folder)

    def __exit__(self, *exc):
        if self.added and self.folder in sys.path:
            sys.path.remove(self.folder)


def _import_file(path):
    import importlib.util  # only loading a declaration file by path needs it (2 ms)
    package_dirs = []
    folder = path.parent
    while (folder / "__init__.py").is_file():
        package_dirs.insert(0, folder)
        folder = folder.parent
    if not package_dirs:
        name = "_schemagen_declaration_" + sha256(str(path).encode()).hexdigest()[:12]
        with _on_path(path.parent):
            return _exec_file(name, path, None)
    package = ".".join(d.name for d in package_dirs)
    with _on_path(folder):
        parent = importlib.import_module(package)
        if any(_same_file(p, path.parent) for p in getattr(parent, "__path__", ())):
            return importlib.import_module(package + "." + path.stem)
        # the package is imported from elsewhere (an installed copy): load this very file as its member
        return _exec_file("%s._schemagen_declaration_%s" % (package, path.stem), path, package)


def _exec_file(name, path, package):
    import importlib.util  # see _import_file
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    if package is not None:
        module.__package__ = package
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


# --- the source hash and the project's rendered files ------------------------------

def source_files(decl):
    """The files of a declaration's source, relative to its root, sorted ('/' separators)."""
    load_schema(decl)
    key = (str(decl.file) if decl.file is not None and not decl.shipped else decl.module, decl.attr)
    root = decl.root
    out = []
    for path in _LOADED[key][1]:
        if root is not None and _inside(path, root):
            out.append(path.relative_to(root).as_posix())
        elif decl.file is not None and _inside(path, decl.file.parent):
            out.append(path.relative_to(decl.file.parent).as_posix())
        else:
            out.append(path.name)
    return sorted(set(out))


def source_hash(root, files):
    """sha256 over the named files (their relative names and bytes), in order."""
    digest = sha256()
    for name in files:
        digest.update(name.encode("utf-8") + b"\0")
        digest.update((Path(root) / name).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def origin(decl):
    """What rendered files say about their source: label, files, hash, the command that regenerates them."""
    files = source_files(decl)
    root = decl.root or (decl.file.parent if decl.file is not None else Path.cwd())
    try:
        digest = source_hash(root, files)
    except OSError:
        digest = None
    return {"declaration": decl.label, "files": files, "sha256": digest, "command": decl.render_command}


def stale_reason(decl, compiled):
    """Why the project's rendered files do not match its declaration, or None when they do."""
    source = compiled.get("source") or {}
    files, recorded = source.get("files"), source.get("sha256")
    if not files or not recorded:
        return "it records no source hash"
    try:
        current = source_hash(decl.project.root, files)
    except OSError as exc:
        return "cannot read %s (%s)" % (exc.filename, exc.strerror)
    return None if current == recorded else "the declaration changed since it was rendered"


def target(decl, check_fresh=True):
    """The Target a command applies: the project's rendered files (checked for staleness), the shipped
    ones for the fallback, or the declaration compiled in memory."""
    if decl.project is not None:
        out = decl.project.out_dir
        name = decl.project.out
        try:
            found = read_target(out, load=lambda: load_schema(decl))
        except StaleFiles:
            raise
        except SchemagenError:
            raise StaleFiles("%s/ is stale for %s: run %s (it has no usable %s)" % (
                name, decl.label, decl.render_command, DECLARATION_FILE)) from None
        if check_fresh:
            reason = stale_reason(decl, found.compiled) or (
                None if found.compiled.get("file_sha256") else "it records no hash of its rendered files")
            if reason:
                raise StaleFiles("%s/ is stale for %s: run %s (%s)" % (name, decl.label, decl.render_command, reason))
        return found
    if decl.shipped:
        return shipped_target()
    return Target.from_schema(load_schema(decl), origin=origin(decl))
