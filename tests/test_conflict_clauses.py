"""SQLite conflict clauses (ON CONFLICT after PRIMARY KEY, UNIQUE and NOT NULL), end to end: the model, the
rendered DDL, the structure both sides compare, inspect, the migration diff and the PostgreSQL refusal."""
from __future__ import annotations

import sqlite3

import pytest

from conftest import connect
from schema_dsl.analysis.compare import expected_structure
from schema_dsl.compile import postgresql
from schema_dsl.compile.render import create_table_sql
from schema_dsl.compile.target import Target
from schema_dsl.errors import ApplyError, DeclarationError
from schema_dsl.migrate.apply import apply
from schema_dsl.migrate.write_declaration import inspect_database
from schema_dsl.model import Column, PrimaryKey, Schema, Table, Unique, evolve
from schema_dsl.sqlite import structure

from test_inspect_real_schemas import make, round_trip
from test_inspect import read_structure


def contacts(unique=None, not_null=None, pk=None, renamed=False):
    name = Column("name", "TEXT", not_null=True, not_null_on_conflict=not_null)
    if renamed:
        name = evolve(name, name="full_name", renamed_from="name")
    return Schema("c", [Table(
        "contacts",
        [Column("id", "INTEGER"), Column("email", "TEXT", not_null=True), name, Column("n", "INTEGER")],
        primary_key=PrimaryKey(["id"], on_conflict=pk),
        uniques=[Unique(["email"], on_conflict=unique)],
    )])


def test_the_clauses_are_rendered_after_their_constraint():
    t = Table("t", [Column("id", "INTEGER"), Column("a", "TEXT", not_null=True, not_null_on_conflict="ignore",
                                                    unique=True, unique_on_conflict="FAIL"), Column("b", "INT")],
              primary_key=PrimaryKey(["id"], autoincrement=True, on_conflict="ROLLBACK"),
              uniques=[Unique(["a", "b"], name="ab", on_conflict="REPLACE")])
    sql = create_table_sql(t)
    assert '"id" INTEGER PRIMARY KEY ON CONFLICT ROLLBACK AUTOINCREMENT,' in sql
    assert '"a" TEXT NOT NULL ON CONFLICT IGNORE UNIQUE ON CONFLICT FAIL,' in sql
    assert 'CONSTRAINT "ab" UNIQUE ("a", "b") ON CONFLICT REPLACE' in sql
    conn = sqlite3.connect(":memory:")
    conn.execute(sql)
    assert structure.read_structure(conn)["tables"]["t"]["on_conflict"] == expected_structure(
        Schema("s", [t]))["tables"]["t"]["on_conflict"]
    two = Table("p", [Column("x", "TEXT"), Column("y", "INT")], primary_key=PrimaryKey(["x", "y"], on_conflict="IGNORE"))
    assert 'PRIMARY KEY ("x", "y") ON CONFLICT IGNORE' in create_table_sql(two)


def test_the_model_validates_the_resolution_and_that_its_constraint_is_there():
    with pytest.raises(ValueError):
        Unique(["a"], on_conflict="UPSERT")
    assert PrimaryKey(["a"], on_conflict="replace").on_conflict == "REPLACE"
    with pytest.raises(DeclarationError) as info:
        Schema("s", [Table("t", [Column("a", "TEXT", not_null_on_conflict="IGNORE"),
                                 Column("b", "TEXT", unique_on_conflict="FAIL")])])
    assert list(info.value.problems) == ["table 't', column 'a': not_null_on_conflict IGNORE needs not_null=True",
                                         "table 't', column 'b': unique_on_conflict FAIL needs unique=True"]


def test_without_clauses_the_structure_and_ddl_are_as_before():
    schema = contacts()
    assert "on_conflict" not in expected_structure(schema)["tables"]["contacts"]
    assert "CONFLICT" not in create_table_sql(schema.tables[0])
    assert "on_conflict" not in expected_structure(contacts(pk="ABORT"))["tables"]["contacts"]  # the default


