"""`schemagen inspect` on realistic application schemas: any real SQLite database.

Each test failed before its fix: a declaration that did not apply, or a schema that came back silently
different, or a feature the model cannot hold that was dropped instead of refused.
"""
from __future__ import annotations

import sqlite3

import pytest

from conftest import connect, make_runner
from schema_dsl.cli import main
from schema_dsl.compile.target import Target
from schema_dsl.errors import DeclarationError
from schema_dsl.migrate.apply import apply
from schema_dsl.migrate.write_declaration import inspect_database
from schema_dsl.sqlite import structure


from test_inspect import load_file, read_structure  # noqa: E402  (the same helpers as the round trips)


def round_trip(original, tmp_path):
    """inspect, apply to a new file (same structure both ways), apply to the original (up to date, same bytes)."""
    text = inspect_database(original)
    decl = tmp_path / "declared.py"
    decl.write_text(text, encoding="utf-8")
    schema = load_file(decl)
    copy = tmp_path / "copy.db"
    result = apply(str(copy), schema=Target.from_schema(schema), backup=False)
    assert result.applied and result.plan.fresh
    want, got = read_structure(original), read_structure(copy)
    assert structure.compare(want, got) == []
    assert structure.compare(got, want) == []
    before = open(original, "rb").read()
    assert apply(str(original), schema=schema, backup=False).applied is False
    assert open(original, "rb").read() == before
    return text, schema, copy


def make(path, sql, functions=()):
    conn = sqlite3.connect(str(path), isolation_level=None)
    for name, n, fn in functions:
        conn.create_function(name, n, fn)
    conn.executescript(sql)
    conn.close()
    return path


