"""The example project of docs/guide.md (examples/bookmarks): a file with rows taken through all six versions
with the CLI, every row and value kept or changed exactly as each version declares, `validate` passing after
each; then the project's own [tool.schemagen] configuration finds the file up to date."""
from __future__ import annotations

import sqlite3

import pytest

from conftest import ROOT

PROJECT = ROOT / "examples" / "bookmarks"
KEYS = {"users": "id", "folders": "id", "bookmarks": "id", "tags": "id", "bookmark_tags": "bookmark_id, tag_id",
        "visits": "id"}


def _cli(runner, *args):
    from schema_dsl.cli import main
    return runner.invoke(main, list(args), catch_exceptions=False)


def _connect(path):
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    return conn


def _snapshot(path):
    """Every row of every table, as {table: [{column: value}]} in key order."""
    with _connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (%s)"
                                             % ", ".join("'%s'" % t for t in KEYS))]
        return {t: [dict(r) for r in conn.execute("SELECT * FROM %s ORDER BY %s" % (t, KEYS[t]))] for t in tables}


def _run(conn, rows_file):
    """The guide's sample rows (examples/bookmarks/rows_v*.sql), as `sqlite3 FILE < rows_v1.sql` runs them."""
    conn.executescript((PROJECT / rows_file).read_text(encoding="utf-8"))


def _search(path, words):
    with _connect(path) as conn:
        conn.execute("INSERT INTO bookmarks_fts (bookmarks_fts, rank) VALUES ('integrity-check', 1)")  # index == rows
        return [r[0] for r in conn.execute("SELECT rowid FROM bookmarks_fts WHERE bookmarks_fts MATCH ? ORDER BY rowid",
                                           (words,))]


def _step(runner, path, version, expect_in_plan, *apply_flags):
    spec = str(PROJECT / ("v%d.py" % version))
    plan = _cli(runner, "plan", "--db", str(path), "--schema", spec)
    assert plan.exit_code == 0, plan.output + plan.stderr
    for text in expect_in_plan:
        assert text in plan.output, "v%d plan: expected %r in\n%s" % (version, text, plan.output)
    applied = _cli(runner, "apply", "--db", str(path), "--schema", spec, *apply_flags)
    assert applied.exit_code == 0, applied.output + applied.stderr
    _validated(runner, path, "--schema", spec)


def _validated(runner, path, *args):
    valid = _cli(runner, "validate", "--db", str(path), *args)
    assert valid.exit_code == 0, valid.output + valid.stderr
    again = _cli(runner, "plan", "--db", str(path), *args)
    assert again.exit_code == 0 and again.output.startswith("up to date"), again.output