def test_android_style_round_trip_and_replace_holds_on_the_new_file(tmp_path):
    path = make(tmp_path / "app.db", """
        CREATE TABLE `messages` (`id` INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, `thread` INTEGER NOT NULL,
            `server_id` TEXT NOT NULL ON CONFLICT IGNORE, `body` TEXT, UNIQUE (`thread`, `server_id`) ON CONFLICT REPLACE);
        CREATE TABLE settings (key TEXT PRIMARY KEY ON CONFLICT REPLACE, value TEXT) WITHOUT ROWID;
        INSERT INTO messages (thread, server_id, body) VALUES (1, 's1', 'old'), (1, 's2', 'other');
        INSERT INTO settings VALUES ('theme', 'dark');
    """)
    text, schema, copy = round_trip(path, tmp_path)
    assert "Unique(['thread', 'server_id'], on_conflict='REPLACE')" in text
    assert "PrimaryKey(['key'], on_conflict='REPLACE')" in text
    assert "not_null_on_conflict='IGNORE'" in text
    want = read_structure(path)
    assert want["tables"]["messages"]["on_conflict"] == [["NOT NULL", ["server_id"], "IGNORE"],
                                                         ["UNIQUE", ["thread", "server_id"], "REPLACE"]]
    assert read_structure(copy)["tables"]["settings"]["on_conflict"] == [["PRIMARY KEY", ["key"], "REPLACE"]]
    conn = connect(copy)
    conn.execute("INSERT INTO messages (thread, server_id, body) VALUES (1, 's1', 'old')")
    conn.execute("INSERT INTO messages (thread, server_id, body) VALUES (1, 's1', 'new')")  # replaces the old row
    assert conn.execute("SELECT body FROM messages WHERE server_id = 's1'").fetchall() == [("new",)]
    conn.execute("INSERT INTO messages (thread, server_id, body) VALUES (1, NULL, 'ignored')")  # NOT NULL IGNORE
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
    conn.execute("INSERT INTO settings VALUES ('theme', 'dark')")
    conn.execute("INSERT INTO settings VALUES ('theme', 'light')")
    assert conn.execute("SELECT value FROM settings").fetchall() == [("light",)]
    conn.close()


def test_a_changed_clause_is_a_difference_and_a_rebuild_keeping_every_row(tmp_path):
    db = tmp_path / "c.db"
    apply(str(db), schema=Target.from_schema(contacts()), backup=False)
    conn = connect(db)
    conn.executemany("INSERT INTO contacts (email, name, n) VALUES (?, ?, ?)", [("a@x", "A", 1), ("b@x", "B", 2)])
    conn.close()
    changed = contacts(unique="REPLACE", not_null="IGNORE")
    problems = structure.compare(expected_structure(changed), read_structure(db))
    assert problems == [
        ("differs", "table 'contacts': column 'name' NOT NULL: ON CONFLICT is ABORT, expected IGNORE"),
        ("differs", "table 'contacts': UNIQUE (email): ON CONFLICT is ABORT, expected REPLACE")]
    result = apply(str(db), schema=changed, backup=False)
    assert result.applied
    [step] = result.plan.steps
    assert "UNIQUE (email): ON CONFLICT ABORT -> REPLACE" in step.why
    assert "column 'name' NOT NULL: ON CONFLICT ABORT -> IGNORE" in step.why
    assert structure.compare(expected_structure(changed), read_structure(db)) == []
    conn = connect(db)
    assert conn.execute("SELECT id, email, name, n FROM contacts ORDER BY id").fetchall() == [
        (1, "a@x", "A", 1), (2, "b@x", "B", 2)]
    conn.execute("INSERT INTO contacts (email, name, n) VALUES ('a@x', 'A2', 3)")
    assert conn.execute("SELECT name FROM contacts WHERE email = 'a@x'").fetchall() == [("A2",)]
    conn.close()
    before = db.read_bytes()
    assert apply(str(db), schema=changed, backup=False).applied is False
    assert db.read_bytes() == before
    back = apply(str(db), schema=contacts(), backup=False)  # and back to the default
    assert "UNIQUE (email): ON CONFLICT REPLACE -> ABORT" in back.plan.steps[0].why
    assert "on_conflict" not in read_structure(db)["tables"]["contacts"]