# Firefox places, Chromium History, Anki, calibre metadata.db, Django auth/admin, and the nasty corners:
# 37 tables, FTS5 (external content, contentless), FTS4, R*Tree, STRICT and WITHOUT ROWID tables.
APP = """
-- Django-ish
CREATE TABLE "django_content_type" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "app_label" varchar(100) NOT NULL, "model" varchar(100) NOT NULL);
CREATE UNIQUE INDEX "django_content_type_app_label_model_76bd3d3b_uniq" ON "django_content_type" ("app_label", "model");
CREATE TABLE "auth_group" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(150) NOT NULL UNIQUE);
CREATE TABLE "auth_permission" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "content_type_id" integer NOT NULL REFERENCES "django_content_type" ("id") DEFERRABLE INITIALLY DEFERRED, "codename" varchar(100) NOT NULL, "name" varchar(255) NOT NULL);
CREATE TABLE "auth_group_permissions" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "group_id" integer NOT NULL REFERENCES "auth_group" ("id") DEFERRABLE INITIALLY DEFERRED, "permission_id" integer NOT NULL REFERENCES "auth_permission" ("id") DEFERRABLE INITIALLY DEFERRED);
CREATE UNIQUE INDEX "auth_group_permissions_group_id_permission_id_0cd325b0_uniq" ON "auth_group_permissions" ("group_id", "permission_id");
CREATE INDEX "auth_group_permissions_group_id_b120cbf9" ON "auth_group_permissions" ("group_id");
CREATE TABLE "auth_user" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "password" varchar(128) NOT NULL, "last_login" datetime NULL, "is_superuser" bool NOT NULL, "username" varchar(150) NOT NULL UNIQUE, "first_name" varchar(150) NOT NULL, "email" varchar(254) NOT NULL, "is_staff" bool NOT NULL, "is_active" bool NOT NULL DEFAULT TRUE, "date_joined" datetime NOT NULL DEFAULT (datetime('now')));
CREATE TABLE "django_admin_log" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "object_id" text NULL, "object_repr" varchar(200) NOT NULL, "action_flag" smallint unsigned NOT NULL CHECK ("action_flag" >= 0), "change_message" text NOT NULL, "content_type_id" integer NULL REFERENCES "django_content_type" ("id") DEFERRABLE INITIALLY DEFERRED, "user_id" integer NOT NULL REFERENCES "auth_user" ("id") DEFERRABLE INITIALLY DEFERRED, "action_time" datetime NOT NULL);
-- Firefox places
CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url LONGVARCHAR, title LONGVARCHAR, rev_host LONGVARCHAR, visit_count INTEGER DEFAULT 0, hidden INTEGER DEFAULT 0 NOT NULL, typed INTEGER DEFAULT 0 NOT NULL, frecency INTEGER DEFAULT -1 NOT NULL, last_visit_date INTEGER , guid TEXT, foreign_count INTEGER DEFAULT 0 NOT NULL, url_hash INTEGER DEFAULT 0 NOT NULL , description TEXT, preview_image_url TEXT, origin_id INTEGER REFERENCES moz_origins(id), site_name TEXT);
CREATE TABLE moz_origins ( id INTEGER PRIMARY KEY, prefix TEXT NOT NULL, host TEXT NOT NULL, frecency INTEGER NOT NULL, UNIQUE (prefix, host) );
CREATE INDEX moz_places_url_hashindex ON moz_places (url_hash);
CREATE INDEX moz_places_hostindex ON moz_places (rev_host);
CREATE INDEX moz_places_frecencyindex ON moz_places (frecency);
CREATE UNIQUE INDEX moz_places_guid_uniqueindex ON moz_places (guid);
CREATE TABLE moz_historyvisits (id INTEGER PRIMARY KEY, from_visit INTEGER, place_id INTEGER, visit_date INTEGER, visit_type INTEGER, session INTEGER, source INTEGER DEFAULT 0 NOT NULL, triggeringPlaceId INTEGER);
CREATE TABLE moz_bookmarks (id INTEGER PRIMARY KEY, type INTEGER, fk INTEGER DEFAULT NULL, parent INTEGER, position INTEGER, title LONGVARCHAR, keyword_id INTEGER, folder_type TEXT, dateAdded INTEGER, lastModified INTEGER, guid TEXT, syncStatus INTEGER NOT NULL DEFAULT 0, syncChangeCounter INTEGER NOT NULL DEFAULT 1);
CREATE INDEX moz_bookmarks_itemindex ON moz_bookmarks (fk, type);
CREATE INDEX moz_bookmarks_parentindex ON moz_bookmarks (parent, position);
CREATE TABLE moz_meta (key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID;
CREATE TABLE moz_anno_attributes (id INTEGER PRIMARY KEY, name VARCHAR(32) UNIQUE NOT NULL);
-- Chromium History
CREATE TABLE meta(key LONGVARCHAR NOT NULL UNIQUE PRIMARY KEY, value LONGVARCHAR);
CREATE TABLE urls(id INTEGER PRIMARY KEY AUTOINCREMENT,url LONGVARCHAR,title LONGVARCHAR,visit_count INTEGER DEFAULT 0 NOT NULL,typed_count INTEGER DEFAULT 0 NOT NULL,last_visit_time INTEGER NOT NULL,hidden INTEGER DEFAULT 0 NOT NULL);
CREATE TABLE visits(id INTEGER PRIMARY KEY AUTOINCREMENT,url INTEGER NOT NULL,visit_time INTEGER NOT NULL,from_visit INTEGER,transition INTEGER DEFAULT 0 NOT NULL,segment_id INTEGER,visit_duration INTEGER DEFAULT 0 NOT NULL,incremented_omnibox_typed_score BOOLEAN DEFAULT FALSE NOT NULL);
CREATE INDEX visits_url_index ON visits (url);
CREATE INDEX visits_time_index ON visits (visit_time);
CREATE TABLE keyword_search_terms (keyword_id INTEGER NOT NULL,url_id INTEGER NOT NULL,term LONGVARCHAR NOT NULL,normalized_term LONGVARCHAR NOT NULL);
CREATE INDEX keyword_search_terms_index1 ON keyword_search_terms (keyword_id, normalized_term);
-- Anki
CREATE TABLE col (id integer primary key, crt integer not null, mod integer not null, scm integer not null, ver integer not null, dty integer not null, usn integer not null, ls integer not null, conf text not null, models text not null, decks text not null, dconf text not null, tags text not null);
CREATE TABLE notes (id integer primary key, guid text not null, mid integer not null, mod integer not null, usn integer not null, tags text not null, flds text not null, sfld integer not null, csum integer not null, flags integer not null, data text not null);
CREATE TABLE cards (id integer primary key, nid integer not null, did integer not null, ord integer not null, mod integer not null, usn integer not null, type integer not null, queue integer not null, due integer not null, ivl integer not null, factor integer not null, reps integer not null, lapses integer not null, left integer not null, odue integer not null, odid integer not null, flags integer not null, data text not null);
CREATE TABLE revlog (id integer primary key, cid integer not null, usn integer not null, ease integer not null, ivl integer not null, lastIvl integer not null, factor integer not null, time integer not null, type integer not null);
CREATE TABLE graves (usn integer not null, oid integer not null, type integer not null);
CREATE INDEX ix_notes_usn on notes (usn);
CREATE INDEX ix_cards_sched on cards (did, queue, due);
CREATE TABLE deck_config (id integer PRIMARY KEY NOT NULL, name text NOT NULL COLLATE NOCASE, mtime_secs integer NOT NULL, usn integer NOT NULL, config blob NOT NULL);
-- calibre
CREATE TABLE books ( id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL DEFAULT 'Unknown' COLLATE NOCASE, sort TEXT COLLATE NOCASE, timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP, pubdate TIMESTAMP DEFAULT CURRENT_TIMESTAMP, series_index REAL NOT NULL DEFAULT 1.0, author_sort TEXT COLLATE NOCASE, isbn TEXT DEFAULT "" COLLATE NOCASE, lccn TEXT DEFAULT "" COLLATE NOCASE, path TEXT NOT NULL DEFAULT "", flags INTEGER NOT NULL DEFAULT 1, uuid TEXT, has_cover BOOL DEFAULT 0, last_modified TIMESTAMP NOT NULL DEFAULT "2000-01-01 00:00:00+00:00");
CREATE TABLE authors ( id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE, sort TEXT COLLATE NOCASE, link TEXT NOT NULL DEFAULT "", UNIQUE(name) );
CREATE TABLE books_authors_link ( id INTEGER PRIMARY KEY, book INTEGER NOT NULL, author INTEGER NOT NULL, UNIQUE(book, author) );
CREATE TABLE tags ( id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE, link TEXT NOT NULL DEFAULT "", UNIQUE (name) );
CREATE TABLE data ( id INTEGER PRIMARY KEY, book INTEGER NOT NULL, format TEXT NOT NULL COLLATE NOCASE, uncompressed_size INTEGER NOT NULL, name TEXT NOT NULL, UNIQUE(book, format));
CREATE TABLE preferences(id INTEGER PRIMARY KEY, key TEXT NOT NULL, val TEXT NOT NULL, UNIQUE(key));
CREATE INDEX books_idx ON books (sort COLLATE NOCASE);
CREATE INDEX authors_idx ON books (author_sort COLLATE NOCASE);
CREATE VIEW meta_v AS SELECT id, title, (SELECT sortconcat(bal.id, name) FROM books_authors_link AS bal JOIN authors ON(author = authors.id) WHERE book = books.id) authors FROM books;
CREATE TRIGGER books_delete_trg AFTER DELETE ON books BEGIN DELETE FROM books_authors_link WHERE book=OLD.id; DELETE FROM data WHERE book=OLD.id; END;
CREATE TRIGGER books_insert_trg AFTER INSERT ON books BEGIN UPDATE books SET sort=title, uuid=uuid4() WHERE id=NEW.id; END;
-- nasty
CREATE TABLE [order] ([key] TEXT, `value` TEXT, "group" INTEGER, "index" INTEGER, "default" TEXT DEFAULT 'it''s', "trigger" BLOB DEFAULT x'00', PRIMARY KEY ("key", "group"));
CREATE TABLE "naïve tâble" ("id" INTEGER PRIMARY KEY, "spaced col" VARCHAR(255) COLLATE RTRIM, "quo""te" DOUBLE PRECISION, "big" UNSIGNED BIG INT, created DATETIME DEFAULT (datetime('now')), flag BOOLEAN DEFAULT TRUE, neg INTEGER DEFAULT -1, email TEXT UNIQUE, nm TEXT NOT NULL DEFAULT '');
CREATE TABLE early_child (id INTEGER PRIMARY KEY, later_id INTEGER REFERENCES later_parent, k1 TEXT, k2 INTEGER, FOREIGN KEY (k1, k2) REFERENCES [order] ([key], "group") MATCH FULL ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE later_parent (id INTEGER PRIMARY KEY AUTOINCREMENT, parent_id INTEGER REFERENCES later_parent(id) ON DELETE CASCADE, kind TEXT CHECK (kind IN ('a', 'b', 'c')), score REAL CHECK (CASE WHEN kind = 'a' THEN score > 0 ELSE score >= (1 - 1) END), data TEXT CHECK (data IS NULL OR json_valid(data)));
CREATE TABLE tree (a INTEGER, b INTEGER, pa INTEGER, pb INTEGER, name TEXT, PRIMARY KEY (a, b), FOREIGN KEY (pa, pb) REFERENCES tree (a, b) ON DELETE CASCADE) WITHOUT ROWID;
CREATE TABLE strict_t (id INTEGER PRIMARY KEY, n INT NOT NULL DEFAULT 0, r REAL, t TEXT, b BLOB, a ANY) STRICT;
CREATE TABLE strict_wr (k TEXT PRIMARY KEY, v ANY) STRICT, WITHOUT ROWID;
CREATE TABLE nopk (a, b TEXT, c NUMERIC);
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, status TEXT, payload TEXT, user_id INTEGER, created_at INTEGER NOT NULL);
CREATE INDEX ev_partial ON events (created_at DESC) WHERE status IN ('open', 'pending') AND user_id IS NOT NULL;
CREATE INDEX ev_json ON events (json_extract(payload, '$.a'));
CREATE INDEX ev_lower ON events (lower(kind) COLLATE NOCASE DESC, id);
CREATE INDEX "weird idx" ON "naïve tâble" ("spaced col" COLLATE NOCASE, "quo""te" DESC);
CREATE VIEW v_events AS SELECT id, kind, status FROM events WHERE status IS NOT NULL;
CREATE VIEW v_events_open AS SELECT * FROM v_events WHERE status = 'open';
CREATE VIEW "v order" AS SELECT "key", "value" FROM [order];
CREATE TRIGGER ev_upd AFTER UPDATE OF status ON events WHEN new.status = 'closed' AND old.status <> 'closed' BEGIN INSERT INTO nopk (a, b) VALUES (new.id, 'closed'); END;
CREATE TRIGGER v_ins INSTEAD OF INSERT ON v_events BEGIN INSERT INTO events (kind, status, created_at) VALUES (new.kind, new.status, 0); END;
CREATE VIRTUAL TABLE events_fts USING fts5(kind, payload, content='events', content_rowid='id');
CREATE TRIGGER events_ai AFTER INSERT ON events BEGIN INSERT INTO events_fts(rowid, kind, payload) VALUES (new.id, new.kind, new.payload); END;
CREATE VIRTUAL TABLE contentless USING fts5(a, b, content='');
CREATE VIRTUAL TABLE old_fts USING fts4(title, body, tokenize=porter);
CREATE VIRTUAL TABLE geo USING rtree(id, minx, maxx, miny, maxy);
"""


