"""The same behaviour on SQLite and PostgreSQL: each test runs once per engine (a file, a throwaway PostgreSQL
database), or on both at once where it compares them.

Covered: every row of the exit-code table (docs/reference.md) for plan, apply, validate, explain and lint
(up to date, changes, problems found, refused for data loss without --yes, a foreign database, bad input); one
JSON shape per command (the same keys and JSON types on both, with "version": 1); validate --report, --verbose
and --full-integrity; a column added by hand kept by validate, plan and apply; options of one engine refused on
the other in one line; a project of one dialect; one Database class.
"""
from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from pg_cluster import pg_cluster, pg_url  # noqa: F401 (fixtures)

V1 = """
from schema_dsl.model import Column, Index, PrimaryKey, Schema, Table

SCHEMA = Schema(name="app", tables=[
    Table("authors", columns=[Column("id", "INTEGER"), Column("name", "TEXT", not_null=True)],
          primary_key=PrimaryKey(["id"])),
    Table("posts", columns=[Column("id", "INTEGER"), Column("author_id", "INTEGER"), Column("title", "TEXT")],
          primary_key=PrimaryKey(["id"])),
    Table("scratch", columns=[Column("id", "INTEGER"), Column("note", "TEXT")], primary_key=PrimaryKey(["id"])),
], indexes=[Index("idx_posts_title", "posts", ["title"], serves=["SELECT id FROM posts WHERE title = ?"])])
"""

# a change that keeps every row: a new column and a new index
V2 = V1.replace('Column("title", "TEXT")]', 'Column("title", "TEXT"), Column("body", "TEXT")]').replace(
    'serves=["SELECT id FROM posts WHERE title = ?"])]',
    'serves=["SELECT id FROM posts WHERE title = ?"]), Index("idx_posts_author", "posts", ["author_id"])]')

# a change that loses data: the table scratch goes
V_LOSS = V1.replace("import Column,", "import removed, Column,").replace(
    '    Table("scratch", columns=[Column("id", "INTEGER"), Column("note", "TEXT")], primary_key=PrimaryKey(["id"])),\n',
    "").replace('Schema(name="app",', 'Schema(name="app", removed=[removed("table", "scratch", "no longer used")],')

# posts.author_id gets a foreign key to authors: an orphan row already there is kept (and reported)
V_FK = V1.replace('from schema_dsl.model import Column,', 'from schema_dsl.model import fk, Column,').replace(
    '''Column("title", "TEXT")],
          primary_key=PrimaryKey(["id"])),''', '''Column("title", "TEXT")],
          primary_key=PrimaryKey(["id"]), foreign_keys=[fk("author_id", "authors", "id")]),''')

# a serves-query its index cannot serve (it filters on another column): a warning for explain and lint --strict
V_UNSERVED = V1.replace('serves=["SELECT id FROM posts WHERE title = ?"]', 'serves=["SELECT id FROM posts WHERE author_id = ?"]')


def _cli(runner, *args):
    from schema_dsl.cli import main
    return runner.invoke(main, list(args), catch_exceptions=False)


class Engine:
    def __init__(self, name, db, tmp_path):
        self.name, self.db, self.tmp = name, db, tmp_path

    def decl(self, text, name="schema"):
        path = self.tmp / ("%s_%s.py" % (name, self.name))
        path.write_text(text, encoding="utf-8")
        return str(path)

    def sql(self, *statements):
        """Run statements on the database as the application would (autocommit)."""
        if self.name == "sqlite":
            conn = sqlite3.connect(self.db, isolation_level=None)
        else:
            import psycopg
            conn = psycopg.connect(self.db, autocommit=True)
        try:
            for s in statements:
                conn.execute(s)
        finally:
            conn.close()

    def query(self, statement):
        if self.name == "sqlite":
            conn = sqlite3.connect(self.db)
            try:
                return conn.execute(statement).fetchall()
            finally:
                conn.close()
        import psycopg
        with psycopg.connect(self.db) as conn:
            return conn.execute(statement).fetchall()

    def tables(self):
        if self.name == "sqlite":
            return sorted(r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type = 'table'"))
        return sorted(r[0] for r in self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))

    def columns(self, table):
        if self.name == "sqlite":
            return [r[1] for r in self.query("PRAGMA table_info(%s)" % table)]
        return [r[0] for r in self.query("SELECT column_name FROM information_schema.columns WHERE table_name = '%s' "
                                         "ORDER BY ordinal_position" % table)]


def _engine(name, request, tmp_path):
    if name == "sqlite":
        return Engine("sqlite", str(tmp_path / "app.db"), tmp_path)
    return Engine("postgresql", request.getfixturevalue("pg_url"), tmp_path)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    return _engine(request.param, request, tmp_path)


@pytest.fixture
def both(request, tmp_path):
    sq = tmp_path / "sqlite"
    sq.mkdir()
    return _engine("sqlite", request, sq), _engine("postgresql", request, tmp_path)


def _applied(runner, engine, text=V1):
    spec = engine.decl(text)
    result = _cli(runner, "apply", "--db", engine.db, "--schema", spec)
    assert result.exit_code == 0, result.output + result.stderr
    return spec


def _one_line_error(result, *words):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for w in words:
        assert w in lines[0], lines[0]


# --- the exit-code table: plan, apply, validate, explain, lint ---------------------------------

def test_up_to_date_is_0_for_plan_apply_and_validate(runner, engine):
    spec = _applied(runner, engine)
    for command in ("plan", "apply", "validate"):
        result = _cli(runner, command, "--db", engine.db, "--schema", spec)
        assert result.exit_code == 0, (command, result.output, result.stderr)
        assert "up to date" in result.output or ": OK" in result.output, (command, result.output)


def test_a_change_is_planned_0_then_applied_0_and_validate_before_it_finds_problems_1(runner, engine):
    _applied(runner, engine)
    spec = engine.decl(V2, "v2")
    before = _cli(runner, "validate", "--db", engine.db, "--schema", spec)
    assert before.exit_code == 1 and "idx_posts_author" in before.output, before.output
    planned = _cli(runner, "plan", "--db", engine.db, "--schema", spec)
    assert planned.exit_code == 0 and "idx_posts_author" in planned.output
    assert "body" not in engine.columns("posts")
    applied = _cli(runner, "apply", "--db", engine.db, "--schema", spec)
    assert applied.exit_code == 0, applied.output + applied.stderr
    assert "body" in engine.columns("posts")
    assert _cli(runner, "validate", "--db", engine.db, "--schema", spec).exit_code == 0


def test_a_plan_that_loses_data_is_refused_2_without_yes_and_nothing_changes(runner, engine):
    _applied(runner, engine)
    engine.sql("INSERT INTO scratch (id, note) VALUES (1, 'keep me')")
    spec = engine.decl(V_LOSS, "loss")
    refused = _cli(runner, "apply", "--db", engine.db, "--schema", spec)
    assert refused.exit_code == 2, refused.output + refused.stderr
    _one_line_error(refused, "loses data", "nothing was changed")
    assert "scratch" in engine.tables() and engine.query("SELECT count(*) FROM scratch")[0][0] == 1
    extra = ["--allow-data-loss"] if engine.name == "postgresql" else []
    accepted = _cli(runner, "apply", "--db", engine.db, "--schema", spec, "--yes", *extra)
    assert accepted.exit_code == 0, accepted.output + accepted.stderr
    assert "scratch" not in engine.tables()