def test_the_bookmarks_project_goes_through_six_versions_keeping_every_row(runner, tmp_path, monkeypatch):
    path = tmp_path / "bookmarks.db"

    # v1: five tables, a composite and a self-referencing key, FTS5 with its triggers, a view, a trigger
    _step(runner, path, 1, ["run ddl-tables.sql", 'CREATE TABLE IF NOT EXISTS "bookmark_tags"',
                            'CREATE VIRTUAL TABLE IF NOT EXISTS "bookmarks_fts" USING fts5',
                            "CREATE VIEW tag_counts", "CREATE TRIGGER bookmarks_folder_owner"])
    with _connect(path) as conn:
        _run(conn, "rows_v1.sql")
        with pytest.raises(sqlite3.IntegrityError, match="the folder belongs to another user"):
            conn.execute("INSERT INTO bookmarks (user_id, folder_id, url) VALUES (2, 1, 'https://x.example/')")
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            conn.execute("INSERT INTO folders (user_id, parent_id, name) VALUES (1, 99, 'orphan')")
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute("INSERT INTO users (email, name) VALUES ('ANN@example.org', 'Ann again')")  # NOCASE
        assert [tuple(r) for r in conn.execute("SELECT * FROM tag_counts ORDER BY name")] == \
            [(2, "food", 1), (1, "later", 1), (1, "sqlite", 2)]
    assert _search(path, "rebuild") == [2] and _search(path, "sqlite") == [1, 2]
    v1 = _snapshot(path)
    assert sorted(v1) == ["bookmark_tags", "bookmarks", "folders", "tags", "users"]
    assert sum(len(rows) for rows in v1.values()) == 2 + 4 + 5 + 3 + 4

    # v2: a new table; nothing else changes
    _step(runner, path, 2, ["1 step", "create table 'visits'"])
    v2 = _snapshot(path)
    assert v2 == {**v1, "visits": []}
    with _connect(path) as conn:
        _run(conn, "rows_v2.sql")   # the app records visits, and a bookmark goes: its visit 3 stays (no foreign key yet)
    before = _snapshot(path)
    assert [v["bookmark_id"] for v in before["visits"]] == [1, 1, 3, 4, 5]
    assert _search(path, "example") == [4, 5]

    # v3: a NOT NULL column with a default; existing rows read 0, nothing else changes
    _step(runner, path, 3, ["create index 'idx_bookmarks_user_list'"])
    v3 = _snapshot(path)
    assert v3 == {**before, "bookmarks": [{**b, "archived": 0} for b in before["bookmarks"]]}
    with _connect(path) as conn:
        conn.execute("UPDATE bookmarks SET archived = 1 WHERE id = 5")
        with pytest.raises(sqlite3.IntegrityError, match="bookmarks_archived_is_0_or_1"):
            conn.execute("UPDATE bookmarks SET archived = 2 WHERE id = 4")
    before = _snapshot(path)

    # v4: a renamed column keeps every value; the view reads the new name
    _step(runner, path, 4, ["1 step", "rename column 'tags'.'name' to 'label'"])
    v4 = _snapshot(path)
    assert v4 == {**before, "tags": [{"id": t["id"], "user_id": t["user_id"], "label": t["name"]}
                                     for t in before["tags"]]}
    with _connect(path) as conn:
        assert [tuple(r) for r in conn.execute("SELECT user_id, label, bookmarks FROM tag_counts ORDER BY label")] == \
            [(2, "food", 1), (1, "later", 1), (1, "sqlite", 2)]

    # v5: a foreign key added to a table holding rows; repair="delete" deletes the one orphan, asked first
    refused = _cli(runner, "apply", "--db", str(path), "--schema", str(PROJECT / "v5.py"))
    assert refused.exit_code == 2 and "1 row deleted" in refused.stderr, refused.output + refused.stderr
    assert _snapshot(path) == v4   # refused: nothing changed
    _step(runner, path, 5, ["delete 1 row of 'visits' (rowid 3): no parent in 'bookmarks'",
                            "foreign key (bookmark_id) -> bookmarks is new"], "--yes")
    v5 = _snapshot(path)
    assert v5 == {**v4, "visits": [v for v in v4["visits"] if v["id"] != 3]}
    with _connect(path) as conn:
        conn.execute("DELETE FROM bookmarks WHERE id = 4")   # ON DELETE CASCADE now takes its visits along
        assert conn.execute("SELECT count(*) FROM visits WHERE bookmark_id = 4").fetchone()[0] == 0
    before = _snapshot(path)
    assert _search(path, "bread") == []

    # v6: a removed column loses only its values (asked first); a removed index loses nothing
    _step(runner, path, 6, ["drop index 'idx_tags_user'", "column 'referrer' removed"], "--yes")
    v6 = _snapshot(path)
    assert v6 == {**before, "visits": [{k: v for k, v in row.items() if k != "referrer"} for row in before["visits"]]}
    assert _search(path, "sqlite") == [1, 2]
    with _connect(path) as conn:
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "idx_tags_user" not in indexes and "idx_visits_bookmark" in indexes
        with pytest.raises(sqlite3.IntegrityError, match="the folder belongs to another user"):
            conn.execute("INSERT INTO bookmarks (user_id, folder_id, url) VALUES (2, 1, 'https://x.example/')")
        conn.execute("INSERT INTO bookmarks (user_id, url, title) VALUES (1, 'https://new.example/', 'Fresh find')")
    assert _search(path, "fresh") == [6]   # the sync triggers still work after every rebuild

    # the project's own configuration ([tool.schemagen] declaration = "v6.py") needs no --schema
    monkeypatch.chdir(PROJECT)
    _validated(runner, path)


def test_a_file_at_version_2_goes_straight_to_version_6(runner, tmp_path):
    """renamed_from, repair= and removed(...) stay in later versions, so an old file skips the ones between."""
    path = tmp_path / "bookmarks.db"
    for version, rows in ((1, "rows_v1.sql"), (2, "rows_v2.sql")):
        assert _cli(runner, "apply", "--db", str(path), "--schema", str(PROJECT / ("v%d.py" % version))).exit_code == 0
        with _connect(path) as conn:
            _run(conn, rows)
    before = _snapshot(path)
    _step(runner, path, 6, ["rename column 'tags'.'name' to 'label'",
                            "delete 1 row of 'visits' (rowid 3): no parent in 'bookmarks'",
                            "column 'referrer' removed", "drop index 'idx_tags_user'"], "--yes")
    assert _snapshot(path) == {
        **before,
        "bookmarks": [{**b, "archived": 0} for b in before["bookmarks"]],
        "tags": [{"id": t["id"], "user_id": t["user_id"], "label": t["name"]} for t in before["tags"]],
        "visits": [{k: v for k, v in row.items() if k != "referrer"} for row in before["visits"] if row["id"] != 3],
    }
    assert _search(path, "sqlite") == [1, 2]


def test_the_example_projects_generated_files_are_fresh(runner, monkeypatch):
    monkeypatch.chdir(PROJECT)
    result = _cli(runner, "render", "--check")
    assert result.exit_code == 0, result.output + result.stderr


def test_each_version_is_linted_without_errors(runner):
    for version in range(1, 7):
        result = _cli(runner, "lint", "--schema", str(PROJECT / ("v%d.py" % version)))
        assert result.exit_code == 0, result.output