def app_db(path):
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.create_function("sortconcat", 2, lambda a, b: b)  # calibre registers these on its connections
    conn.create_function("uuid4", 0, lambda: "u")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA user_version = 42")
    conn.execute("PRAGMA application_id = 1095649606")
    conn.executescript(APP)
    conn.execute("INSERT INTO django_content_type (app_label, model) VALUES ('auth', 'user')")
    conn.execute("INSERT INTO moz_origins VALUES (1, 'https://', 'example.com', 10)")
    conn.execute("INSERT INTO moz_places (url, origin_id, url_hash, guid) VALUES ('https://example.com', 1, 5, 'g1')")
    conn.execute("INSERT INTO [order] ([key], value, [group]) VALUES ('k', 'v', 1)")
    conn.execute("INSERT INTO later_parent (kind, score, data) VALUES ('a', 1.0, ?)", ('{"x": 1}',))
    conn.execute("INSERT INTO later_parent (parent_id, kind, score) VALUES (1, 'b', 0)")
    conn.execute("INSERT INTO early_child (later_id, k1, k2) VALUES (1, 'k', 1)")
    conn.execute("INSERT INTO tree VALUES (1, 1, NULL, NULL, 'root'), (1, 2, 1, 1, 'kid')")
    conn.execute("INSERT INTO books (title) VALUES ('A book')")
    for i in range(30):
        conn.execute("INSERT INTO events (kind, status, payload, user_id, created_at) VALUES (?, ?, ?, ?, ?)",
                     ("k%d" % (i % 5), ["open", "pending", "closed"][i % 3], '{"a": %d}' % i, i, i))
    conn.execute("INSERT INTO contentless (rowid, a, b) VALUES (1, 'x', 'y')")
    conn.execute("INSERT INTO old_fts VALUES ('t', 'running')")
    conn.execute("INSERT INTO geo VALUES (1, 0, 1, 0, 1)")
    conn.execute("ANALYZE")
    conn.close()
    return path