def test_orphans_already_in_the_data_exit_1_for_validate_and_apply_check_data(runner, engine):
    spec = _applied(runner, engine, V_FK)
    engine.sql("INSERT INTO authors (id, name) VALUES (1, 'ann')", "INSERT INTO posts (id, author_id) VALUES (1, 1)")
    if engine.name == "sqlite":  # foreign_keys is off on this connection: the orphan goes in, as an old file has it
        engine.sql("INSERT INTO posts (id, author_id, title) VALUES (2, 99, 'orphan')")
    else:  # kept under the foreign key re-added NOT VALID, as transfer --orphans=not-valid leaves it
        engine.sql("ALTER TABLE posts DROP CONSTRAINT posts_author_id_fkey",
                   "INSERT INTO posts (id, author_id, title) VALUES (2, 99, 'orphan')",
                   "ALTER TABLE posts ADD CONSTRAINT posts_author_id_fkey FOREIGN KEY (author_id) "
                   "REFERENCES authors (id) NOT VALID")
    valid = _cli(runner, "validate", "--db", engine.db, "--schema", spec, "--json")
    assert valid.exit_code == 1, valid.output + valid.stderr
    report = json.loads(valid.output)
    assert not report["ok"] and len(report["violations"]) == 1 and "posts" in report["violations"][0]
    # apply leaves the whole-file data checks to validate, unless --check-data: then it exits 1 as validate does
    assert _cli(runner, "apply", "--db", engine.db, "--schema", spec).exit_code == 0
    checked = _cli(runner, "apply", "--db", engine.db, "--schema", spec, "--check-data")
    assert checked.exit_code == 1, checked.output + checked.stderr
    assert engine.query("SELECT count(*) FROM posts")[0][0] == 2  # the orphan is kept, not deleted


def test_a_foreign_database_is_refused_2_under_the_shipped_fallback(runner, engine, tmp_path, monkeypatch):
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    monkeypatch.chdir(nowhere)  # no [tool.schemagen]: the shipped declaration, and its guard
    engine.sql("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER)")
    for command in ("plan", "apply", "validate", "explain", "lint"):
        result = _cli(runner, command, "--db", engine.db)
        assert result.exit_code == 2, (command, result.output, result.stderr)
        assert "invoices" in result.stderr or "another application" in result.stderr, (command, result.stderr)
    assert engine.tables() == ["invoices"]


@pytest.mark.parametrize("command", ["plan", "apply", "validate", "explain", "lint"])
def test_bad_input_is_one_line_and_exit_2(runner, engine, command):
    result = _cli(runner, command, "--db", engine.db, "--schema", str(engine.tmp / "missing.py"))
    assert result.exit_code == 2, result.output + result.stderr
    _one_line_error(result, "missing.py")


def test_explain_and_lint_exit_0_with_findings_and_1_under_strict(runner, engine):
    spec = _applied(runner, engine, V_UNSERVED)
    for command in ("explain", "lint"):
        plain = _cli(runner, command, "--db", engine.db, "--schema", spec)
        assert plain.exit_code == 0, (command, plain.output, plain.stderr)
        strict = _cli(runner, command, "--db", engine.db, "--schema", spec, "--strict")
        assert strict.exit_code == 1, (command, strict.output, strict.stderr)
        assert "--strict" in strict.stderr


# --- validate: --report, --verbose, --full-integrity -------------------------------------------

def test_validate_report_verbose_and_full_integrity_work(runner, engine):
    spec = _applied(runner, engine)
    path = engine.tmp / ("r-%s.md" % engine.name)
    result = _cli(runner, "validate", "--db", engine.db, "--schema", spec, "--report", str(path))
    assert result.exit_code == 0 and path.is_file(), result.output + result.stderr
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Validation report") and "**OK**" in text and "`posts`" in text
    verbose = _cli(runner, "validate", "--db", engine.db, "--schema", spec, "--verbose")
    short = _cli(runner, "validate", "--db", engine.db, "--schema", spec)
    assert verbose.exit_code == 0 and "[ok] structure matches the declaration" in verbose.output
    assert "[ok]" not in short.output and len(verbose.output) > len(short.output)
    full = _cli(runner, "validate", "--db", engine.db, "--schema", spec, "--full-integrity", "--json")
    assert full.exit_code == 0
    checks = [c["check"] for c in json.loads(full.output)["checks"]]
    assert any("integrity" in c for c in checks), checks
    plain = [c["check"] for c in json.loads(_cli(runner, "validate", "--db", engine.db, "--schema", spec,
                                                   "--json").output)["checks"]]
    assert checks != plain  # --full-integrity runs (and names) the whole-file check, not the quick one


def test_apply_report_and_verbose_work(runner, engine):
    spec = engine.decl(V1)
    path = engine.tmp / ("a-%s.md" % engine.name)
    result = _cli(runner, "apply", "--db", engine.db, "--schema", spec, "--report", str(path), "--verbose")
    assert result.exit_code == 0, result.output + result.stderr
    assert path.is_file() and "# Validation report" in path.read_text(encoding="utf-8")
    assert "[ok] structure matches the declaration" in result.output


# --- kept: what the user added by hand ---------------------------------------------------------

def test_apply_no_validate_refuses_report_instead_of_writing_nothing(runner, engine):
    # --no-validate skips the report: --report wrote no file and apply exited 0, on both engines
    spec = engine.decl(V1)
    report = engine.tmp / "r.md"
    result = _cli(runner, "apply", "--db", engine.db, "--schema", spec, "--no-validate", "--report", str(report))
    assert result.exit_code == 2, result.output + result.stderr
    _one_line_error(result, "--report", "--no-validate")
    assert engine.tables() == [] and not report.exists()


@pytest.mark.parametrize("option", ["--verbose", "--check-data", "--full-integrity"])
def test_apply_no_validate_refuses_what_adds_to_the_skipped_report(runner, engine, option):
    # each asks for the report --no-validate skips: apply exited 0 and silently dropped it, on both engines
    spec = engine.decl(V1)
    result = _cli(runner, "apply", "--db", engine.db, "--schema", spec, "--no-validate", option)
    assert result.exit_code == 2, result.output + result.stderr
    _one_line_error(result, option, "--no-validate")
    assert engine.tables() == []


def test_a_column_added_by_hand_is_kept_by_validate_plan_and_apply(runner, engine):
    spec = _applied(runner, engine)
    engine.sql("ALTER TABLE posts ADD COLUMN mine TEXT")
    for command in ("validate", "plan", "apply"):
        result = _cli(runner, command, "--db", engine.db, "--schema", spec, "--json")
        assert result.exit_code == 0, (command, result.output, result.stderr)
        doc = json.loads(result.output)
        if command == "validate":
            assert doc["ok"] and doc["differences"] == []
            assert any("mine" in e for e in doc["extras"]), doc["extras"]
        else:
            assert doc["up_to_date"] and any("mine" in k for k in doc["kept"]), doc["kept"]
    assert "mine" in engine.columns("posts")


