"""Changes that carry data on PostgreSQL: using= conversions (pg/plan.py) through the expression translator, which
learns CAST(x AS type) through the type mapping, or using_postgresql=."""
from __future__ import annotations

import textwrap

import pytest

from conftest import make_runner
from pg_cluster import pg_cluster, pg_url  # noqa: F401 (fixtures)
from schema_dsl.compile.postgresql import Translator, Untranslatable

OLD = """
from schema_dsl.model import Column, PrimaryKey, Schema, Table
SCHEMA = Schema("app", tables=[Table("links", [Column("id", "INTEGER"), Column("rating", "TEXT")], PrimaryKey(["id"]))])
"""

NEW = """
from schema_dsl.model import Column, PrimaryKey, Schema, Table
SCHEMA = Schema("app", tables=[Table("links", [Column("id", "INTEGER"), Column("rating", "INTEGER"%s)],
                                     PrimaryKey(["id"]))])
"""


def _decl(tmp_path, name, text):
    path = tmp_path / ("%s.py" % name)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return "%s:SCHEMA" % path


def _rows(url, sql):
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def _old_with_rows(runner, tmp_path, url):
    from schema_dsl.cli import main
    assert runner.invoke(main, ["apply", "--db", url, "--schema", _decl(tmp_path, "old", OLD)]).exit_code == 0
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO links (id, rating) VALUES (1, '5'), (2, 'great'), (3, NULL), (4, '12')")


def test_the_translator_learns_cast_through_the_type_mapping():
    assert Translator({"rating": "text"}).translate("CAST(rating AS INTEGER)") == "CAST(rating AS bigint)"
    assert Translator({"r": "text"}).translate("CASE WHEN r <> '' THEN CAST(r AS REAL) END") == \
        "case when r <> '' then CAST(r AS double precision) end"
    with pytest.raises(Untranslatable):
        Translator({"r": "text"}).translate("CAST(r)")


def test_using_postgresql_converts_and_the_nulls_it_makes_are_data_loss(tmp_path, pg_url):
    from schema_dsl.cli import main
    runner = make_runner()
    _old_with_rows(runner, tmp_path, pg_url)
    new = _decl(tmp_path, "new", NEW % ", using=\"CAST(rating AS INTEGER)\", using_postgresql=\"CASE WHEN rating ~ "
                                      "'^[0-9]+$' THEN rating::bigint END\"")
    plan = runner.invoke(main, ["plan", "--db", pg_url, "--schema", new])
    assert plan.exit_code == 0, plan.output + plan.stderr
    assert "USING CASE WHEN rating ~ '^[0-9]+$' THEN rating::bigint END;" in plan.output
    assert "column 'links'.'rating': 1 non-NULL value becomes NULL" in plan.output
    refused = runner.invoke(main, ["apply", "--db", pg_url, "--schema", new])
    assert refused.exit_code == 2 and "loses data" in refused.stderr
    done = runner.invoke(main, ["apply", "--db", pg_url, "--schema", new, "--allow-data-loss", "--yes"])
    assert done.exit_code == 0, done.output + done.stderr
    assert _rows(pg_url, "SELECT id, rating FROM links ORDER BY id") == [(1, 5), (2, None), (3, None), (4, 12)]


def test_a_translated_using_that_leaves_null_under_not_null_is_refused_naming_rows(tmp_path, pg_url):
    from schema_dsl.cli import main
    runner = make_runner()
    _old_with_rows(runner, tmp_path, pg_url)
    new = _decl(tmp_path, "new", NEW.replace('"INTEGER"', '"INTEGER", not_null=True') % (
        ", using=\"CASE WHEN rating <> 'great' THEN CAST(rating AS INTEGER) END\""))
    result = runner.invoke(main, ["plan", "--db", pg_url, "--schema", new])
    assert result.exit_code == 2
    assert "NOT NULL, but the conversion USING case when rating <> 'great' then CAST(rating AS bigint) end gives " \
           "NULL in rows (id) 2, 3" in result.stderr