def test_a_realistic_37_table_application_database_round_trips(tmp_path):
    path = app_db(tmp_path / "app.db")
    text, schema, copy = round_trip(path, tmp_path)
    assert len(schema.tables) == 37 and len(schema.virtual_tables) == 4 and len(schema.views) == 4
    assert "Pragma('user_version', 42, persistent=True)" in text and "sqlite_stat1" not in text
    # calibre's DEFAULT "" (a double-quoted string) is written as stored: in parentheses it is a column
    books = schema.table("books")
    assert books.column("isbn").default.sql == '""' and books.column("isbn").collate == "NOCASE"
    conn = connect(copy)
    conn.create_function("uuid4", 0, lambda: "u")  # its trigger calls it
    conn.execute("INSERT INTO books (title) VALUES ('x')")
    assert conn.execute("SELECT isbn, path, last_modified FROM books").fetchall() == [
        ("", "", "2000-01-01 00:00:00+00:00")]
    conn.execute("""INSERT INTO events (kind, payload, created_at) VALUES ('k', '{"a": "hello"}', 1)""")
    assert conn.execute("SELECT rowid FROM events_fts WHERE events_fts MATCH 'hello'").fetchall() == [(1,)]
    with pytest.raises(sqlite3.IntegrityError):  # CHECK with CASE kept
        conn.execute("INSERT INTO later_parent (kind, score) VALUES ('a', -1)")
    conn.close()