# --- one JSON shape per command ----------------------------------------------------------------

def _shape(value, path=""):
    """{path: JSON type} for every key (lists: their first item stands for all); null is noted as such."""
    out = {}
    if isinstance(value, dict):
        out[path or "."] = "object"
        for k, v in value.items():
            out.update(_shape(v, "%s.%s" % (path, k)))
    elif isinstance(value, list):
        out[path or "."] = "array"
        if value:
            out.update(_shape(value[0], path + "[]"))
    else:
        out[path or "."] = {bool: "boolean", int: "number", float: "number", str: "string",
                            type(None): "null"}[type(value)]
    return out


def _hidden(key, shape):
    """Whether key cannot be there on this side: under an empty list or object ([] or {}: what does not apply on
    this engine), or under a null."""
    for n in range(1, len(key)):
        p = key[:n]
        if key[n:].startswith(("[]", ".")) and p in shape:
            if shape[p] == "null" or (shape[p] == "array" and p + "[]" not in shape) or \
                    (shape[p] == "object" and not any(k.startswith(p + ".") for k in shape)):
                return True
    return False


def _same_shape(a, b):
    """The differences of two documents' shapes: a key on one side only, or two types (null matches any type:
    a value unknown here, on both engines alike; nothing is compared under an empty list or a null)."""
    sa, sb = _shape(a), _shape(b)
    diffs = []
    for key in sorted(set(sa) | set(sb)):
        if key not in sa or key not in sb:
            if not _hidden(key, sa if key not in sa else sb):
                diffs.append("%s: %s / %s" % (key, sa.get(key, "absent"), sb.get(key, "absent")))
        elif sa[key] != sb[key] and "null" not in (sa[key], sb[key]):
            diffs.append("%s: %s / %s" % (key, sa[key], sb[key]))
    return diffs


def _documents(runner, e, command):
    spec = e.decl(V1)
    if command == "apply":
        return _cli(runner, "apply", "--db", e.db, "--schema", spec, "--json")
    assert _cli(runner, "apply", "--db", e.db, "--schema", spec).exit_code == 0
    if command == "plan":
        return _cli(runner, "plan", "--db", e.db, "--schema", e.decl(V2, "v2"), "--json")
    if command == "plan --online":
        return _cli(runner, "plan", "--db", e.db, "--schema", e.decl(V2, "v2"), "--json", "--online")
    if command == "apply (migrate)":
        return _cli(runner, "apply", "--db", e.db, "--schema", e.decl(V2, "v2"), "--json")
    if command == "validate":
        return _cli(runner, "validate", "--db", e.db, "--schema", spec, "--json")
    return _cli(runner, command, "--db", e.db, "--schema", spec, "--json")


@pytest.mark.parametrize("command", ["plan", "plan --online", "apply", "apply (migrate)", "validate", "explain",
                                     "lint"])
def test_the_json_document_has_the_same_keys_and_types_on_both_engines(runner, both, command):
    docs = []
    for e in both:
        result = _documents(runner, e, command)
        assert result.exit_code == 0, (e.name, result.output, result.stderr)
        docs.append(json.loads(result.output))
    sqlite_doc, pg_doc = docs
    assert type(sqlite_doc) is type(pg_doc)
    if isinstance(sqlite_doc, dict):
        assert sqlite_doc["version"] == pg_doc["version"] == 1
        assert sqlite_doc.get("dialect", "sqlite") == "sqlite" and pg_doc.get("dialect", "postgresql") == "postgresql"
    else:
        assert sqlite_doc and pg_doc  # explain and lint stay lists, and both have items to compare
    assert _same_shape(sqlite_doc, pg_doc) == []
    if command == "validate":  # the same facts on both: the serves-query's plan, the tables as a list
        for doc in docs:
            assert [e["index"] for e in doc["explain"]] == ["idx_posts_title"] and doc["explain"][0]["uses_index"]
            assert [t["name"] for t in doc["tables"]] == ["authors", "posts", "scratch"]


def test_plan_json_says_fresh_for_a_new_database_on_both(runner, both):
    for e in both:
        new = json.loads(_cli(runner, "plan", "--db", e.db, "--schema", e.decl(V1), "--json").output)
        assert new["fresh"] and not new["up_to_date"] and new["steps"], e.name
        _applied(runner, e)
        changed = json.loads(_cli(runner, "plan", "--db", e.db, "--schema", e.decl(V2, "v2"), "--json").output)
        assert not changed["fresh"] and changed["steps"], e.name


def test_apply_json_has_steps_at_the_top_and_tables_as_a_list_on_both(runner, both):
    for e in both:
        doc = json.loads(_documents(runner, e, "apply (migrate)").output)
        assert isinstance(doc["steps"], list) and doc["steps"] and "plan" not in doc, (e.name, sorted(doc))
        assert isinstance(doc["report"]["tables"], list) and {"name": "posts", "type": "table"} in doc["report"]["tables"]
        assert all(isinstance(s["seconds"], float) for s in doc["steps"] if s["seconds"] is not None)


# --- options of one engine, refused on the other -----------------------------------------------

@pytest.mark.parametrize("args,engine_name,option", [
    (("apply", "--concurrently"), "sqlite", "--concurrently"),
    (("plan", "--concurrently"), "sqlite", "--concurrently"),
    (("apply", "--lock-timeout", "1s"), "sqlite", "--lock-timeout"),
    (("apply", "--statement-timeout", "1s"), "sqlite", "--statement-timeout"),
    (("apply", "--backup-dir", "."), "postgresql", "--backup-dir"),
    (("apply", "--keep-backups", "2"), "postgresql", "--keep-backups"),
    (("restore",), "postgresql", "no file backup"),
    (("inspect",), "postgresql", "inspect"),
])
def test_an_option_of_one_engine_is_refused_on_the_other_in_one_line(runner, request, tmp_path, args, engine_name,
                                                                     option):
    e = _engine(engine_name, request, tmp_path)
    spec = _applied(runner, e)
    before = e.tables()
    extra = ["--schema", spec] if args[0] in ("apply", "plan") else []
    result = _cli(runner, args[0], "--db", e.db, *args[1:], *extra)
    assert result.exit_code == 2, result.output + result.stderr
    _one_line_error(result, option)
    assert e.tables() == before


@pytest.mark.parametrize("command", ["plan", "explain", "lint", "history", "inspect", "restore"])
def test_a_second_db_for_a_command_of_one_database_is_refused_not_dropped(runner, both, tmp_path, command):
    # click keeps the last of a repeated option: `plan --db a.db --db b.db` planned b.db alone, silently
    sq, pg = both
    spec = _applied(runner, sq)
    other = str(tmp_path / "other.db")
    for dbs in ([sq.db, other], [pg.db, sq.db], [sq.db, pg.db]):
        extra = ["--schema", spec] if command in ("plan", "explain", "lint") else []
        args = [command]
        for db in dbs:
            args += ["--db", db]
        result = _cli(runner, *args, *extra)
        assert result.exit_code == 2, (dbs, result.output + result.stderr)
        _one_line_error(result, "--db", "one database")
        assert result.stdout == ""
    assert not (tmp_path / "other.db").exists()