def test_a_rename_alone_is_no_conflict_change(tmp_path):
    db = tmp_path / "r.db"
    apply(str(db), schema=Target.from_schema(contacts(not_null="IGNORE")), backup=False)
    result = apply(str(db), schema=contacts(not_null="IGNORE", renamed=True), backup=False)
    assert [type(s.change).__name__ for s in result.plan.steps] == ["RenameColumn"]
    assert read_structure(db)["tables"]["contacts"]["on_conflict"] == [["NOT NULL", ["full_name"], "IGNORE"]]


def test_an_extra_constraint_with_a_clause_is_the_users_own(tmp_path):
    db = make(tmp_path / "e.db", """
        CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL, n INTEGER,
                               mine TEXT, UNIQUE (email), UNIQUE (mine) ON CONFLICT REPLACE);
        INSERT INTO contacts (email, name, mine) VALUES ('a@x', 'A', 'm');
    """)
    problems = structure.compare(expected_structure(contacts()), read_structure(db))
    assert all(kind == "extra" for kind, _ in problems) and not any("CONFLICT" in p for _, p in problems)
    result = apply(str(db), schema=contacts(unique="FAIL"), backup=False)  # rebuilt: the user's UNIQUE is carried
    assert result.applied
    assert ["UNIQUE", ["mine"], "REPLACE"] in read_structure(db)["tables"]["contacts"]["on_conflict"]


def test_postgresql_refuses_a_conflict_clause_naming_the_table():
    with pytest.raises(DeclarationError) as info:
        postgresql.render_files(contacts(unique="REPLACE", not_null="IGNORE"))
    problems = [p for p in info.value.problems if "CONFLICT" in p]
    assert problems[0].startswith("PostgreSQL: table 'contacts': column 'name' NOT NULL ON CONFLICT IGNORE is an "
                                  "SQLite conflict clause")
    assert problems[1].startswith("PostgreSQL: table 'contacts': UNIQUE (email) ON CONFLICT REPLACE is an SQLite")
    postgresql.render_files(contacts(pk="ABORT"))  # ABORT is PostgreSQL's own behaviour


def test_a_rebuild_never_lets_a_conflict_clause_drop_a_copied_row(tmp_path):
    """A UNIQUE ON CONFLICT REPLACE whose column becomes NOCASE: 'a@x' and 'A@X' collide in the copy. The copy
    says OR ABORT, so the migration fails and rolls back instead of silently replacing one of the rows."""
    db = tmp_path / "n.db"
    apply(str(db), schema=Target.from_schema(contacts(unique="REPLACE")), backup=False)
    conn = connect(db)
    conn.executemany("INSERT INTO contacts (email, name) VALUES (?, ?)", [("a@x", "A"), ("A@X", "B")])
    conn.close()
    nocase = contacts(unique="REPLACE")
    t = nocase.tables[0]
    nocase = evolve(nocase, tables=[evolve(t, columns=[evolve(c, collate="NOCASE") if c.name == "email" else c
                                                       for c in t.columns])])
    before = read_structure(db)
    with pytest.raises(ApplyError, match="UNIQUE constraint failed.*INSERT OR ABORT INTO"):
        apply(str(db), schema=nocase, backup=False)
    assert read_structure(db) == before
    conn = connect(db)
    assert conn.execute("SELECT count(*) FROM contacts").fetchone()[0] == 2
    conn.close()