def test_the_cli_round_trip_on_the_application_database(tmp_path):
    path = app_db(tmp_path / "app.db")
    runner = make_runner()
    decl = str(tmp_path / "decl.py")
    assert runner.invoke(main, ["inspect", "--db", str(path), "--out", decl]).exit_code == 0
    before = open(path, "rb").read()
    for args in (["plan", "--db", str(path)], ["apply", "--db", str(path), "--no-backup"]):
        result = runner.invoke(main, args + ["--schema", decl])
        assert result.exit_code == 0 and "up to date" in result.stdout, result.output
    assert open(path, "rb").read() == before
    new = str(tmp_path / "new.db")
    result = runner.invoke(main, ["apply", "--db", new, "--no-backup", "--schema", decl])
    assert result.exit_code == 0, result.output
    for args in (["validate", "--db", new], ["validate", "--db", str(path)], ["explain", "--db", str(path)],
                 ["lint"], ["lint", "--db", str(path)], ["docs", "--out", str(tmp_path / "docs")]):
        result = runner.invoke(main, args + ["--schema", decl])
        assert result.exit_code == 0 and not isinstance(result.exception, Exception), (args, result.output)


def test_a_view_calling_a_function_the_application_registers_does_not_block_apply(tmp_path):
    path = make(tmp_path / "cal.db", """
        CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT);
        CREATE VIEW meta AS SELECT id, title_sort(title) AS sort FROM books;
    """, [("title_sort", 1, lambda t: t)])
    round_trip(path, tmp_path)