DS_OLD = """
from schema_dsl.model import Column, PrimaryKey, Schema, Table, fk
SCHEMA = Schema("app", tables=[
    Table("users", [Column("id", "INTEGER"), Column("name", "TEXT", not_null=True)], PrimaryKey(["id"])),
    Table("links", [Column("id", "INTEGER"), Column("user_id", "INTEGER"), Column("rating", "TEXT")],
          PrimaryKey(["id"]), foreign_keys=[fk("user_id", "users", "id")]),
])
"""

DS_NEW = """
from schema_dsl.model import Column, DataStep, PrimaryKey, Schema, Table, fk, removed
SCHEMA = Schema("app", tables=[
    Table("users", [Column("id", "INTEGER"), Column("first_name", "TEXT", not_null=True), Column("last_name", "TEXT"),
                    Column("nick", "TEXT")], PrimaryKey(["id"])),
    Table("links", [Column("id", "INTEGER"), Column("user_id", "INTEGER"),
                    Column("rating", "INTEGER", using="CASE WHEN trim(rating) <> '' AND trim(rating) NOT GLOB "
                                                      "'*[^0-9]*' THEN CAST(trim(rating) AS INTEGER) END",
                           using_postgresql="CASE WHEN trim(rating) ~ '^[0-9]+$' THEN "
                                                                 "trim(rating)::bigint END")],
          PrimaryKey(["id"]), foreign_keys=[fk("user_id", "users", "id")]),
], removed=[removed("column", "name", "split into first_name and last_name", table="users")],
   data_steps=[DataStep("split_name", sql="UPDATE users SET first_name = name",
                        postgresql="UPDATE users SET first_name = split_part(name, ' ', 1), "
                                   "last_name = nullif(substr(name, length(split_part(name, ' ', 1)) + 2), '')"),
               DataStep("nick", sql="UPDATE users SET nick = lower(%s) WHERE id > 1"),
               DataStep("sqlite_cleanup", sql="UPDATE users SET last_name = last_name WHERE 0", sqlite_only=True)])
"""


def _ds_old(runner, tmp_path, url):
    from schema_dsl.cli import main
    assert runner.invoke(main, ["apply", "--db", url, "--schema", _decl(tmp_path, "dsold", DS_OLD)]).exit_code == 0
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (id, name) VALUES (1, 'Ada Lovelace'), (2, 'Plato')")
        conn.execute("INSERT INTO links (id, user_id, rating) VALUES (1, 1, '5'), (2, 2, 'great'), (3, 1, NULL), "
                     "(4, 2, ' 12 ')")


def test_one_apply_expands_moves_the_data_converts_and_contracts_on_postgresql(tmp_path, pg_url):
    from schema_dsl.cli import main
    runner = make_runner()
    _ds_old(runner, tmp_path, pg_url)
    new = _decl(tmp_path, "dsnew", DS_NEW % "first_name")
    plan = runner.invoke(main, ["plan", "--db", pg_url, "--schema", new])
    assert plan.exit_code == 0, plan.output + plan.stderr
    assert "run data step 'split_name'" in plan.output and 'UPDATE "users" SET nick = lower(first_name) WHERE id > 1;' \
        in plan.output
    assert _rows(pg_url, "SELECT count(*) FROM pg_class WHERE relname = '_schemagen_history'") == [(0,)]  # only read
    done = runner.invoke(main, ["apply", "--db", pg_url, "--schema", new, "--allow-data-loss", "--yes"])
    assert done.exit_code == 0, done.output + done.stderr
    assert _rows(pg_url, "SELECT id, first_name, last_name, nick FROM users ORDER BY id") == [
        (1, "Ada", "Lovelace", None), (2, "Plato", None, "plato")]
    assert _rows(pg_url, "SELECT id, rating FROM links ORDER BY id") == [(1, 5), (2, None), (3, None), (4, 12)]
    assert _rows(pg_url, "SELECT data_steps_run, data_steps_recorded FROM _schemagen_history") == [
        ('["split_name", "nick"]', '["sqlite_cleanup"]')]
    # run once: a changed value is not overwritten by a second apply, which finds nothing to do
    import psycopg
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE users SET nick = 'kept' WHERE id = 2")
    again = runner.invoke(main, ["apply", "--db", pg_url, "--schema", new, "--json"])
    assert again.exit_code == 0 and '"applied": false' in again.output
    assert _rows(pg_url, "SELECT nick FROM users WHERE id = 2") == [("kept",)]
    # validate: the history table is no part of the user's schema
    report = runner.invoke(main, ["validate", "--db", pg_url, "--schema", new])
    assert report.exit_code == 0, report.output + report.stderr
    assert "last brought to: 'app'" in report.output