def test_a_postgresql_url_with_its_scheme_in_capitals_connects(runner, pg_url, tmp_path):
    # the scheme of a URL is case-insensitive, and --db POSTGRESQL://... is taken as PostgreSQL, but libpq knows
    # only the lower-case scheme: it failed with 'missing "=" after ...' (the URL read as key=value pairs)
    e = Engine("postgresql", pg_url, tmp_path)
    spec = _applied(runner, e)
    shouted = "POSTGRESQL" + pg_url[len("postgresql"):]
    for command in ("plan", "validate"):
        result = _cli(runner, command, "--db", shouted, "--schema", spec)
        assert result.exit_code == 0, result.output + result.stderr
    from schema_dsl import Database
    db = Database(shouted, schema=spec)
    assert asyncio.run(db.validate())["ok"]


@pytest.mark.parametrize("name", ["postgresql:app", "postgres:/app", "PostgreSQL:app"])
def test_a_postgresql_url_without_its_slashes_is_refused_not_made_an_sqlite_file(runner, tmp_path, monkeypatch, name):
    # postgresql:app (a URL mistyped) was taken as a file path: apply made an SQLite file of that name
    monkeypatch.chdir(tmp_path)
    spec = Engine("sqlite", "unused", tmp_path).decl(V1)
    for command in ("apply", "plan", "validate"):
        result = _cli(runner, command, "--db", name, "--schema", spec)
        assert result.exit_code == 2, result.output + result.stderr
        _one_line_error(result, name, "postgresql://", "./" + name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.split("/")[-1] for p in [spec]]
    from schema_dsl import Database
    from schema_dsl.errors import SchemagenError
    with pytest.raises(SchemagenError, match="postgresql://"):
        asyncio.run(Database(name, schema=spec).initialize())
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.split("/")[-1] for p in [spec]]
    # a file of that very name is still reachable as ./name
    (tmp_path / "postgres:").mkdir()
    result = _cli(runner, "apply", "--db", "./" + name, "--schema", spec)
    assert result.exit_code == 0, result.output + result.stderr


def test_transfer_from_a_postgresql_url_is_refused_in_one_line_without_its_password(runner, pg_url, tmp_path):
    # --from is an SQLite file; a URL there was told "looks like a PostgreSQL URL without its '//'"
    spec = Engine("sqlite", "unused", tmp_path).decl(V1)
    secret = pg_url + "&password=hunter2sekrit"
    result = _cli(runner, "transfer", "--from", secret, "--to", pg_url, "--schema", spec)
    assert result.exit_code == 2, result.output + result.stderr
    _one_line_error(result, "a PostgreSQL URL was given where the path of an SQLite database file is expected")
    assert "hunter2sekrit" not in result.output + result.stderr