def test_bare_and_double_quoted_defaults_are_written_as_stored(tmp_path):
    path = make(tmp_path / "d.db", """
        CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT DEFAULT "", b TEXT DEFAULT "2000-01-01", c TEXT DEFAULT plain,
                        d INTEGER DEFAULT -1, e BLOB DEFAULT x'00', f TEXT DEFAULT 'it''s', g BOOLEAN DEFAULT TRUE,
                        h DATETIME DEFAULT (datetime('now')), i INTEGER DEFAULT 0x10, j REAL DEFAULT .5);
    """)
    _, _, copy = round_trip(path, tmp_path)
    conn = connect(copy)
    conn.execute("INSERT INTO t (id) VALUES (1)")
    assert conn.execute("SELECT a, b, c, d, e, f, g, i, j FROM t").fetchone() == (
        "", "2000-01-01", "plain", -1, b"\x00", "it's", 1, 16, 0.5)
    conn.close()


def test_declared_types_as_sqlite_stores_them_round_trip(tmp_path):
    path = make(tmp_path / "types.db", """
        CREATE TABLE t (a VARCHAR (255), b "double precision", c TIMESTAMP   WITH TIME ZONE, d DECIMAL(10, 2),
                        e UNSIGNED BIG INT, f NUMERIC(+5), g [my type], h INT(11));
    """)
    _, schema, _ = round_trip(path, tmp_path)
    assert [c.type for c in schema.table("t").columns] == [
        "VARCHAR (255)", "double precision", "TIMESTAMP   WITH TIME ZONE", "DECIMAL(10, 2)", "UNSIGNED BIG INT",
        "NUMERIC(+5)", "my type", "INT(11)"]


def test_double_quoted_strings_in_checks_and_index_clauses_keep_their_meaning(tmp_path):
    path = make(tmp_path / "dq.db", """
        CREATE TABLE dq (id INTEGER PRIMARY KEY, status TEXT CHECK (status IN ("open", "closed")), "Kind" TEXT);
        CREATE INDEX dq_p ON dq ("Kind") WHERE status = "open" AND "Kind" IS NOT NULL;
        CREATE INDEX dq_e ON dq (coalesce("Kind", "none"));
    """)
    text, schema, copy = round_trip(path, tmp_path)
    assert schema.table("dq").checks[0].expr == 'status in ("open", "closed")'
    assert schema.index("dq_p").where == 'status = "open" and kind is not null'
    conn = connect(copy)
    conn.execute("INSERT INTO dq (status) VALUES ('open')")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO dq (status) VALUES ('other')")
    conn.close()


def test_conflict_clauses_round_trip_naming_each_in_the_declaration(tmp_path):
    path = make(tmp_path / "c.db", """
        CREATE TABLE "my t" (id INTEGER PRIMARY KEY ON CONFLICT ABORT, email TEXT UNIQUE ON CONFLICT REPLACE,
                             nm TEXT NOT NULL ON CONFLICT IGNORE, a INT, b INT, UNIQUE (a, b) ON CONFLICT FAIL);
        CREATE TABLE k (x TEXT, y INT, PRIMARY KEY (x, y) ON CONFLICT REPLACE) WITHOUT ROWID;
        INSERT INTO "my t" (email, nm, a, b) VALUES ('e@x', 'n', 1, 2);
    """)
    text, schema, copy = round_trip(path, tmp_path)
    assert "Column('nm', 'TEXT', not_null=True, not_null_on_conflict='IGNORE')" in text
    assert "Unique(['email'], on_conflict='REPLACE')" in text and "Unique(['a', 'b'], on_conflict='FAIL')" in text
    assert "PrimaryKey(['x', 'y'], on_conflict='REPLACE')" in text
    assert "ABORT" not in text  # SQLite's default: written as none
    assert schema.table("my t").primary_key.on_conflict is None
    assert read_structure(copy)["tables"]["my t"]["on_conflict"] == [
        ["NOT NULL", ["nm"], "IGNORE"], ["UNIQUE", ["a", "b"], "FAIL"], ["UNIQUE", ["email"], "REPLACE"]]
    result = make_runner().invoke(main, ["inspect", "--db", str(path), "--out", str(tmp_path / "x.py")])
    assert result.exit_code == 0 and (tmp_path / "x.py").read_text(encoding="utf-8") == text