def test_a_failing_data_step_rolls_back_everything_on_postgresql(tmp_path, pg_url):
    from schema_dsl.cli import main
    runner = make_runner()
    _ds_old(runner, tmp_path, pg_url)
    bad = _decl(tmp_path, "dsbad", DS_NEW % "no_such_column")
    before = _rows(pg_url, "SELECT * FROM users ORDER BY id")
    result = runner.invoke(main, ["apply", "--db", pg_url, "--schema", bad, "--allow-data-loss", "--yes"])
    assert result.exit_code == 2
    assert "nick" in result.stderr
    assert _rows(pg_url, "SELECT * FROM users ORDER BY id") == before
    assert _rows(pg_url, "SELECT count(*) FROM pg_class WHERE relname = '_schemagen_history'") == [(0,)]


def test_a_new_postgresql_database_records_the_steps_without_running_them(tmp_path, pg_url):
    from schema_dsl.cli import main
    runner = make_runner()
    new = _decl(tmp_path, "dsnew", DS_NEW % "first_name")
    result = runner.invoke(main, ["apply", "--db", pg_url, "--schema", new])
    assert result.exit_code == 0, result.output + result.stderr
    assert _rows(pg_url, "SELECT data_steps_run, data_steps_recorded FROM _schemagen_history") == [
        ("[]", '["split_name", "nick", "sqlite_cleanup"]')]
    again = runner.invoke(main, ["apply", "--db", pg_url, "--schema", new, "--json"])
    assert again.exit_code == 0 and '"applied": false' in again.output


