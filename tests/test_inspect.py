"""schemagen inspect: a real database file -> a declaration that loads, renders and reproduces it.

The round trip: inspect -> load the written file -> render -> apply to a NEW
file gives the same structure (structure.compare, both directions); applying
the declaration to the original reports up to date and leaves it byte-identical.
"""
from __future__ import annotations

import importlib.util
import sqlite3

import pytest

import legacy
from conftest import connect
from fixtures.public_schema import data
from schema_dsl.analysis import lint
from schema_dsl.compile.target import Target
from schema_dsl.errors import DeclarationError, UnsafeMigrationError
from schema_dsl.migrate.apply import apply, plan_database
from schema_dsl.migrate.write_declaration import inspect_database, load_text
from schema_dsl.model import Column, ForeignKey, PrimaryKey, Schema, Table, View, VirtualTable, evolve
from schema_dsl.sqlite import structure


def read_structure(path):
    conn = sqlite3.connect(str(path))
    try:
        return structure.read_structure(conn)
    finally:
        conn.close()


def load_file(path):
    spec = importlib.util.spec_from_file_location("inspected_%d" % abs(hash(str(path))), str(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SCHEMA


def round_trip(original, tmp_path, keep_versions=False):
    """Run the whole round trip on a database file; returns (declaration text, schema, path of the copy)."""
    text = inspect_database(original, keep_versions=keep_versions)
    assert inspect_database(original, keep_versions=keep_versions) == text  # deterministic
    decl = tmp_path / "declared.py"
    decl.write_text(text, encoding="utf-8")
    schema = load_file(decl)
    target = Target.from_schema(schema)
    copy = tmp_path / "copy.db"
    result = apply(str(copy), schema=target, backup=False)
    assert result.applied and result.plan.fresh
    want, got = read_structure(original), read_structure(copy)
    assert structure.compare(want, got) == []
    assert structure.compare(got, want) == []
    before = open(original, "rb").read()
    again = apply(str(original), schema=schema, backup=False)
    assert again.applied is False
    assert open(original, "rb").read() == before
    return text, schema, copy


@pytest.mark.parametrize("shape", legacy.SHAPES)
def test_every_legacy_abathur_shape_round_trips(shape, tmp_path):
    path = legacy.create(str(tmp_path / ("%s.db" % shape)), shape, tasks=60)
    text, schema, copy = round_trip(path, tmp_path)
    assert "Pragma('journal_mode', 'wal', persistent=True)" in text
    assert {t.name for t in schema.tables} >= {"tasks", "agents", "state", "audit"}
    assert schema.table("state").primary_key.autoincrement


def test_the_applied_abathur_schema_round_trips(fresh_db, tmp_path):
    from schema_dsl.abathur import SCHEMA
    _, schema, _ = round_trip(fresh_db, tmp_path)
    assert {t.name for t in schema.tables} == {t.name for t in SCHEMA.tables}
    assert {ix.name for ix in schema.indexes} == {ix.name for ix in SCHEMA.indexes}


ODD = '''
CREATE TABLE "trigger" ("key" TEXT PRIMARY KEY, "value" TEXT COLLATE NOCASE UNIQUE, "a ""quoted"" col" INTEGER DEFAULT -1);
CREATE TABLE "my table" (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  parent_id INTEGER REFERENCES "my table" (id) ON DELETE CASCADE,
  k TEXT REFERENCES "trigger" ("key") DEFERRABLE INITIALLY DEFERRED,
  amount REAL NOT NULL DEFAULT 1.5 CONSTRAINT positive CHECK (amount > 0),
  CONSTRAINT one_per_parent UNIQUE (parent_id, k)
);
CREATE TABLE pair (a INT NOT NULL, b TEXT NOT NULL, note, PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE TABLE child (id INTEGER PRIMARY KEY, a INT, b TEXT,
  FOREIGN KEY (a, b) REFERENCES pair (a, b) ON UPDATE CASCADE);
CREATE TABLE strictly (id INTEGER PRIMARY KEY, n INT NOT NULL, v ANY) STRICT;
CREATE TABLE loose (id INTEGER PRIMARY KEY, label TEXT);
CREATE TABLE refs_label (id INTEGER PRIMARY KEY, label TEXT REFERENCES loose (label));
CREATE INDEX "idx key" ON "trigger" (lower("value"), "key" DESC);
CREATE INDEX idx_partial ON "my table" (k) WHERE amount > 10 AND parent_id IS NOT NULL;
CREATE VIEW "select" AS SELECT "key", "value" FROM "trigger" WHERE "value" <> '';
CREATE TRIGGER "on insert" AFTER INSERT ON "my table" BEGIN
  UPDATE "my table" SET amount = amount + 0 WHERE id = new.id;
END;
'''


@pytest.fixture
def odd_db(tmp_path):
    path = tmp_path / "odd.db"
    conn = connect(path)
    conn.executescript(ODD)
    conn.execute("""INSERT INTO "trigger" VALUES ('k1', 'One', 3)""")
    conn.execute("""INSERT INTO "my table" (parent_id, k, amount) VALUES (NULL, 'k1', 20)""")
    conn.execute("""INSERT INTO "my table" (parent_id, k, amount) VALUES (1, 'k1', 2)""")
    conn.close()
    return path


def test_odd_names_keywords_views_triggers_and_constraints_round_trip(odd_db, tmp_path):
    text, schema, copy = round_trip(odd_db, tmp_path)
    t = schema.table("my table")
    assert t.primary_key.autoincrement
    assert [c.name for c in t.checks] == ["positive"] and [u.name for u in t.uniques] == ["one_per_parent"]
    deferred = [f for f in t.foreign_keys if f.ref_table == "trigger"]
    assert deferred[0].deferrable == "INITIALLY DEFERRED"
    assert schema.table("trigger").column("value").collate == "NOCASE"
    assert schema.table("pair").without_rowid and schema.table("strictly").strict
    assert schema.table("child").foreign_keys[0].ref_columns == ("a", "b")
    ix = schema.index("idx key")
    assert ix.columns[0].expression and ix.columns[0].name == "lower(value)" and ix.columns[1].desc
    assert schema.index("idx_partial").where is not None
    assert schema.view("select") is not None and schema.trigger("on insert").table == "my table"
    # the copy behaves like the original, with foreign keys on
    conn = connect(copy)
    conn.execute("""INSERT INTO "trigger" ("key", "value") VALUES ('k1', 'One')""")
    with pytest.raises(sqlite3.IntegrityError):  # UNIQUE under NOCASE
        conn.execute("""INSERT INTO "trigger" ("key", "value") VALUES ('k2', 'ONE')""")
    with pytest.raises(sqlite3.IntegrityError):  # the self-reference is enforced
        conn.execute("""INSERT INTO "my table" (parent_id, amount) VALUES (999, 5)""")
    conn.execute("BEGIN")  # the deferred key is checked at COMMIT, not at the INSERT
    conn.execute("""INSERT INTO "my table" (k, amount) VALUES ('nowhere', 5)""")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("COMMIT")
    conn.execute("ROLLBACK")
    with pytest.raises(sqlite3.IntegrityError):  # the composite key is enforced
        conn.execute("INSERT INTO child (a, b) VALUES (1, 'x')")
    with pytest.raises(sqlite3.IntegrityError):  # STRICT kept
        conn.execute("INSERT INTO strictly (n) VALUES ('not a number')")
    assert conn.execute("""SELECT count(*) FROM "select" """).fetchone()[0] == 1
    conn.execute("""INSERT INTO "trigger" ("key", "value") VALUES ('k2', 'two')""")
    assert conn.execute("""SELECT count(*) FROM "select" """).fetchone()[0] == 2
    conn.close()
    # the FK to a non-unique parent column is accepted and linted
    findings = [f for f in lint.lint(schema, json_probe=None) if f.rule == "fk-parent-not-unique"]
    assert [f.object for f in findings] == ["refs_label(label)"]


def test_fts5_table_with_rows_round_trips_and_its_shadow_tables_are_left_out(tmp_path):
    path = tmp_path / "fts.db"
    conn = connect(path)
    conn.executescript("""
        CREATE TABLE doc (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
        CREATE VIRTUAL TABLE doc_fts USING fts5(body, content='doc', content_rowid='id', tokenize = "porter unicode61");
        CREATE TRIGGER doc_ai AFTER INSERT ON doc BEGIN INSERT INTO doc_fts(rowid, body) VALUES (new.id, new.body); END;
        CREATE VIRTUAL TABLE notes USING fts5(title, text);
    """)
    conn.executemany("INSERT INTO doc (body) VALUES (?)", [("running fast",), ("slow walking",)])
    conn.execute("INSERT INTO notes VALUES ('a', 'hello world')")
    conn.close()
    text, schema, copy = round_trip(path, tmp_path)
    assert [t.name for t in schema.tables] == ["doc"]
    assert [(v.name, v.module) for v in schema.virtual_tables] == [("doc_fts", "fts5"), ("notes", "fts5")]
    assert "doc_fts_data" not in text and "notes_content" not in text
    conn = connect(path)  # the original's rows are untouched
    assert conn.execute("SELECT rowid FROM doc_fts WHERE doc_fts MATCH 'run'").fetchall() == [(1,)]
    assert conn.execute("SELECT text FROM notes WHERE notes MATCH 'hello'").fetchall() == [("hello world",)]
    conn.close()
    conn = connect(copy)  # the copy's trigger feeds its FTS table
    conn.execute("INSERT INTO doc (body) VALUES ('runs daily')")
    assert conn.execute("SELECT rowid FROM doc_fts WHERE doc_fts MATCH 'run'").fetchall() == [(1,)]
    conn.close()


def test_public_sakila_schema_round_trips(tmp_path):
    path = data.create(tmp_path / "sakila.db", version="current", rows=50)
    text, schema, copy = round_trip(str(path), tmp_path)
    assert len(schema.tables) + len(schema.virtual_tables) == 23 and len(schema.views) == 7  # README counts film_fts
    conn = sqlite3.connect(str(path))
    named = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").fetchone()[0]
    conn.close()
    assert len(schema.indexes) == named == 32  # the README's 39 counts the automatic indexes too
    assert len(schema.triggers) == 33 and [v.name for v in schema.virtual_tables] == ["film_fts"]
    assert schema.table("store_setting").foreign_keys[0].deferrable == "INITIALLY DEFERRED"
    assert schema.table("film_tag").without_rowid and schema.table("tag").column("name").collate == "NOCASE"
    assert schema.index("idx_customer_lower_email").columns[0].expression
    assert schema.table("film_review").primary_key.autoincrement
    assert schema.table("staff shift").column('shift"type') is not None
    cycle = {f.object for f in lint.lint(schema, json_probe=None) if f.rule == "fk-cycle"}
    assert {"store", "staff"} <= cycle
    conn = connect(copy)  # the copy enforces the declared keys
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO film_tag (film_id, tag_id) VALUES (999999, 999999)")
    conn.close()


def test_generated_columns_are_refused_naming_the_table(tmp_path):
    path = tmp_path / "gen.db"
    conn = sqlite3.connect(str(path))
    conn.execute("CREATE TABLE box (w REAL, h REAL, area REAL GENERATED ALWAYS AS (w * h) STORED)")
    conn.close()
    with pytest.raises(DeclarationError) as info:
        inspect_database(path)
    assert "table 'box': generated columns (area)" in str(info.value)


def test_a_declaration_that_does_not_load_is_refused_naming_the_object():
    with pytest.raises(DeclarationError) as info:
        load_text("from schema_dsl.model import *\nSCHEMA = Schema('x', [Table('t', [Column('a', 'INT[]')])])\n")
    assert "column 'a'" in str(info.value) and "does not load" in str(info.value)


# --- migration of views, triggers and virtual tables ------------------------

BASE = Table("item", [Column("id", "INTEGER"), Column("name", "TEXT", not_null=True)], primary_key=PrimaryKey(["id"]))


def declared(**kw):
    return Schema("t", [BASE], **kw)


def test_missing_and_changed_views_are_created_or_recreated_and_virtual_tables_created(tmp_path):
    path = str(tmp_path / "m.db")
    apply(path, schema=declared(), backup=False)
    conn = connect(path)
    conn.execute("INSERT INTO item (name) VALUES ('a')")
    conn.execute("CREATE VIEW mine AS SELECT 1")  # a user's own view: kept
    conn.close()
    v1 = View("names", "CREATE VIEW names AS SELECT name FROM item")
    vt = VirtualTable("item_fts", "fts5", "name")
    r = apply(path, schema=declared(views=[v1], virtual_tables=[vt]), backup=False)
    assert r.applied and [s.title for s in r.plan.steps] == ["create virtual table 'item_fts'", "create view 'names'"]
    v2 = View("names", "CREATE VIEW names AS SELECT upper(name) AS name FROM item")
    r = apply(path, schema=declared(views=[v2], virtual_tables=[vt]), backup=False)
    assert [s.title for s in r.plan.steps] == ["drop view 'names'", "create view 'names'"]
    conn = connect(path)
    assert conn.execute("SELECT name FROM names").fetchall() == [("A",)]
    assert conn.execute("SELECT * FROM mine").fetchall() == [(1,)]
    conn.close()
    assert apply(path, schema=declared(views=[v2], virtual_tables=[vt]), backup=False).applied is False


def test_a_changed_virtual_table_is_refused_and_nothing_changes(tmp_path):
    path = str(tmp_path / "v.db")
    apply(path, schema=declared(virtual_tables=[VirtualTable("item_fts", "fts5", "name")]), backup=False)
    before = open(path, "rb").read()
    with pytest.raises(UnsafeMigrationError) as info:
        plan_database(path, schema=declared(virtual_tables=[VirtualTable("item_fts", "fts5", "name, extra")]))
    assert "virtual table 'item_fts' changed" in str(info.value) and "shadow tables" in str(info.value)
    assert open(path, "rb").read() == before


def test_a_rebuild_keeps_collate_deferrable_and_recreates_declared_triggers(tmp_path):
    parent = Table("p", [Column("id", "INTEGER")], primary_key=PrimaryKey(["id"]))
    kid = Table("k", [Column("id", "INTEGER"), Column("p_id", "INTEGER"), Column("tag", "TEXT", collate="NOCASE")],
                primary_key=PrimaryKey(["id"]),
                foreign_keys=[ForeignKey(["p_id"], "p", ["id"], deferrable="INITIALLY DEFERRED")])
    from schema_dsl.model import Trigger
    trig = Trigger("k_ai", "k", "CREATE TRIGGER k_ai AFTER INSERT ON k BEGIN UPDATE k SET tag = upper(tag) WHERE id = new.id; END")
    path = str(tmp_path / "r.db")
    apply(path, schema=Schema("r", [parent, kid], triggers=[trig]), backup=False)
    conn = connect(path)
    conn.execute("INSERT INTO p VALUES (1)")
    conn.execute("INSERT INTO k (p_id, tag) VALUES (1, 'x')")
    conn.close()
    changed = evolve(kid, columns=[*kid.columns, Column("n", "INTEGER", not_null=True, default=0, unique=True)])
    r = apply(path, schema=Schema("r", [parent, changed], triggers=[trig]), backup=False)
    assert any(s.title.startswith("rebuild table 'k'") for s in r.plan.steps)
    assert [s.title for s in r.plan.steps][-1] == "create trigger 'k_ai'"
    got = read_structure(path)["tables"]["k"]
    assert got["columns"]["tag"]["collate"] == "NOCASE" and got["fks"][0]["deferrable"] == "INITIALLY DEFERRED"
    conn = connect(path)
    conn.execute("INSERT INTO k (p_id, tag, n) VALUES (1, 'y', 1)")
    assert conn.execute("SELECT tag FROM k ORDER BY id").fetchall() == [("X",), ("Y",)]
    conn.close()


def test_public_sakila_end_to_end_an_older_file_full_of_data_follows_the_inspected_declaration(tmp_path):
    """Sakila (tests/fixtures/public_schema): inspect the current version, declare the one rename by hand
    (inspect cannot know it), migrate a populated file of the hand-derived older version, then validate,
    explain and lint it."""
    from schema_dsl.check.explain import explain_database
    from schema_dsl.check.lintdb import lint_path
    from schema_dsl.check.report import build_report

    current = data.create(tmp_path / "current.db", version="current", rows=40)
    schema = load_text(inspect_database(str(current), name="sakila"))
    (table, old), new = next(iter(data.RENAMES.items()))
    t = schema.table(table)
    schema = evolve(schema, tables=[evolve(x, columns=[evolve(c, renamed_from=old) if c.name == new else c
                                                        for c in x.columns]) if x is t else x
                                    for x in schema.tables])
    older = data.create(tmp_path / "v1.db", version="v1", rows=40)
    conn = sqlite3.connect(str(older))
    counts = {n: conn.execute('SELECT count(*) FROM "%s"' % n.replace('"', '""')).fetchone()[0]
              for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE "
                                       "'CREATE VIRTUAL%' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'film_fts_%'")}
    rented = conn.execute("SELECT rental_id, rented_at FROM rental ORDER BY rental_id").fetchall()
    conn.close()
    result = apply(str(older), schema=schema, backup=False)
    assert result.applied
    conn = connect(older)
    for name, n in counts.items():
        assert conn.execute('SELECT count(*) FROM "%s"' % name.replace('"', '""')).fetchone()[0] == n, name
    assert conn.execute("SELECT rental_id, rental_date FROM rental ORDER BY rental_id").fetchall() == rented
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()
    assert structure.compare(read_structure(str(current)), read_structure(str(older))) == []
    assert plan_database(str(older), schema=schema).up_to_date
    report = build_report(str(older), schema=schema)
    assert report["ok"], report["issues"]
    explained = explain_database(str(older), schema)
    assert len(explained.results) == sum(len(ix.serves) for ix in schema.indexes)
    rules = {f.rule for f in lint_path(schema, db_path=str(older))}
    assert "fk-cycle" in rules and "no-statistics" in rules


# --- persistent settings, index COLLATE and expressions, the up-to-date rule ---------------------------------

def test_user_version_and_application_id_are_declared_persistent_settings_set_in_the_transaction(tmp_path):
    from schema_dsl.check.report import build_report
    from schema_dsl.migrate.apply import connection_pragmas
    from schema_dsl.model import Pragma

    path = tmp_path / "app.db"
    conn = connect(path)
    conn.executescript("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT); PRAGMA user_version = 7; "
                       "PRAGMA application_id = 0x5A5A; PRAGMA journal_mode = WAL;")
    conn.close()
    text, schema, copy = round_trip(path, tmp_path, keep_versions=True)  # apply to the original: byte-identical
    assert "Pragma('user_version', 7, persistent=True)" in text
    assert "Pragma('application_id', 0x5a5a, persistent=True)" in text
    assert "# PRAGMA" not in text  # no longer a comment
    conn = connect(copy)
    assert (conn.execute("PRAGMA user_version").fetchone()[0], conn.execute("PRAGMA application_id").fetchone()[0]) == (
        7, 0x5A5A)
    conn.execute("PRAGMA user_version = 3")
    conn.close()
    target = Target.from_schema(schema)
    assert "PRAGMA user_version = 7; -- kept in the file" in target.files["pragmas.sql"]
    for statements in (connection_pragmas(target.files), connection_pragmas(target.files, include_persistent=True),
                       connection_pragmas(target.files, True, persistent=target.persistent_pragmas)):
        assert not [s for s in statements if "user_version" in s or "application_id" in s]  # never per connection
    # a differing user_version: not up to date, the report fails, apply sets it in one step
    plan = plan_database(str(copy), schema=target)
    assert [(s.title, s.statements) for s in plan.steps] == [("set user_version to 7", ("PRAGMA user_version = 7;",))]
    report = build_report(str(copy), schema=target)
    assert not report["ok"] and "user_version = 7: 3" in report["issues"]
    result = apply(str(copy), schema=target, backup=False)
    assert result.applied and [s.title for s in result.plan.steps] == ["set user_version to 7"]
    assert build_report(str(copy), schema=target)["ok"]
    assert apply(str(copy), schema=target, backup=False).applied is False
    with pytest.raises(DeclarationError) as info:
        evolve(schema, pragmas=[Pragma("user_version", 7)])
    assert "pragma 'user_version'" in str(info.value) and "persistent=True" in str(info.value)
    with pytest.raises(DeclarationError):
        evolve(schema, pragmas=[Pragma("application_id", "x", persistent=True)])


def test_index_key_collate_is_inspected_declared_rendered_compared_and_round_trips(tmp_path):
    from schema_dsl.analysis.compare import expected_structure
    from schema_dsl.model import Index, IndexColumn

    path = tmp_path / "coll.db"
    conn = connect(path)
    conn.executescript("""
        CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, tag TEXT COLLATE NOCASE);
        CREATE INDEX i ON t (name COLLATE NOCASE);
        CREATE INDEX j ON t (name COLLATE nocase DESC, tag, tag COLLATE BINARY ASC);
        CREATE INDEX k ON t (lower(tag) COLLATE RTRIM DESC);
    """)
    conn.executemany("INSERT INTO t (name, tag) VALUES (?, ?)", [("Ann", "x"), ("bob", "y")])
    conn.close()
    text, schema, copy = round_trip(path, tmp_path)
    assert [(c.name, c.desc, c.collate) for c in schema.index("i").columns] == [("name", False, "NOCASE")]
    assert [(c.name, c.desc, c.collate) for c in schema.index("j").columns] == [
        ("name", True, "NOCASE"), ("tag", False, None), ("tag", False, "BINARY")]
    k = schema.index("k").columns[0]
    assert k.expression and k.desc and k.name == "lower(tag) collate rtrim"
    assert "IndexColumn('name', collate='NOCASE')" in text
    assert 'ON "t" ("name" COLLATE NOCASE);' in Target.from_schema(schema).statement("create_index", "i")
    assert Index("x", "t", ["name COLLATE NOCASE DESC"]).columns == (IndexColumn("name", True, collate="NOCASE"),)
    # the copy's index serves a NOCASE lookup, as the original's does
    conn = connect(copy)
    plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN SELECT id FROM t WHERE name = 'ANN' COLLATE NOCASE"))
    assert "USING INDEX i " in plan or "USING COVERING INDEX i " in plan
    conn.close()
    # without the COLLATE the declaration differs: compared, and the index is dropped and recreated
    plain = evolve(schema, indexes=[Index("i", "t", ["name"]) if ix.name == "i" else ix for ix in schema.indexes])
    problems = structure.compare(expected_structure(plain), read_structure(path))
    assert problems == [("differs", "index 'i': columns are (name COLLATE NOCASE), expected (name)")]
    assert [s.title for s in plan_database(str(path), schema=plain).steps] == ["drop index 'i'", "create index 'i' on 't'"]


def test_a_changed_index_expression_is_detected_and_the_index_recreated(tmp_path):
    from schema_dsl.analysis.compare import expected_structure
    from schema_dsl.model import Expr, Index

    path = str(tmp_path / "expr.db")
    lower = declared(indexes=[Index("ix", "item", [Expr("lower(name)")])])
    upper = declared(indexes=[Index("ix", "item", [Expr("upper(name)")])])
    apply(path, schema=lower, backup=False)
    assert structure.compare(expected_structure(upper), read_structure(path)) == [
        ("differs", "index 'ix': columns are (lower(name)), expected (upper(name))")]
    plan = plan_database(path, schema=upper)
    assert [s.title for s in plan.steps] == ["drop index 'ix'", "create index 'ix' on 'item'"]
    assert apply(path, schema=upper, backup=False).applied
    conn = connect(path)
    assert "upper(name)" in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'ix'").fetchone()[0]
    conn.close()
    assert apply(path, schema=upper, backup=False).applied is False
    # an expected key written before the text was recorded ("<expression>") matches any expression
    old = expected_structure(upper)
    old["indexes"]["ix"]["columns"] = [[structure.EXPRESSION, False]]
    assert structure.compare(old, read_structure(path)) == []
    old["indexes"]["ix"]["columns"] = [[structure.EXPRESSION, True]]
    assert structure.compare(old, read_structure(path)) != []


def test_declared_views_and_triggers_are_up_to_date_by_the_structure_alone(tmp_path, monkeypatch):
    from schema_dsl.migrate import introspect
    from schema_dsl.model import Trigger

    view = View("names", "CREATE VIEW names AS SELECT name FROM item")
    trig = Trigger("item_ai", "item", "CREATE TRIGGER item_ai AFTER INSERT ON item BEGIN "
                                      "UPDATE item SET name = trim(name) WHERE id = new.id; END")
    schema = declared(views=[view], triggers=[trig])
    path = str(tmp_path / "vt.db")
    apply(path, schema=schema, backup=False)
    calls = []
    real = introspect.read_live
    monkeypatch.setattr(introspect, "read_live", lambda *a, **k: calls.append(1) or real(*a, **k))
    before = open(path, "rb").read()
    assert apply(path, schema=schema, backup=False).applied is False
    assert calls == [] and open(path, "rb").read() == before  # decided without the introspection model
    conn = connect(path)
    conn.execute("CREATE VIEW mine AS SELECT 1")
    conn.close()
    plan = plan_database(path, schema=schema)  # a user's own view: introspected only to list it
    assert plan.up_to_date and list(plan.extras) == ["view 'mine'"] and calls == [1]


# --- user_version and application_id belong to the application (issue 17 item 5) ---------------------------------

def _versioned_app(path):
    conn = connect(path)
    conn.executescript("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT); PRAGMA user_version = 75; "
                       "PRAGMA application_id = 0x5A5A; PRAGMA journal_mode = WAL;")
    conn.close()


def test_inspect_leaves_user_version_and_application_id_to_the_application_and_says_so(tmp_path):
    from conftest import make_runner
    from schema_dsl.cli import main

    path, decl = tmp_path / "app.db", tmp_path / "app_schema.py"
    _versioned_app(path)
    runner = make_runner()
    result = runner.invoke(main, ["inspect", "--db", str(path), "--out", str(decl)])
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == ("user_version 75 and application_id 0x5a5a: left to the application, not "
                                     "declared (--keep-user-version declares them)")
    text = decl.read_text()
    assert "    Pragma('user_version'" not in text and "# Pragma('user_version', 75, persistent=True)" in text
    conn = connect(path)
    conn.execute("PRAGMA user_version = 76")  # the application's next version
    conn.close()
    validate = runner.invoke(main, ["validate", "--db", str(path), "--schema", str(decl)])
    assert validate.exit_code == 0, validate.output
    plan = runner.invoke(main, ["plan", "--db", str(path), "--schema", str(decl)])
    assert plan.exit_code == 0 and plan.stdout.startswith("up to date"), plan.output
    assert "user_version" not in plan.stdout
    before = path.read_bytes()
    assert runner.invoke(main, ["apply", "--db", str(path), "--schema", str(decl), "--no-backup"]).exit_code == 0
    conn = connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 76 and path.read_bytes()[60:72] == before[60:72]
    conn.close()


def test_inspect_keep_user_version_declares_them_and_says_so(tmp_path):
    from conftest import make_runner
    from schema_dsl.cli import main

    path = tmp_path / "app.db"
    _versioned_app(path)
    result = make_runner().invoke(main, ["inspect", "--db", str(path), "--keep-user-version"])
    assert result.exit_code == 0
    assert "    Pragma('user_version', 75, persistent=True)," in result.stdout
    assert "    Pragma('application_id', 0x5a5a, persistent=True)," in result.stdout
    assert result.stderr.strip() == ("user_version 75 and application_id 0x5a5a: declared (--keep-user-version): "
                                     "apply holds the file at these values")
    assert load_text(result.stdout).name == "app"
def test_a_header_over_garbage_is_one_line_exit_2_and_nothing_left(tmp_path):
    """issue 15.14: an SQLite header followed by garbage used to end in a traceback."""
    import os
    from conftest import make_runner
    from schema_dsl.cli import main
    path = tmp_path / "garbage.db"
    payload = b"SQLite format 3\x00" + bytes(range(256)) * 16
    path.write_bytes(payload)
    out = tmp_path / "decl.py"
    for extra in ([], ["--out", str(out)]):
        result = make_runner().invoke(main, ["inspect", "--db", str(path)] + extra)
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines() == [
            "error: database %r: not a usable SQLite database (file is not a database)" % str(path)]
        assert "Traceback" not in result.output
    assert path.read_bytes() == payload
    assert sorted(os.listdir(tmp_path)) == ["garbage.db"]