def test_diff_db_refuses_a_postgresql_url(runner, pg_url, tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text(V1, encoding="utf-8")
    b.write_text(V2, encoding="utf-8")
    result = _cli(runner, "diff", str(a), str(b), "--db", pg_url)
    assert result.exit_code == 2
    _one_line_error(result, "diff", "SQLite")


# --- a project of one dialect ------------------------------------------------------------------

def _project(tmp_path, monkeypatch, dialects):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text('[tool.schemagen]\ndeclaration = "schema.py"\ndialects = [%s]\n' % ", ".join(
        '"%s"' % d for d in dialects), encoding="utf-8")
    (root / "schema.py").write_text(V1, encoding="utf-8")
    monkeypatch.chdir(root)
    return root


def test_a_postgresql_only_project_renders_plans_applies_and_validates(runner, pg_url, tmp_path, monkeypatch):
    root = _project(tmp_path, monkeypatch, ["postgresql"])
    rendered = _cli(runner, "render")
    assert rendered.exit_code == 0, rendered.output + rendered.stderr
    assert (root / "generated" / "postgresql" / "declaration.json").is_file()
    assert not (root / "generated" / "declaration.json").exists()  # no SQLite files: the project has none
    for command in ("plan", "apply", "validate", "apply"):
        result = _cli(runner, command, "--db", pg_url)
        assert result.exit_code == 0, (command, result.output, result.stderr)
    assert "posts" in Engine("postgresql", pg_url, tmp_path).tables()
    refused = _cli(runner, "apply", "--db", str(tmp_path / "x.db"))
    assert refused.exit_code == 2 and not (tmp_path / "x.db").exists()
    _one_line_error(refused, "dialects", "postgresql")


def test_an_sqlite_only_project_refuses_a_postgresql_url(runner, pg_url, tmp_path, monkeypatch):
    _project(tmp_path, monkeypatch, ["sqlite"])
    assert _cli(runner, "render").exit_code == 0
    for command in ("plan", "apply", "validate", "explain", "lint"):
        result = _cli(runner, command, "--db", pg_url)
        assert result.exit_code == 2, (command, result.output, result.stderr)
        _one_line_error(result, "PostgreSQL URL", "dialects", "sqlite")
    assert Engine("postgresql", pg_url, tmp_path).tables() == []


# --- one Database class ------------------------------------------------------------------------

def _public(cls):
    return {m for klass in cls.__mro__ if klass is not object for m, v in vars(klass).items()
            if not m.startswith("__") and (not m.startswith("_") or m.startswith("_create_"))
            and (callable(v) or isinstance(v, property))}


def test_one_database_class_with_the_same_methods_on_both_engines(engine):
    from schema_dsl import Database
    from schema_dsl.model import Schema
    from schema_dsl.pg.database import PgDatabase
    scope = {}
    exec(V1, scope)
    db = Database(engine.db, schema=scope["SCHEMA"])
    assert isinstance(db, Database) and type(db).__name__ == "Database"
    assert isinstance(db, PgDatabase) == (engine.name == "postgresql")
    # every public member of Database is PostgreSQL's own on PostgreSQL (none falls through to SQLite's)
    assert _public(Database) and {m for m in _public(Database) if m not in vars(PgDatabase)} == set()
    assert isinstance(db.schema, Schema) and db.statements and all(isinstance(s, str) for s in db.statements)

    async def scenario():
        first = await db.initialize(allow_data_loss=False, backup=False, online=False)
        assert first.applied
        report = await db.validate()
        assert report["ok"] and {"name": "posts", "type": "table"} in report["tables"]
        assert [e["index"] for e in report["explain"]] == ["idx_posts_title"]
        async with db.connect() as conn:
            await conn.execute("INSERT INTO authors (id, name) VALUES (1, 'ann')")
            await conn.commit()
        plan = await db.explain_query_plan("SELECT id FROM posts WHERE title = %s" if engine.name == "postgresql"
                                           else "SELECT id FROM posts WHERE title = ?", ("x",))
        assert plan and all(isinstance(line, str) for line in plan)
        assert await db.validate_foreign_keys() == []
        assert await db.integrity_check() == ["ok"]
        await db.close()

    asyncio.run(scenario())


def test_a_database_holds_the_dialect_the_registry_picks_for_its_path_or_url(engine):
    """Database(path_or_url) asks the registry (the CLI's rule for --db) and holds the dialect it gets."""
    from schema_dsl import Database, dialects
    scope = {}
    exec(V1, scope)
    db = Database(engine.db, schema=scope["SCHEMA"])
    assert db.dialect is dialects.for_db(engine.db) and db.dialect.name == engine.name
    assert type(db) is db.dialect.database_class(Database)


def test_initialize_returns_the_same_result_and_logs_what_goes_on_both(engine, caplog):
    # on PostgreSQL the result had no .path or .backup (AttributeError where SQLite's code reads them), and a
    # removal's count was not logged, although the README says initialize logs every count on both
    from schema_dsl import Database
    scope, loss = {}, {}
    exec(V1, scope)
    exec(V_LOSS, loss)

    async def scenario():
        first = await Database(engine.db, schema=scope["SCHEMA"]).initialize()
        assert first.applied and first.backup is None and first.path == engine.db
        db = Database(engine.db, schema=loss["SCHEMA"], backup=False)
        with caplog.at_level("WARNING", logger="schema_dsl.database"):
            second = await db.initialize(allow_data_loss=True)
        assert second.applied and second.backup is None and second.path == engine.db
        assert [x["table"] for x in second.plan.data_loss] == ["scratch"]
        await db.close()

    asyncio.run(scenario())
    assert "removed by the declaration: table 'scratch': 0 rows go" in caplog.text


@pytest.mark.parametrize("online", [False, True], ids=["plain", "online"])
def test_initialize_refuses_a_data_loss_with_declined_on_both(engine, online):
    # PostgreSQL raised UnsafeMigrationError where SQLite (its default backup on) raises Declined
    from schema_dsl import Database
    from schema_dsl.errors import Declined
    scope, loss = {}, {}
    exec(V1, scope)
    exec(V_LOSS, loss)

    async def scenario():
        await Database(engine.db, schema=scope["SCHEMA"]).initialize()
        db = Database(engine.db, schema=loss["SCHEMA"])
        try:
            with pytest.raises(Declined, match=r"the plan loses data \(table 'scratch'.*nothing was changed: pass "
                                               r"initialize\(allow_data_loss=True\) to accept it") as info:
                await db.initialize(online=online)
        finally:
            await db.close()
        assert "\n" not in str(info.value)

    asyncio.run(scenario())
    assert "scratch" in engine.tables()


@pytest.mark.parametrize("online", [False, True], ids=["plain", "online"])
def test_apply_gives_the_same_result_plan_and_step_classes_on_both(engine, online):
    """One ApplyResult, one Plan and one Step on both engines, for a fresh and a migrating apply, plain and online
    (PostgreSQL had its own: PgStep, PgPlan, MigrateResult, PgOnlineResult, OnlineStep); every step serves a change
    record, its kind that record's class name; the online facts are a dict on both ({} where none apply)."""
    from schema_dsl import Database
    from schema_dsl.migrate.steps import ApplyResult, Plan, Step
    one, two = {}, {}
    exec(V1, one)
    exec(V2, two)

    async def scenario():
        fresh = await Database(engine.db, schema=one["SCHEMA"], backup=False).initialize(online=online)
        db = Database(engine.db, schema=two["SCHEMA"], backup=False)
        migrated = await db.initialize(online=online)
        await db.close()
        return fresh, migrated

    fresh, migrated = asyncio.run(scenario())
    for result in (fresh, migrated):
        assert type(result) is ApplyResult and type(result.plan) is Plan and result.applied
        assert result.plan.steps and {type(s) for s in result.plan.steps} == {Step}
        assert all(s.change is not None and s.kind == type(s.change).__name__ for s in result.plan.steps)
        assert type(result.online) is dict
    assert fresh.fresh and fresh.online == {} and [s.kind for s in fresh.plan.steps][0] == "RunFile"
    assert not migrated.fresh and bool(migrated.online) == online


# apply --online --json's "online" object: the keys SQLite reported, each with one JSON type on both engines
ONLINE_TYPES = {"transactions": int, "retries": int, "longest_lock": float, "longest_lock_step": str,
                "longest_locks": list, "longest_reads": list, "longest_own_lock": float, "longest_own_lock_step": str,
                "phases": list, "longest_checkpoints": list}


def test_apply_online_json_gives_the_same_online_keys_and_types_on_both(runner, engine):
    """apply --online --json's online object has the same keys, each with the same JSON type, on both engines
    (PostgreSQL reported only transactions and retries): the held time of each committed transaction where the
    engine measures it, [] where a fact does not apply; up to date, the same keys; a plain apply, {}."""
    _applied(runner, engine)
    v2 = engine.decl(V2, "v2")
    migrated = _cli(runner, "apply", "--db", engine.db, "--schema", v2, "--online", "--json")
    assert migrated.exit_code == 0, migrated.output + migrated.stderr
    online = json.loads(migrated.output)["online"]
    assert {k: type(v) for k, v in online.items()} == ONLINE_TYPES
    assert online["transactions"] > 0 and online["longest_lock"] > 0 and online["longest_lock_step"]
    assert online["longest_locks"] and {"step", "began", "held_ms", "commit_ms"} <= set(online["longest_locks"][0])
    assert online["longest_locks"][0]["held_ms"] == round(online["longest_lock"] * 1000, 1)
    again = _cli(runner, "apply", "--db", engine.db, "--schema", v2, "--online", "--json")
    assert again.exit_code == 0, again.output + again.stderr
    assert {k: type(v) for k, v in json.loads(again.output)["online"].items()} == ONLINE_TYPES
    plain = _cli(runner, "apply", "--db", engine.db, "--schema", v2, "--json")
    assert json.loads(plain.output)["online"] == {}


def test_a_method_without_meaning_on_postgresql_raises_one_line_naming_it(pg_url):
    from schema_dsl import Database
    from schema_dsl.database import NotOnThisEngine
    scope = {}
    exec(V1, scope)
    db = Database(pg_url, schema=scope["SCHEMA"])
    with pytest.raises(NotOnThisEngine, match=r"^Database\.files: PostgreSQL") as info:
        db.files
    assert "\n" not in str(info.value) and isinstance(info.value, NotImplementedError)
    with pytest.raises(NotOnThisEngine, match=r"Database\.create_file"):
        asyncio.run(db.create_file(None, "ddl-tables.sql"))


def test_initialize_online_runs_postgresqls_online_apply(pg_url, tmp_path):
    from schema_dsl import Database
    from schema_dsl.migrate.steps import ApplyResult
    one, two = {}, {}
    exec(V1, one)
    exec(V2, two)

    async def scenario():
        await Database(pg_url, schema=one["SCHEMA"]).initialize()
        db = Database(pg_url, schema=two["SCHEMA"])
        result = await db.initialize(online=True)
        assert type(result) is ApplyResult and result.applied and result.online["transactions"] > 0
        assert (await db.validate())["ok"]

    asyncio.run(scenario())
    assert "body" in Engine("postgresql", pg_url, tmp_path).columns("posts")


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_database_of_a_one_dialect_project_refuses_the_other_engine_in_one_line(request, tmp_path, monkeypatch,
                                                                                dialect):
    from schema_dsl import Database
    from schema_dsl.errors import SchemagenError
    _project(tmp_path, monkeypatch, [dialect])
    other = _engine("postgresql" if dialect == "sqlite" else "sqlite", request, tmp_path)
    with pytest.raises(SchemagenError, match=r"declares dialects = \[\"%s\"\]" % dialect) as info:
        Database(other.db)
    assert "\n" not in str(info.value)


# --- decided once, in the neutral diff: removals, what is kept, renames, the data-loss count ------------------

def test_a_removal_is_planned_and_counted_alike_on_both(runner, both):
    """The same steps (titles and kinds) and the same data-loss entries on both engines for a declared removal."""
    docs = []
    for e in both:
        _applied(runner, e)
        e.sql("INSERT INTO scratch (id, note) VALUES (1, 'goes')")
        result = _cli(runner, "plan", "--db", e.db, "--schema", e.decl(V_LOSS, "loss"), "--json")
        assert result.exit_code == 0, (e.name, result.output, result.stderr)
        docs.append(json.loads(result.output))
    sqlite_doc, pg_doc = docs
    assert [(s["kind"], s["title"]) for s in sqlite_doc["steps"]] == [(s["kind"], s["title"]) for s in pg_doc["steps"]]
    assert [s["title"] for s in pg_doc["steps"]] == ["drop table 'scratch' (1 row)"]
    assert sqlite_doc["data_loss"] == pg_doc["data_loss"]


def test_what_is_kept_is_the_same_list_on_both(runner, both):
    kept = []
    for e in both:
        _applied(runner, e)
        e.sql("ALTER TABLE posts ADD COLUMN extra TEXT", "CREATE INDEX my_idx ON posts (extra)",
              "CREATE VIEW my_view AS SELECT id FROM posts", "CREATE TABLE mine (id INTEGER)")
        result = _cli(runner, "plan", "--db", e.db, "--schema", e.decl(V1), "--json")
        assert result.exit_code == 0, (e.name, result.output, result.stderr)
        kept.append(sorted(json.loads(result.output)["kept"]))
    assert kept[0] == kept[1] == ["index 'my_idx' on 'posts'", "table 'mine' (1 column)",
                                  "table 'posts': column 'extra'", "view 'my_view'"]


def test_pruning_a_trigger_that_writes_elsewhere_says_what_it_weakens_on_both(runner, both):
    for e in both:
        _applied(runner, e)
        if e.name == "sqlite":
            e.sql("CREATE TABLE audit_log (post_id INTEGER)",
                  "CREATE TRIGGER my_audit AFTER INSERT ON posts BEGIN INSERT INTO audit_log VALUES (new.id); END")
        else:  # the trigger's function writes: read with the trigger, as SQLite's body is
            e.sql("CREATE TABLE audit_log (post_id INTEGER)",
                  "CREATE FUNCTION my_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit_log "
                  "VALUES (NEW.id); RETURN NEW; END $$",
                  "CREATE TRIGGER my_audit AFTER INSERT ON posts FOR EACH ROW EXECUTE FUNCTION my_audit()")
        result = _cli(runner, "plan", "--db", e.db, "--schema", e.decl(V1), "--prune", "--json")
        assert result.exit_code == 0, (e.name, result.output, result.stderr)
        step = next(s for s in json.loads(result.output)["steps"] if "my_audit" in s["title"])
        assert step["kind"] == "Remove" and step["why"] == (
            "not in the declaration (--prune); weakens: it writes to 'audit_log' (an audit trail or a derived table): "
            "those rows stop being kept"), (e.name, step)


def test_a_rename_that_cannot_run_is_refused_alike_on_both(runner, both):
    renamed = V1.replace('Table("scratch",', 'Table("scratch2", renamed_from="scratch",')
    for e in both:
        _applied(runner, e)
        e.sql("INSERT INTO scratch (id, note) VALUES (1, 'stays')", "CREATE TABLE scratch2 (id INTEGER, note TEXT)")
        result = _cli(runner, "plan", "--db", e.db, "--schema", e.decl(renamed, "renamed"))
        assert result.exit_code == 2, (e.name, result.output, result.stderr)
        _one_line_error(result, "table 'scratch2' is declared renamed_from 'scratch', but the database has both: "
                        "'scratch' holds 1 row, 'scratch2' holds none; the rename cannot run and those would stay "
                        "behind under 'scratch': move the rows into 'scratch2' and drop 'scratch'")
        assert e.query("SELECT count(*) FROM scratch")[0][0] == 1


def test_the_data_loss_guard_refuses_alike_without_a_backup_on_both(runner, both):
    """One guard: without a backup (SQLite's --no-backup; PostgreSQL has none) a plan that loses data runs only with
    --allow-data-loss, and the refusal says so in the same words."""
    for e in both:
        _applied(runner, e)
        e.sql("INSERT INTO scratch (id, note) VALUES (1, 'keep me')")
        no_backup = ["--no-backup"] if e.name == "sqlite" else []
        refused = _cli(runner, "apply", "--db", e.db, "--schema", e.decl(V_LOSS, "loss"), "--yes", *no_backup)
        assert refused.exit_code == 2, (e.name, refused.output, refused.stderr)
        _one_line_error(refused, "the plan loses data (table 'scratch': 1 row goes (removed: no longer used)) and %s: "
                        "without a backup it runs only if --allow-data-loss is given; nothing was changed" % (
                            "--no-backup was given" if e.name == "sqlite" else "PostgreSQL has no file backup"))
        assert e.query("SELECT count(*) FROM scratch")[0][0] == 1


def _with_view(body):
    return V1.replace("import Column,", "import View, Column,").replace(
        '], indexes=[', '], views=[View("post_titles", %r, postgresql=%r)], indexes=[' % (body, body))


def test_a_view_whose_columns_change_is_the_same_change_records_on_both(runner, both):
    """PostgreSQL's steps carry the neutral change records SQLite's do: a view whose columns change is dropped
    (DropViewOrTrigger) and created again (CreateViewOrTrigger) on both engines."""
    for e in both:
        _applied(runner, e, _with_view("CREATE VIEW post_titles AS SELECT id, title FROM posts"))
        changed = e.decl(_with_view("CREATE VIEW post_titles AS SELECT id, upper(title) AS loud FROM posts"), "view2")
        result = _cli(runner, "plan", "--db", e.db, "--schema", changed, "--json")
        assert result.exit_code == 0, (e.name, result.output, result.stderr)
        steps = json.loads(result.output)["steps"]
        assert [s["kind"] for s in steps] == ["DropViewOrTrigger", "CreateViewOrTrigger"], (e.name, steps)
        assert _cli(runner, "apply", "--db", e.db, "--schema", changed).exit_code == 0, e.name
        assert e.query("SELECT loud FROM post_titles") == [], e.name


def test_a_new_foreign_key_over_orphans_without_a_repair_is_refused_alike_on_both(runner, both):
    for e in both:
        _applied(runner, e)
        e.sql("INSERT INTO authors (id, name) VALUES (1, 'ann')",
              "INSERT INTO posts (id, author_id, title) VALUES (1, 1, 'a'), (2, 99, 'orphan')")
        refused = _cli(runner, "plan", "--db", e.db, "--schema", e.decl(V_FK, "fk"))
        assert refused.exit_code == 2, (e.name, refused.output, refused.stderr)
        _one_line_error(refused, "table 'posts': new foreign key (author_id) -> authors: 1 existing row has no parent "
                        "row in 'authors' (", " 2: author_id = 99); fix or delete them, or declare repair='set null' "
                        "or repair='delete' on the foreign key")


# V_LOSS, and posts.author_id removed too: SQLite rebuilds posts, and the rebuild's RENAME re-checks every view
V_LOSS_REBUILD = V_LOSS.replace('Column("author_id", "INTEGER"), ', '').replace(
    'removed=[', 'removed=[removed("column", "author_id", "unused", table="posts"), ')


@pytest.mark.parametrize("declaration", [V_LOSS, V_LOSS_REBUILD], ids=["drop", "drop-and-rebuild"])
def test_a_kept_view_on_a_removed_table_is_refused_at_plan_alike_on_both(runner, both, declaration):
    """A user's own view (kept: not in the declaration) that reads a table the declaration removes: the DROP
    cannot run while it stands. plan said "1 step", exit 0, and apply failed, on PostgreSQL always (DROP TABLE
    refuses a dependent view) and on SQLite when a rebuild ran too (its RENAME re-checks every view, which the
    scratch run of the plan did not report); now plan and apply refuse it on both, naming the view, and nothing
    changes. --prune drops the views (a view before the view it reads) with the table, on both."""
    for e in both:
        _applied(runner, e)
        e.sql("INSERT INTO scratch (id, note) VALUES (1, 'x')", "CREATE VIEW my_notes AS SELECT note FROM scratch",
              "CREATE VIEW my_upper AS SELECT upper(note) AS loud FROM my_notes")
        spec = e.decl(declaration, "loss")
        for command in ("plan", "apply"):
            extra = ["--yes", "--allow-data-loss"] if command == "apply" else []
            result = _cli(runner, command, "--db", e.db, "--schema", spec, *extra)
            assert result.exit_code == 2, (e.name, command, result.output, result.stderr)
            _one_line_error(result, "refusing to migrate", "view 'my_notes'", "scratch")
        assert e.query("SELECT count(*) FROM scratch")[0][0] == 1, e.name
        assert "author_id" in e.columns("posts"), e.name
        result = _cli(runner, "apply", "--db", e.db, "--schema", spec, "--yes", "--allow-data-loss", "--prune")
        assert result.exit_code == 0, (e.name, result.output, result.stderr)
        assert "scratch" not in e.tables(), e.name


# --- what stands on a column a plan changes: views and triggers, declared or the user's own -----------------------

# posts.author_id INTEGER -> TEXT, converted; a declared view reads it, and a declared view reads that view
V_VIEWS = _with_view("CREATE VIEW post_titles AS SELECT id, author_id, title FROM posts").replace(
    "], indexes=[", ', View("post_authors", %r, postgresql=%r)], indexes=[' % (
        ("CREATE VIEW post_authors AS SELECT author_id FROM post_titles",) * 2))
V_VIEWS_TEXT = V_VIEWS.replace('Column("author_id", "INTEGER")',
                               'Column("author_id", "TEXT", using="CAST(author_id AS TEXT)")')


def test_a_type_change_under_declared_and_users_views_and_triggers_is_applied_alike_on_both(runner, engine):
    """SQLite's rebuild drops and recreates the views and triggers on the table; PostgreSQL's ALTER COLUMN TYPE
    refuses a column a view or a trigger's UPDATE OF reads: plan said 1 step, exit 0, and apply failed with
    "cannot alter type of a column used by a view or rule", every time, however the user ran it. Now those views
    (a view on such a view too) and triggers are dropped first and created again: the declared ones from the
    declaration, the user's own as they were."""
    _applied(runner, engine, V_VIEWS)
    engine.sql("INSERT INTO posts (id, author_id, title) VALUES (1, 7, 'a')",
               "CREATE VIEW my_view AS SELECT author_id FROM post_authors")
    if engine.name == "sqlite":
        engine.sql("CREATE TABLE my_log (n INTEGER)",
                   "CREATE TRIGGER my_trigger AFTER UPDATE OF author_id ON posts BEGIN INSERT INTO my_log VALUES (1); END")
    else:
        engine.sql("CREATE TABLE my_log (n INTEGER)",
                   "CREATE FUNCTION my_log_it() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO my_log "
                   "VALUES (1); RETURN NEW; END $$",
                   "CREATE TRIGGER my_trigger AFTER UPDATE OF author_id ON posts FOR EACH ROW EXECUTE FUNCTION my_log_it()")
    spec = engine.decl(V_VIEWS_TEXT, "text")
    applied = _cli(runner, "apply", "--db", engine.db, "--schema", spec)
    assert applied.exit_code == 0, applied.output + applied.stderr
    again = _cli(runner, "plan", "--db", engine.db, "--schema", spec)
    assert again.exit_code == 0 and again.output.startswith("up to date"), again.output
    assert engine.query("SELECT author_id FROM my_view") == [("7",)]
    engine.sql("UPDATE posts SET author_id = '8'")
    assert engine.query("SELECT count(*) FROM my_log") == [(1,)]  # the user's trigger is there again


def test_a_users_view_on_a_column_the_plan_drops_is_refused_at_plan_alike_on_both(runner, engine):
    """A user's own view that reads a column the declaration removes cannot stand after it: SQLite refused at plan;
    PostgreSQL said exit 0 and its apply failed ("other objects depend on it"). Now both refuse at plan, naming
    the view, and nothing changes."""
    _applied(runner, engine)
    engine.sql("CREATE VIEW my_titles AS SELECT title FROM posts")
    gone = V1.replace("import Column,", "import removed, Column,").replace(
        ', Column("title", "TEXT")]', ']').replace(
        'Schema(name="app",', 'Schema(name="app", removed=[removed("column", "title", "unused", table="posts")],').replace(
        '["title"], serves=["SELECT id FROM posts WHERE title = ?"]', '["author_id"]')
    spec = engine.decl(gone, "gone")
    for command in ("plan", "apply"):
        result = _cli(runner, command, "--db", engine.db, "--schema", spec, *(
            ["--yes", "--allow-data-loss"] if command == "apply" else []))
        assert result.exit_code == 2, (command, result.output, result.stderr)
        _one_line_error(result, "refusing to migrate", "nothing was changed", "my_titles")
    assert "title" in engine.columns("posts")


# --- a declared constraint with a name: changed, it replaces the one of its name ---------------------------------

V_NAMED = V1.replace("import Column,", "import Check, ForeignKey, Unique, Column,").replace(
    'Column("name", "TEXT", not_null=True)],', 'Column("name", "TEXT", not_null=True)], uniques=[Unique(["name"])],'
).replace('''Column("title", "TEXT")],
          primary_key=PrimaryKey(["id"])),''', '''Column("title", "TEXT")],
          primary_key=PrimaryKey(["id"]), checks=[Check("length(title) > 0", name="title_set")],
          uniques=[Unique(["title"], name="one_title")],
          foreign_keys=[ForeignKey(["author_id"], "authors", ["id"], name="post_author")]),''')
V_NAMED_CHANGED = V_NAMED.replace("length(title) > 0", "length(title) > 1").replace(
    'Unique(["title"], name="one_title")', 'Unique(["title", "author_id"], name="one_title")').replace(
    'ForeignKey(["author_id"], "authors", ["id"], name="post_author")',
    'ForeignKey(["title"], "authors", ["name"], name="post_author")')
assert V_NAMED_CHANGED.count("post_author") == 1 and '["title", "author_id"]' in V_NAMED_CHANGED


def test_a_named_check_unique_and_foreign_key_that_change_replace_the_ones_of_their_name_on_both(runner, engine):
    """A declared CHECK, UNIQUE or foreign key with a name, changed: SQLite's rebuild writes the new one; PostgreSQL
    planned ADD CONSTRAINT under the name the old one still held (plan exit 0), so every apply failed with
    'constraint ... already exists' / 'relation ... already exists' and the database could never reach the
    declaration. Now the one of its name is dropped first, in the same step."""
    _applied(runner, engine, V_NAMED)
    spec = engine.decl(V_NAMED_CHANGED, "changed")
    applied = _cli(runner, "apply", "--db", engine.db, "--schema", spec)
    assert applied.exit_code == 0, applied.output + applied.stderr
    again = _cli(runner, "plan", "--db", engine.db, "--schema", spec, "--json")
    assert again.exit_code == 0 and json.loads(again.output)["up_to_date"], again.output
    assert json.loads(again.output)["kept"] == []  # the old ones are gone, not kept beside the new
    engine.sql("INSERT INTO authors (id, name) VALUES (1, 'ab')", "INSERT INTO posts (id, author_id, title) "
               "VALUES (1, 1, 'ab')", "INSERT INTO posts (id, author_id, title) VALUES (2, 2, 'ab')")
    with pytest.raises(Exception, match="(?i)check"):
        engine.sql("INSERT INTO posts (id, author_id, title) VALUES (3, 1, 'a')")


def test_a_new_check_with_a_percent_sign_is_planned_and_applied_on_both(runner, engine):
    """PostgreSQL's planner counted the rows that break a new CHECK through psycopg with an empty parameter tuple,
    so the '%' of LIKE 'x%' was read as a placeholder: plan and apply stopped with "only '%s', '%b', '%t' are
    allowed as placeholders". SQLite planned it."""
    _applied(runner, engine)
    engine.sql("INSERT INTO posts (id, author_id, title) VALUES (1, NULL, 'x1'), (2, NULL, '100%')")
    checked = V1.replace("import Column,", "import Check, Column,").replace('''Column("title", "TEXT")],
          primary_key=PrimaryKey(["id"])),''', '''Column("title", "TEXT")],
          primary_key=PrimaryKey(["id"]), checks=[Check("title LIKE 'x%' OR title LIKE '1%'")]),''')
    spec = engine.decl(checked, "like")
    for command in ("plan", "apply"):
        result = _cli(runner, command, "--db", engine.db, "--schema", spec)
        assert result.exit_code == 0, (command, result.output, result.stderr)
    again = _cli(runner, "plan", "--db", engine.db, "--schema", spec)
    assert again.exit_code == 0 and again.output.startswith("up to date"), again.output
    with pytest.raises(Exception, match="(?i)check"):
        engine.sql("INSERT INTO posts (id, title) VALUES (3, 'y')")


def test_prune_drops_a_users_view_before_the_declared_view_it_reads_that_is_dropped_and_created_again(runner,
                                                                                                      engine):
    """PostgreSQL dropped the declared views it recreates (a body whose columns change) before the pruned ones,
    whatever read what: with a user's view on such a view, apply --prune failed with "cannot drop view
    post_titles because other objects depend on it". Now a view goes before the views it reads, as on SQLite."""
    _applied(runner, engine, _with_view("CREATE VIEW post_titles AS SELECT id, title FROM posts"))
    engine.sql("CREATE VIEW my_titles AS SELECT title FROM post_titles")
    changed = engine.decl(_with_view("CREATE VIEW post_titles AS SELECT id, upper(title) AS loud FROM posts"), "view2")
    result = _cli(runner, "apply", "--db", engine.db, "--schema", changed, "--prune")
    assert result.exit_code == 0, result.output + result.stderr
    again = _cli(runner, "plan", "--db", engine.db, "--schema", changed)
    assert again.exit_code == 0 and again.output.startswith("up to date"), again.output
    assert engine.query("SELECT count(*) FROM post_titles") == [(0,)]


def test_a_type_change_keeps_one_copy_of_the_check_on_the_column_on_both(runner, engine):
    """PostgreSQL compared the live CHECK, printed in the column's old type, with the declared one printed in the new
    type: they differed, so a type change (INTEGER to REAL) added the unchanged CHECK a second time beside the one
    ALTER COLUMN TYPE carries over and reparses. The CHECK is now also printed in the live types."""
    checked = V1.replace("import Column,", "import Check, Column,").replace('''Column("title", "TEXT")],
          primary_key=PrimaryKey(["id"])),''', '''Column("title", "TEXT")],
          primary_key=PrimaryKey(["id"]), checks=[Check("author_id > 0")]),''')
    _applied(runner, engine, checked)
    spec = engine.decl(checked.replace('Column("author_id", "INTEGER")', 'Column("author_id", "REAL")'), "real")
    result = _cli(runner, "apply", "--db", engine.db, "--schema", spec)
    assert result.exit_code == 0, result.output + result.stderr
    again = json.loads(_cli(runner, "plan", "--db", engine.db, "--schema", spec, "--json").output)
    assert again["up_to_date"] and again["kept"] == [], again
    if engine.name == "sqlite":
        checks = engine.query("SELECT sql FROM sqlite_master WHERE name = 'posts'")[0][0].upper().count("CHECK")
    else:
        checks = engine.query("SELECT count(*) FROM pg_constraint WHERE conrelid = 'posts'::regclass "
                              "AND contype = 'c'")[0][0]
    assert checks == 1
    with pytest.raises(Exception, match="(?i)check"):
        engine.sql("INSERT INTO posts (id, author_id, title) VALUES (2, -1.5, 'b')")
    engine.sql("INSERT INTO posts (id, author_id, title) VALUES (3, 0.5, 'c')")  # a REAL the new type takes