def test_desc_and_collate_on_primary_key_or_unique_keys_are_refused(tmp_path):
    path = make(tmp_path / "k.db", """
        CREATE TABLE a (id INTEGER PRIMARY KEY DESC, v TEXT);
        CREATE TABLE b (x TEXT, y INT, PRIMARY KEY (y DESC, x COLLATE NOCASE)) WITHOUT ROWID;
        CREATE TABLE c (id INTEGER PRIMARY KEY, n TEXT COLLATE NOCASE, m TEXT, UNIQUE (n COLLATE NOCASE), UNIQUE (m COLLATE RTRIM));
    """)
    with pytest.raises(DeclarationError) as info:
        inspect_database(path)
    problems = info.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("table 'a': PRIMARY KEY (id DESC): ") and "no rowid alias" in problems[0]
    assert problems[1].startswith("table 'b': PRIMARY KEY (y DESC, x COLLATE NOCASE): ")
    assert problems[2].startswith("table 'c': UNIQUE (m COLLATE RTRIM): ")


def test_a_table_named_like_another_modules_shadow_table_is_the_applications(tmp_path):
    path = make(tmp_path / "s.db", """
        CREATE VIRTUAL TABLE search USING fts5(body);
        CREATE TABLE search_stat (id INTEGER PRIMARY KEY, hits INTEGER NOT NULL DEFAULT 0);
        CREATE VIRTUAL TABLE geo USING rtree(id, a, b);
        CREATE TABLE geo_config (k TEXT PRIMARY KEY, v TEXT);
        INSERT INTO search_stat (hits) VALUES (3);
    """)
    text, schema, _ = round_trip(path, tmp_path)
    assert [t.name for t in schema.tables] == ["search_stat", "geo_config"]  # FTS5 has no _stat, R*Tree no _config
    assert "search_data" not in text and "geo_node" not in text


def test_a_foreign_key_to_a_missing_table_or_column_is_refused_saying_what_to_do(tmp_path):
    path = make(tmp_path / "f.db", """
        CREATE TABLE p (id INTEGER PRIMARY KEY);
        CREATE TABLE dangling (id INTEGER PRIMARY KEY, x INTEGER REFERENCES gone (id), y INTEGER REFERENCES p (nope));
    """)
    with pytest.raises(DeclarationError) as info:
        inspect_database(path)
    assert sorted(info.value.problems) == [
        "table 'dangling', foreign key (x): references table 'gone', which the database does not have (SQLite "
        "accepts that, and fails every write the key checks); rebuild the table without the foreign key, or create "
        "what it references, then inspect again",
        "table 'dangling', foreign key (y): references column 'p.nope', which the database does not have (SQLite "
        "accepts that, and fails every write the key checks); rebuild the table without the foreign key, or create "
        "what it references, then inspect again"]


def test_a_negative_number_default_is_a_literal_and_a_constant(tmp_path):
    path = make(tmp_path / "n.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER DEFAULT -1, b REAL DEFAULT -1.5);")
    _, schema, _ = round_trip(path, tmp_path)
    assert [c.default.value for c in schema.table("t").columns[1:]] == [-1, -1.5]


def test_a_collation_the_application_defines_is_refused_naming_the_column_or_index(tmp_path):
    path = tmp_path / "anki.db"
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.create_collation("unicase", lambda a, b: (a.lower() > b.lower()) - (a.lower() < b.lower()))
    conn.executescript("""
        CREATE TABLE deck_config (id INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL COLLATE unicase);
        CREATE INDEX idx_dc_name ON deck_config (name);
        CREATE TABLE notes (id INTEGER PRIMARY KEY, sfld TEXT);
        CREATE INDEX idx_notes_sfld ON notes (sfld COLLATE unicase);
    """)
    conn.close()
    with pytest.raises(DeclarationError) as info:
        inspect_database(path)
    assert [p.split(" is a collating")[0] for p in info.value.problems] == [
        "table 'deck_config', column 'name': COLLATE UNICASE", "index 'idx_notes_sfld': COLLATE unicase"]
    assert info.value.problems[1].endswith("use one of those, or leave the index out of the declaration")