def test_an_untranslatable_data_step_is_a_render_error_naming_it(tmp_path):
    from schema_dsl.cli import main
    text = DS_NEW.replace('postgresql="UPDATE users SET first_name = split_part(name, \' \', 1), "\n'
                          '                                   "last_name = nullif(substr(name, length(split_part(name, '
                          '\' \', 1)) + 2), \'\')"', 'python=None') % "first_name"
    text = text.replace('sql="UPDATE users SET first_name = name"', 'sql="UPDATE users SET first_name = substr(name, 1, 2)"')
    result = make_runner().invoke(main, ["render", "--dialect", "postgresql", "--schema", _decl(tmp_path, "u", text),
                                         "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "data step 'split_name': cannot be translated (function substr())" in result.stderr


def test_transfer_carries_the_history_over_so_postgresql_does_not_run_a_step_again(tmp_path, pg_url):
    import sqlite3
    from schema_dsl.cli import main
    runner = make_runner()
    old, new = _decl(tmp_path, "dsold", DS_OLD), _decl(tmp_path, "dsnew", DS_NEW % "first_name")
    db = str(tmp_path / "app.db")
    assert runner.invoke(main, ["apply", "--db", db, "--schema", old, "--no-validate"]).exit_code == 0
    conn = sqlite3.connect(db)
    conn.executescript("INSERT INTO users VALUES (1, 'Ada Lovelace'); INSERT INTO links VALUES (1, 1, '5');")
    conn.close()
    done = runner.invoke(main, ["apply", "--db", db, "--schema", new, "--yes", "--no-validate"])
    assert done.exit_code == 0, done.output + done.stderr
    moved = runner.invoke(main, ["transfer", "--from", db, "--to", pg_url, "--schema", new])
    assert moved.exit_code == 0, moved.output + moved.stderr
    assert "history: 1 record of the file carried over" in moved.output
    assert _rows(pg_url, "SELECT kind, data_steps_run FROM _schemagen_history") == [
        ("apply", '["split_name", "nick", "sqlite_cleanup"]')]
    again = runner.invoke(main, ["apply", "--db", pg_url, "--schema", new, "--json"])
    assert again.exit_code == 0 and '"applied": false' in again.output, again.output + again.stderr


def test_plan_sql_carries_the_data_steps_and_the_record_and_runs_in_psql_terms(tmp_path, pg_url):
    import psycopg
    from schema_dsl.cli import main
    runner = make_runner()
    _ds_old(runner, tmp_path, pg_url)
    new = _decl(tmp_path, "dsnew", DS_NEW % "first_name")
    out = runner.invoke(main, ["plan", "--db", pg_url, "--schema", new, "--sql"])
    assert out.exit_code == 0, out.output + out.stderr
    assert "split_part(name, ' ', 1)" in out.stdout and 'INSERT INTO "_schemagen_history"' in out.stdout
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(out.stdout)
    assert _rows(pg_url, "SELECT first_name FROM users ORDER BY id") == [("Ada",), ("Plato",)]
    again = runner.invoke(main, ["apply", "--db", pg_url, "--schema", new, "--json"])
    assert again.exit_code == 0 and '"applied": false' in again.output
    python = _decl(tmp_path, "py", DS_NEW.replace('DataStep("nick", sql="UPDATE users SET nick = lower(%s) WHERE id > 1")',
                                                  'DataStep("later", python=lambda connection: None)'))
    refused = runner.invoke(main, ["plan", "--db", pg_url, "--schema", python, "--sql"])
    assert refused.exit_code == 2 and "run data step 'later' (python)" in refused.stderr


def test_database_initialize_runs_the_data_steps_on_postgresql(tmp_path, pg_url):
    import asyncio
    from schema_dsl.database import Database
    runner = make_runner()
    _ds_old(runner, tmp_path, pg_url)
    db = Database(pg_url, schema=_decl(tmp_path, "dsnew", DS_NEW % "first_name"))
    result = asyncio.run(db.initialize(allow_data_loss=True))
    assert result.applied
    assert _rows(pg_url, "SELECT first_name, nick FROM users ORDER BY id") == [("Ada", None), ("Plato", "plato")]
    assert _rows(pg_url, "SELECT data_steps_run FROM _schemagen_history") == [('["split_name", "nick"]',)]


def test_values_postgresql_cannot_convert_are_refused_before_writing_naming_the_rows(tmp_path, pg_url):
    from schema_dsl.cli import main
    runner = make_runner()
    _old_with_rows(runner, tmp_path, pg_url)
    for name, extra in (("plain", ""), ("cast", ", using=\"CAST(rating AS INTEGER)\"")):
        new = _decl(tmp_path, name, NEW % extra)
        result = runner.invoke(main, ["apply", "--db", pg_url, "--schema", new, "--allow-data-loss", "--yes"])
        assert result.exit_code == 2, result.output
        assert "table 'links', column 'rating': 1 value PostgreSQL cannot convert to bigint" in result.stderr
        assert "(rows (id) 2)" in result.stderr
    assert _rows(pg_url, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'links'::regclass "
                         "AND attname = 'rating'") == [("text",)]


def test_history_command_reads_and_records_on_postgresql(tmp_path, pg_url):
    import json
    from schema_dsl.cli import main
    runner = make_runner()
    _ds_old(runner, tmp_path, pg_url)
    empty = runner.invoke(main, ["history", "--db", pg_url])
    assert empty.exit_code == 0 and "no history" in empty.output
    new = _decl(tmp_path, "dsnew", DS_NEW % "first_name")
    unknown = runner.invoke(main, ["history", "--db", pg_url, "--record", "nope", "--schema", new])
    assert unknown.exit_code == 2 and "'nope'" in unknown.stderr
    marked = runner.invoke(main, ["history", "--db", pg_url, "--record", "nick", "--schema", new])
    assert marked.exit_code == 0 and "recorded as done without running: nick" in marked.output
    assert runner.invoke(main, ["apply", "--db", pg_url, "--schema", new, "--allow-data-loss", "--yes"]).exit_code == 0
    assert _rows(pg_url, "SELECT nick FROM users ORDER BY id") == [(None,), (None,)]  # the recorded step did not run
    listed = json.loads(runner.invoke(main, ["history", "--db", pg_url, "--json"]).stdout)
    assert [(r["kind"], r["data_steps_run"], r["data_steps_recorded"]) for r in listed] == [
        ("record", [], ["nick"]), ("apply", ["split_name"], ["sqlite_cleanup"])]


MOVE_OLD = """
from schema_dsl.model import Column, PrimaryKey, Schema, Table
SCHEMA = Schema("app", tables=[
    Table("users", [Column("id", "INTEGER"), Column("name", "TEXT"), Column("archived", "INTEGER")], PrimaryKey(["id"])),
    Table("old_users", [Column("id", "INTEGER"), Column("name", "TEXT")], PrimaryKey(["id"]))])
"""

MOVE_NEW = """
from schema_dsl.model import Column, DataStep, PrimaryKey, Schema, Table
SCHEMA = Schema("app", tables=[
    Table("users", [Column("id", "INTEGER"), Column("name", "TEXT"), Column("archived", "INTEGER")], PrimaryKey(["id"])),
    Table("old_users", [Column("id", "INTEGER"), Column("name", "TEXT")], PrimaryKey(["id"]))],
    data_steps=[DataStep("move_archived", sql="INSERT INTO old_users (id, name) SELECT id, upper(name) FROM users "
                                              "WHERE archived = 1; DELETE FROM users WHERE archived = 1")])
"""


def test_an_insert_select_data_step_moves_rows_alike_on_sqlite_and_postgresql(tmp_path, pg_url):
    import sqlite3
    from schema_dsl.cli import main
    runner = make_runner()
    db = str(tmp_path / "app.db")
    for target in (db, pg_url):
        assert runner.invoke(main, ["apply", "--db", target, "--schema", _decl(tmp_path, "mo", MOVE_OLD)]).exit_code == 0
    fill = "INSERT INTO users (id, name, archived) VALUES (1, 'ada', 0), (2, 'bob', 1), (3, 'cy', 1)"
    import psycopg
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(fill)
    with sqlite3.connect(db) as conn:
        conn.execute(fill)
    new = _decl(tmp_path, "mn", MOVE_NEW)
    for target in (db, pg_url):
        done = runner.invoke(main, ["apply", "--db", target, "--schema", new, "--yes"])
        assert done.exit_code == 0, done.output + done.stderr
    conn = sqlite3.connect(db)
    lite = [conn.execute("SELECT id, name FROM %s ORDER BY id" % t).fetchall() for t in ("old_users", "users")]
    conn.close()
    assert lite == [[(2, "BOB"), (3, "CY")], [(1, "ada")]]
    assert [_rows(pg_url, "SELECT id, name FROM %s ORDER BY id" % t) for t in ("old_users", "users")] == lite
COMMITS = """
from schema_dsl.model import Column, DataStep, PrimaryKey, Schema, Table
SCHEMA = Schema("app", tables=[Table("links", [Column("id", "INTEGER"), Column("rating", "TEXT"), Column("w", "TEXT")],
                                     PrimaryKey(["id"]))],
                data_steps=[DataStep("s", sql="UPDATE links SET w = 'x'", postgresql=%r)])
"""


def test_a_data_step_that_ends_the_transaction_is_refused_before_it_runs(tmp_path, pg_url):
    # before: its COMMIT committed the added column and the first UPDATE; the next UPDATE ran outside any
    # transaction and set every rating NULL, and apply said "rolled back, nothing changed", exit 2
    from schema_dsl.cli import main
    runner = make_runner()
    _old_with_rows(runner, tmp_path, pg_url)
    before = _rows(pg_url, "SELECT * FROM links ORDER BY id")
    for text in ("UPDATE links SET w = 'x'; COMMIT; UPDATE links SET rating = NULL",
                 "UPDATE links SET w = 'x';\nend;\nUPDATE links SET rating = NULL"):
        result = runner.invoke(main, ["apply", "--db", pg_url, "--schema", _decl(tmp_path, "c", COMMITS % text), "-y"])
        assert result.exit_code == 2, result.output + result.stderr
        assert "data step 's'" in result.stderr and "transaction" in result.stderr
        assert _rows(pg_url, "SELECT * FROM links ORDER BY id") == before
    ok = "DO $$ BEGIN UPDATE links SET w = 'x'; END $$"  # a block's BEGIN ... END is no transaction control
    result = runner.invoke(main, ["apply", "--db", pg_url, "--schema", _decl(tmp_path, "ok", COMMITS % ok), "-y"])
    assert result.exit_code == 0, result.output + result.stderr
    assert _rows(pg_url, "SELECT w FROM links ORDER BY id") == [("x",)] * 4


def test_history_record_on_postgresql_takes_a_name_in_any_case_and_refuses_a_blank_one(tmp_path, pg_url):
    # before: ' nick' was recorded (a name no step can have, exit 0), and 'NICK' recorded did not stop step 'nick'
    # from running: the history compared names exactly, though the declaration treats them case-insensitively
    from schema_dsl.cli import main
    runner = make_runner()
    _ds_old(runner, tmp_path, pg_url)
    blank = runner.invoke(main, ["history", "--db", pg_url, "--record", " nick"])
    assert blank.exit_code == 2 and "--record" in blank.stderr, blank.output
    assert _rows(pg_url, "SELECT to_regclass('_schemagen_history') IS NULL") == [(True,)]
    new = _decl(tmp_path, "dsnew", DS_NEW % "first_name")
    marked = runner.invoke(main, ["history", "--db", pg_url, "--record", "NICK", "--schema", new])
    assert marked.exit_code == 0, marked.output
    assert runner.invoke(main, ["apply", "--db", pg_url, "--schema", new, "--allow-data-loss", "--yes"]).exit_code == 0
    assert _rows(pg_url, "SELECT nick FROM users ORDER BY id") == [(None,), (None,)]  # 'nick' counted as done


SLOW_BASE = """
from schema_dsl.model import Column, PrimaryKey, Schema, Table
SCHEMA = Schema("app", tables=[Table("users", [Column("id", "INTEGER"), Column("n", "INTEGER")], PrimaryKey(["id"]))],
                history=True)
"""

SLOW_STEP = """
from schema_dsl.model import Column, DataStep, PrimaryKey, Schema, Table
SCHEMA = Schema("app", tables=[Table("users", [Column("id", "INTEGER"), Column("n", "INTEGER")], PrimaryKey(["id"]))],
                data_steps=[DataStep("count_up", sql="UPDATE users SET n = n + 1",
                                     postgresql="UPDATE users SET n = n + 1 + 0 * (SELECT 1 FROM pg_sleep(1.5))")])
"""


def test_a_postgresql_plan_sql_script_never_runs_a_data_step_the_history_records(tmp_path, pg_url):
    # before: a step that changes no structure left the script's fingerprint guard satisfied, so running the script
    # a second time ran the step again (n = 2, two records of 'count_up')
    import psycopg
    from schema_dsl.cli import main
    runner = make_runner()
    assert runner.invoke(main, ["apply", "--db", pg_url, "--schema", _decl(tmp_path, "base", SLOW_BASE)]).exit_code == 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (id, n) VALUES (1, 0)")
    out = runner.invoke(main, ["plan", "--db", pg_url, "--schema", _decl(tmp_path, "step", SLOW_STEP), "--sql"])
    assert out.exit_code == 0, out.output
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(out.stdout)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as exc:
            conn.execute(out.stdout)
    assert "count_up" in str(exc.value) and "already recorded" in str(exc.value), exc.value
    assert _rows(pg_url, "SELECT n FROM users") == [(1,)]
    assert _rows(pg_url, "SELECT count(*) FROM _schemagen_history WHERE data_steps_run LIKE '%count_up%'") == [(1,)]


def test_a_python_step_that_prints_does_not_corrupt_json_on_postgresql(tmp_path, pg_url):
    import json
    from schema_dsl.cli import main
    runner = make_runner()
    _ds_old(runner, tmp_path, pg_url)
    chatty = _decl(tmp_path, "chatty", DS_NEW.replace(
        'DataStep("nick", sql="UPDATE users SET nick = lower(%s) WHERE id > 1")',
        'DataStep("later", python=lambda connection: print("hello from the step"))'))
    done = runner.invoke(main, ["apply", "--db", pg_url, "--schema", chatty, "--json", "--allow-data-loss", "--yes"])
    assert done.exit_code == 0, done.output
    json.loads(done.stdout)  # before: "hello from the step" came first on stdout
    assert "hello from the step" in done.stderr


def test_a_postgresql_data_step_cannot_rewrite_schemagens_own_history(tmp_path, pg_url):
    # before: the step's DELETE erased the record that count_up had run; the apply said "migrated"
    from schema_dsl.cli import main
    runner = make_runner()
    assert runner.invoke(main, ["apply", "--db", pg_url, "--schema", _decl(tmp_path, "base", SLOW_BASE)]).exit_code == 0
    import psycopg
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (id, n) VALUES (1, 0)")
    step = _decl(tmp_path, "step", SLOW_STEP.replace("pg_sleep(1.5)", "pg_sleep(0)"))
    assert runner.invoke(main, ["apply", "--db", pg_url, "--schema", step]).exit_code == 0
    tidy = _decl(tmp_path, "tidy", SLOW_STEP.replace("pg_sleep(1.5)", "pg_sleep(0)").replace(
        ")])\n", '), DataStep("tidy", sql="DELETE FROM t", postgresql="DELETE FROM _schemagen_history")])\n'))
    refused = runner.invoke(main, ["apply", "--db", pg_url, "--schema", tidy])
    assert refused.exit_code == 2 and "tidy" in refused.stderr and "_schemagen_history" in refused.stderr, refused.output
    assert _rows(pg_url, "SELECT count(*) FROM _schemagen_history WHERE data_steps_run LIKE '%count_up%'") == [(1,)]


def test_a_postgresql_python_step_whose_body_never_runs_is_refused_not_recorded(tmp_path, pg_url):
    # before: an async def step returned a coroutine without running; apply recorded it as run
    from schema_dsl.cli import main
    runner = make_runner()
    assert runner.invoke(main, ["apply", "--db", pg_url, "--schema", _decl(tmp_path, "base", SLOW_BASE)]).exit_code == 0
    unrun = _decl(tmp_path, "unrun", SLOW_BASE.replace("history=True", 'data_steps=[DataStep("count_up", python=bump)]')
                  .replace("from schema_dsl.model import", "async def bump(conn):\n    conn.execute('UPDATE users SET n = 1')\n"
                           "from schema_dsl.model import DataStep,"))
    refused = runner.invoke(main, ["apply", "--db", pg_url, "--schema", unrun])
    assert refused.exit_code == 2 and "count_up" in refused.stderr and "coroutine" in refused.stderr, refused.output
    assert _rows(pg_url, "SELECT count(*) FROM _schemagen_history WHERE data_steps_run LIKE '%count_up%'") == [(0,)]


def test_transfer_refuses_a_history_that_is_not_schemagens(tmp_path, pg_url):
    # before: the file's history lacked the column "backup"; SQLite read the double-quoted name as the string
    # 'backup', and transfer carried records whose backup was 'backup', exit 0
    import sqlite3
    from schema_dsl.cli import main
    runner = make_runner()
    new = _decl(tmp_path, "dsnew", DS_NEW % "first_name")
    db = str(tmp_path / "app.db")
    assert runner.invoke(main, ["apply", "--db", db, "--schema", new, "--no-validate"]).exit_code == 0
    conn = sqlite3.connect(db)
    conn.executescript("ALTER TABLE _schemagen_history DROP COLUMN backup;")
    conn.close()
    moved = runner.invoke(main, ["transfer", "--from", db, "--to", pg_url, "--schema", new])
    assert moved.exit_code == 2 and "_schemagen_history" in moved.stderr and "backup" in moved.stderr, moved.output
    assert _rows(pg_url, "SELECT to_regclass('users') IS NULL") == [(True,)]  # rolled back: nothing there


def test_a_table_named_like_the_history_that_is_not_schemagens_does_not_break_validate_or_apply(tmp_path, pg_url):
    # before: every check failed with 'column "declaration" does not exist': validate exited 2 checking nothing, and
    # an apply of an up-to-date declaration without any history was "rolled back"
    from schema_dsl.cli import main
    runner = make_runner()
    base = _decl(tmp_path, "base", SLOW_BASE.replace("history=True", "history=False"))
    assert runner.invoke(main, ["apply", "--db", pg_url, "--schema", base]).exit_code == 0
    import psycopg
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE _schemagen_history (x int)")
    checked = runner.invoke(main, ["validate", "--db", pg_url, "--schema", base])
    assert checked.exit_code == 0 and "is not schemagen's record" in checked.stdout, checked.output
    assert runner.invoke(main, ["apply", "--db", pg_url, "--schema", base]).exit_code == 0


@pytest.mark.parametrize("online", [False, True])
def test_concurrent_applies_on_postgresql_run_a_data_step_once(tmp_path, pg_url, online):
    # before: each apply planned in its own READ COMMITTED transaction before any lock, so each saw the step pending;
    # the UPDATEs waited for each other's row locks and then all ran: three applies at once gave n = 3 and three
    # records of 'count_up'. Now each apply waits for schemagen's advisory lock, then finds it up to date (or,
    # online, is refused after lock_timeout, nothing changed)
    import subprocess
    import sys
    from schema_dsl.cli import main
    runner = make_runner()
    assert runner.invoke(main, ["apply", "--db", pg_url, "--schema", _decl(tmp_path, "base", SLOW_BASE)]).exit_code == 0
    import psycopg
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (id, n) VALUES (1, 0), (2, 0)")
    step = _decl(tmp_path, "step", SLOW_STEP)
    command = [sys.executable, "-m", "schema_dsl", "apply", "--db", pg_url, "--schema", step, "--yes"]
    runs = [subprocess.Popen(command + ["--online"] * online, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(3)]
    results = [(r.wait(timeout=120), r.stdout.read(), r.stderr.read()) for r in runs]
    assert _rows(pg_url, "SELECT n FROM users ORDER BY id") == [(1,), (1,)], results
    # the step's record, written with it once (online: its own record, kind 'online data step')
    assert _rows(pg_url, "SELECT count(*) FROM _schemagen_history WHERE data_steps_run LIKE '%%count_up%%'%s" % (
        " AND kind = 'online data step'" if online else "")) == [(1,)]
    if not online:
        assert sorted(code for code, _, _ in results) == [0, 0, 0], results  # the others wait, then up to date
    else:
        assert 0 in [code for code, _, _ in results], results
        for code, _, err in results:
            assert code == 0 or (code == 2 and "another schemagen apply is running on this database" in err), results