def test_explain_sample_rows_skips_rows_an_expression_index_or_an_application_function_refuses(tmp_path):
    path = make(tmp_path / "e.db", """
        CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT, kind TEXT);
        CREATE INDEX ev_json ON events (json_extract(payload, '$.a'));
        CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT, uuid TEXT);
        CREATE TRIGGER books_ai AFTER INSERT ON books BEGIN UPDATE books SET uuid = uuid4() WHERE id = new.id; END;
        CREATE TABLE plain (id INTEGER PRIMARY KEY, v TEXT);
    """)
    decl = tmp_path / "decl.py"
    decl.write_text(inspect_database(path), encoding="utf-8")
    result = make_runner().invoke(main, ["explain", "--db", str(path), "--schema", str(decl), "--sample-rows", "10"])
    assert result.exit_code == 0 and not isinstance(result.exception, Exception), result.output
    assert "plain +10" in result.stdout and "books +0" in result.stdout


def test_the_mermaid_diagram_reads_names_with_spaces_quotes_and_unicode(tmp_path):
    from schema_dsl.compile import docs
    path = make(tmp_path / "m.db", """
        CREATE TABLE "naïve tâble" (id INTEGER PRIMARY KEY, "quo""te" TEXT, "1st col" INT);
        CREATE TABLE kid (id INTEGER PRIMARY KEY, "p ""id" INTEGER REFERENCES "naïve tâble" (id));
    """)
    decl = tmp_path / "decl.py"
    decl.write_text(inspect_database(path), encoding="utf-8")
    lines = docs.mermaid(load_file(decl))
    assert '    na_ve_t_ble |o--o{ kid : "p \'id"' in lines
    assert "    na_ve_t_ble {" in lines and "        TEXT quo_te" in lines and "        INT _1st_col" in lines


def test_file_settings_no_declaration_holds_are_named_in_the_written_declaration(tmp_path):
    path = tmp_path / "places.db"
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA page_size = 32768")
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
    conn.close()
    text, _, _ = round_trip(path, tmp_path)
    assert ("# Not declared (a declaration has no place for them): this file has auto_vacuum = INCREMENTAL, "
            "page_size = 32768.\n") in text
    plain = make(tmp_path / "plain.db", "CREATE TABLE t (id INTEGER PRIMARY KEY);")
    assert "Not declared" not in inspect_database(plain)


def test_names_the_model_refuses_are_refused_saying_what_to_do(tmp_path):
    path = make(tmp_path / "p.db", 'CREATE TABLE " padded " (x); CREATE TABLE ok ("col\nnl" TEXT);')
    with pytest.raises(DeclarationError) as info:
        inspect_database(path)
    assert info.value.problems == (
        "table ' padded ': the name has surrounding white space or a control character, which a declaration does "
        "not accept; rename it in the database, then inspect again",
        "table 'ok', column 'col\\nnl': the name has surrounding white space or a control character, which a "
        "declaration does not accept; rename it in the database, then inspect again")


def test_a_collate_inside_a_check_is_not_the_columns_collation(tmp_path):
    path = make(tmp_path / "c.db", """
        CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT CHECK (a <> 'x' COLLATE NOCASE),
                        b TEXT COLLATE RTRIM CHECK (b <> '' COLLATE NOCASE), c TEXT DEFAULT 'v' COLLATE NOCASE);
        CREATE INDEX ia ON t (a);
    """)
    _, schema, copy = round_trip(path, tmp_path)
    assert [c.collate for c in schema.table("t").columns] == [None, None, "RTRIM", "NOCASE"]
    assert schema.index("ia").columns[0].collate is None
    assert structure.read_structure(sqlite3.connect(str(path)))["tables"]["t"]["columns"]["a"].get("collate") is None
    conn = connect(copy)
    conn.execute("INSERT INTO t (a) VALUES ('Y')")
    assert conn.execute("SELECT count(*) FROM t WHERE a = 'y'").fetchone()[0] == 0  # BINARY, as in the original
    conn.close()
