"""apply --online on PostgreSQL for the changes that carry data (issue 19 on top of issue 18): a type conversion
(using=) through a new column kept in step by a trigger, backfilled in batches, then swapped in a short step; and
data steps, each in its own transaction, run exactly once and recorded in _schemagen_history. Also: a data step
may fill a table the same apply creates (plain and online)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from pg_cluster import pg_cluster, pg_url  # noqa: F401 (fixtures)
from schema_dsl.compile.postgresql import compile_declaration

TESTS = os.path.dirname(os.path.abspath(__file__))


def _load(text):
    scope = {}
    exec(text, scope)
    return scope["SCHEMA"]


def _connect(url):
    import psycopg
    return psycopg.connect(url, autocommit=True)


def _rows(url, sql, args=None):
    with _connect(url) as conn:
        return conn.execute(sql, args).fetchall()


def _apply(url, schema, online):
    from schema_dsl.pg import migration
    from schema_dsl.pg import online as pgonline
    if online:
        return pgonline.apply_online(url, schema, compile_declaration(schema), allow_data_loss=True)
    return migration.apply(url, schema, compile_declaration(schema), allow_data_loss=True)


# --- a data step filling a table the same apply creates ----------------------------------------------

NEW_TABLE_V1 = """
from schema_dsl.model import Column, PrimaryKey, Schema, Table
SCHEMA = Schema("app", tables=[Table("a", [Column("id", "INTEGER"), Column("name", "TEXT")], PrimaryKey(["id"]))])
"""

NEW_TABLE_V2 = """
from schema_dsl.model import Column, DataStep, Index, PrimaryKey, Schema, Table, fk
SCHEMA = Schema("app", tables=[
    Table("a", [Column("id", "INTEGER"), Column("name", "TEXT")], PrimaryKey(["id"])),
    Table("b", [Column("id", "INTEGER"), Column("a_id", "INTEGER", not_null=True), Column("label", "TEXT")],
          PrimaryKey(["id"]), foreign_keys=[fk("a_id", "a", "id")]),
], indexes=[Index("idx_b_a", "b", ["a_id"])],
   data_steps=[DataStep("copy_a", sql="INSERT INTO b (id, a_id, label) SELECT id, id, upper(name) FROM a")])
"""


@pytest.mark.parametrize("online", [False, True], ids=["plain", "online"])
def test_a_data_step_fills_a_table_the_same_apply_creates(pg_url, online):
    """Before: the data step ran before the plan created 'b' (expand_and_run added only the new columns of
    existing tables): 'relation "b" does not exist', exit 2, nothing changed."""
    v1, v2 = _load(NEW_TABLE_V1), _load(NEW_TABLE_V2)
    _apply(pg_url, v1, False)
    with _connect(pg_url) as conn:
        conn.execute("INSERT INTO a SELECT g, 'n' || g FROM generate_series(1, 50) g")
    result = _apply(pg_url, v2, online)
    assert result.applied and result.report["ok"], result.report
    assert _rows(pg_url, "SELECT count(*), min(label), max(a_id) FROM b") == [(50, "N1", 50)]
    assert _rows(pg_url, "SELECT data_steps_run FROM _schemagen_history WHERE kind = 'apply'") == [('["copy_a"]',)]
    assert _rows(pg_url, "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_b_a'") == [(1,)]
    again = _apply(pg_url, v2, online)
    assert not again.applied
    assert _rows(pg_url, "SELECT count(*) FROM b") == [(50,)]


# --- a type conversion online ----------------------------------------------------------------------------

CONV_V1 = """
from schema_dsl.model import Column, Index, PrimaryKey, Schema, Table
SCHEMA = Schema("app", tables=[
    Table("links", [Column("id", "INTEGER"), Column("rating", "TEXT", not_null=True, default="'0'"),
                    Column("note", "TEXT")], PrimaryKey(["id"])),
], indexes=[Index("idx_links_rating", "links", ["rating"]), Index("idx_links_note", "links", ["note"])])
"""

# rating TEXT -> INTEGER (NOT NULL, its default and its index kept), converted by a declared using=
CONV_V2 = """
from schema_dsl.model import Column, Index, PrimaryKey, Schema, Table
SCHEMA = Schema("app", tables=[
    Table("links", [Column("id", "INTEGER"),
                    Column("rating", "INTEGER", not_null=True, default="0",
                           using="CAST(rating AS INTEGER)", using_postgresql="trim(rating)::bigint"),
                    Column("note", "TEXT")], PrimaryKey(["id"])),
], indexes=[Index("idx_links_rating", "links", ["rating"]), Index("idx_links_note", "links", ["note"])])
"""


def _conv_v1(url, rows=3000):
    _apply(url, _load(CONV_V1), False)
    with _connect(url) as conn:
        conn.execute("INSERT INTO links SELECT g, ' ' || (g %% 97) || ' ', 'n' || g FROM generate_series(1, %d) g"
                     % rows)


def _shape(url):
    with _connect(url) as conn:
        cols = conn.execute("SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
                            "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a LEFT JOIN pg_attrdef d "
                            "ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = 'links'::regclass "
                            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1").fetchall()
        idx = conn.execute("SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
                           "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'links'::regclass "
                           "ORDER BY 1").fetchall()
        cons = conn.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                            "WHERE conrelid = 'links'::regclass ORDER BY 1").fetchall()
        own = conn.execute("SELECT relname FROM pg_class WHERE relname LIKE '\\_schemagen\\_%' UNION ALL "
                           "SELECT proname FROM pg_proc WHERE proname LIKE '\\_schemagen\\_%' UNION ALL "
                           "SELECT tgname FROM pg_trigger WHERE tgname LIKE '\\_schemagen\\_%'").fetchall()
    own = [r for r in own if not r[0].startswith("_schemagen_history")]  # schemagen's history: an online apply keeps one
    return cols, idx, cons, own


def _plain_shape(pg_cluster, setup, schema):
    import psycopg
    name = "plainconv_%d" % (int(time.time() * 1000) % 10000000)
    with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "%s"' % name)
    try:
        url = pg_cluster.url(name)
        setup(url)
        assert _apply(url, schema, False).report["ok"]
        return _shape(url), _rows(url, "SELECT id, rating FROM links ORDER BY id")
    finally:
        with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def test_plan_online_converts_through_a_new_column_and_says_how(pg_url):
    from schema_dsl.pg import online
    _conv_v1(pg_url)
    p = online.plan_online(pg_url, _load(CONV_V2))
    assert not p.refused, p.refused
    kinds = [s.kind for s in p.steps]
    # last, schemagen's history (an online apply keeps one though the declaration has none): created, then written
    assert kinds == ["StartConversion", "ConvertBatches", "ConvertIndex", "SwapConversion", "ValidateCheck",
                     "SetNotNull", "DropOldColumn", "RecordHistory", "RecordHistory"], kinds
    assert [s.mode for s in p.steps] == ["short", "convert", "concurrent", "swap", "validate", "short", "short",
                                         "short", "short"]
    start = p.steps[0].statements[0]
    assert 'ADD COLUMN "_schemagen_new_rating" bigint' in start and "CREATE TRIGGER" in start
    assert 'CREATE INDEX CONCURRENTLY "_schemagen_new_idx_links_rating" ON public.links USING btree ' \
           '("_schemagen_new_rating")' in p.steps[2].statements[0]
    assert "ALTER INDEX \"_schemagen_new_idx_links_rating\" RENAME TO \"idx_links_rating\";" in p.steps[3].statements
    assert "ACCESS EXCLUSIVE on 'links' for a moment" in p.steps[3].lock
    assert "row locks on one batch" in p.steps[1].lock


def test_an_online_conversion_keeps_every_write_and_ends_as_a_plain_apply(pg_cluster, pg_url):
    """A writer inserts and updates rows (text ratings) all through the online apply; every write lands converted,
    and the result (columns, NOT NULL, default, indexes, constraints) is the plain apply's, with no _schemagen_
    object left. Before: --online refused the conversion (exit 2)."""
    from schema_dsl.pg import online
    _conv_v1(pg_url)
    stop, errors, written = threading.Event(), [], {}

    def writer():
        conn = _connect(pg_url)
        n = 100000
        while not stop.is_set():
            try:
                # literals, as text or as a number: the old code's write works before and after the swap
                conn.execute("INSERT INTO links (id, rating, note) VALUES (%d, ' %d', 'w')" % (n, n % 7))
                written[n] = n % 7
                conn.execute("UPDATE links SET rating = '55' WHERE id = %s", (n % 3000 + 1,))
                written[n % 3000 + 1] = 55
            except Exception as exc:  # noqa: BLE001 - the test reports it
                errors.append(exc)
            n += 1
            time.sleep(0.002)
        conn.close()
    t = threading.Thread(target=writer)
    t.start()
    try:
        result = online.apply_online(pg_url, _load(CONV_V2), compile_declaration(_load(CONV_V2)))
    finally:
        stop.set()
        t.join(10)
    assert not errors, errors[:3]
    assert result.applied and result.report["ok"], result.report
    assert len(written) > 20
    got = dict(_rows(pg_url, "SELECT id, rating FROM links"))
    assert all(got[k] == v for k, v in written.items())
    assert got[3000] in (3000 % 97, 55)
    shape = _shape(pg_url)
    assert shape[3] == []  # nothing of schemagen's left
    assert ("rating", "bigint", True) in [c[:3] for c in shape[0]]
    plain_shape, _ = _plain_shape(pg_cluster, _conv_v1, _load(CONV_V2))
    assert shape == plain_shape
    assert online.plan_online(pg_url, _load(CONV_V2)).up_to_date


def test_values_the_conversion_fails_on_are_refused_online_before_anything_is_written(runner, tmp_path, pg_url):
    from schema_dsl.cli import main
    _conv_v1(pg_url, rows=20)
    with _connect(pg_url) as conn:
        conn.execute("UPDATE links SET rating = 'n/a' WHERE id IN (4, 9)")
    before = _shape(pg_url)
    path = tmp_path / "v2.py"
    path.write_text(CONV_V2, encoding="utf-8")
    result = runner.invoke(main, ["apply", "--db", pg_url, "--schema", "%s:SCHEMA" % path, "--online"])
    assert result.exit_code == 2, result.output + result.stderr
    assert "2 values PostgreSQL cannot convert to bigint" in result.stderr and "(rows (id) 4, 9)" in result.stderr
    assert _shape(pg_url) == before


def test_a_write_the_conversion_fails_on_during_the_online_apply_stops_it_before_the_swap(pg_url):
    """The application writes 'n/a' after the plan (the trigger converts it to NULL and logs the row, the write
    succeeds): the swap refuses naming the row, exit 3, the old column still serves; once the row is fixed, apply
    again finishes."""
    from schema_dsl.errors import ChangedThenFailed
    from schema_dsl.pg import online
    _conv_v1(pg_url, rows=50)
    v2 = _load(CONV_V2)

    def progress(number, total, step):
        if step.kind == "SwapConversion":
            with _connect(pg_url) as conn:
                conn.execute("INSERT INTO links (id, rating) VALUES (777, 'n/a')")
    with pytest.raises(ChangedThenFailed) as stopped:
        online.apply_online(pg_url, v2, compile_declaration(v2), progress=progress)
    assert "rows (id) 777" in str(stopped.value) and "cannot convert" in str(stopped.value)
    assert _rows(pg_url, "SELECT rating FROM links WHERE id = 777") == [("n/a",)]  # the write landed, old column
    with _connect(pg_url) as conn:
        conn.execute("UPDATE links SET rating = '7' WHERE id = 777")
    result = online.apply_online(pg_url, v2, compile_declaration(v2))
    assert result.report["ok"], result.report
    assert _rows(pg_url, "SELECT rating FROM links WHERE id = 777") == [(7,)]
    assert _shape(pg_url)[3] == []


KILL_CONV = """
import os, signal, sys
sys.path.insert(0, %(tests)r)
from test_pg_online_steps import CONV_V2, _load
from schema_dsl.compile.postgresql import compile_declaration
from schema_dsl.pg import online

def progress(number, total, step):
    if number == %(at)d:
        os.kill(os.getpid(), signal.SIGKILL)

online.apply_online(%(url)r, _load(CONV_V2), compile_declaration(_load(CONV_V2)), progress=progress)
"""


@pytest.mark.parametrize("then", ["plain", "online"])
def test_a_conversion_killed_at_each_step_is_finished_by_the_next_apply(pg_cluster, pg_url, then):
    """SIGKILL before every step of the online conversion in turn (so after the trigger, the backfill, the index,
    the swap, the NOT NULL...), each time followed by the next apply (plain or online): every one ends as the plain
    apply does, no value lost, nothing of schemagen's left."""
    import psycopg

    from schema_dsl.pg import online
    v2 = _load(CONV_V2)
    expected = _plain_shape(pg_cluster, _conv_v1, v2)
    total = len(online.plan_online(pg_url, v2).steps) if _conv_v1(pg_url) is None else 0
    assert total == 9  # the conversion's 7, then the history's table and record
    for at in range(2, total + 1):
        name = "kc_%d_%d" % (at, os.getpid())
        with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "%s"' % name)
        url = pg_cluster.url(name)
        try:
            _conv_v1(url)
            out = subprocess.run([sys.executable, "-c", KILL_CONV % {"tests": TESTS, "at": at, "url": url}],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == -9, out.stderr
            if at in (3, 5):  # after the trigger (before the swap), after the swap: validate names the leftover
                from schema_dsl.pg import apply as pg_apply
                notes = pg_apply.validate(url, compile_declaration(v2))["notes"]
                assert any("interrupted online type conversion" in n for n in notes), (at, notes)
            result = _apply(url, v2, then == "online")
            assert result.report["ok"], (at, result.report)
            assert (_shape(url), _rows(url, "SELECT id, rating FROM links ORDER BY id")) == expected, at
        finally:
            with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
                conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


# --- data steps online --------------------------------------------------------------------------------------

DATA_V1 = """
from schema_dsl.model import Column, PrimaryKey, Schema, Table
SCHEMA = Schema("app", tables=[Table("counters", [Column("id", "INTEGER"), Column("n", "INTEGER")],
                                     PrimaryKey(["id"]))])
"""

# a step that is wrong to run twice (n + 1), a python= step filling a new NOT NULL column
DATA_V2 = """
from schema_dsl.model import Column, DataStep, PrimaryKey, Schema, Table

def tag(connection):
    connection.execute("UPDATE counters SET tag = 'p' || id")

SCHEMA = Schema("app", tables=[Table("counters", [Column("id", "INTEGER"), Column("n", "INTEGER"),
                                                  Column("tag", "TEXT", not_null=True)], PrimaryKey(["id"]))],
                data_steps=[DataStep("bump", sql="UPDATE counters SET n = n + 1"), DataStep("tag", python=tag),
                            DataStep("lite", sql="UPDATE counters SET n = 0", sqlite_only=True)])
"""


def _data_v1(url):
    _apply(url, _load(DATA_V1), False)
    with _connect(url) as conn:
        conn.execute("INSERT INTO counters SELECT g, 10 FROM generate_series(1, 200) g")


def test_data_steps_run_online_each_in_its_own_transaction_recorded_in_it(runner, tmp_path, pg_url):
    """plan --online shows each data step as its own step with the time it held its locks when planned; apply
    --online runs both (the python= one too: before, it was a step with no statements and never ran, and the NOT
    NULL after it failed), each with its own history record, then the apply's record."""
    from schema_dsl.cli import main
    _data_v1(pg_url)
    path = tmp_path / "v2.py"
    path.write_text(DATA_V2, encoding="utf-8")
    shown = runner.invoke(main, ["plan", "--db", pg_url, "--schema", "%s:SCHEMA" % path, "--online"])
    assert shown.exit_code == 0, shown.output + shown.stderr
    assert "run data step 'bump', in its own transaction, recorded in it" in shown.output
    assert "a row lock on each row it changes, until it commits:" in shown.output and "ms when planned" in shown.output
    lines = shown.output.splitlines()
    assert [n for n, line in enumerate(lines) if "create table '_schemagen_history'" in line][0] < \
        [n for n, line in enumerate(lines) if "run data step 'bump'" in line][0]
    done = runner.invoke(main, ["apply", "--db", pg_url, "--schema", "%s:SCHEMA" % path, "--online"])
    assert done.exit_code == 0, done.output + done.stderr
    assert _rows(pg_url, "SELECT count(*), min(n), max(n), min(tag) FROM counters") == [(200, 11, 11, "p1")]
    assert _rows(pg_url, "SELECT kind, data_steps_run, data_steps_recorded FROM _schemagen_history ORDER BY id") == [
        ("online data step", '["bump"]', "[]"), ("online data step", '["tag"]', "[]"),
        ("online data step", "[]", '["lite"]'), ("apply", '["bump", "tag"]', '["lite"]')]
    assert _rows(pg_url, "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'counters'::regclass "
                         "AND attname = 'tag'") == [(True,)]


KILL_DATA = """
import os, signal, sys
sys.path.insert(0, %(tests)r)
from test_pg_online_steps import DATA_V2, _load
from schema_dsl.compile.postgresql import compile_declaration
from schema_dsl.pg import online

def progress(number, total, step):
    if number == %(at)d:
        os.kill(os.getpid(), signal.SIGKILL)

online.apply_online(%(url)r, _load(DATA_V2), compile_declaration(_load(DATA_V2)), progress=progress)
"""


@pytest.mark.parametrize("then", ["plain", "online"])
def test_a_data_step_runs_exactly_once_however_the_online_apply_is_killed(pg_cluster, then):
    """SIGKILL before each online step in turn (before the data step, between the two, after both), then the next
    apply: 'bump' (n + 1) has run exactly once every time, and the result is the same."""
    import psycopg

    from schema_dsl.pg import online
    base = pg_cluster.url("postgres")
    probe = "kd_probe_%d" % os.getpid()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "%s"' % probe)
    try:
        _data_v1(pg_cluster.url(probe))
        steps = online.plan_online(pg_cluster.url(probe), _load(DATA_V2)).steps
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % probe)
    kinds = [s.kind for s in steps]
    assert kinds.count("RunDataStep") == 3
    for at in range(2, len(steps) + 1):
        name = "kd_%d_%d" % (at, os.getpid())
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "%s"' % name)
        url = pg_cluster.url(name)
        try:
            _data_v1(url)
            out = subprocess.run([sys.executable, "-c", KILL_DATA % {"tests": TESTS, "at": at, "url": url}],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == -9, out.stderr
            result = _apply(url, _load(DATA_V2), then == "online")
            assert result.report["ok"], (at, result.report)
            assert _rows(url, "SELECT count(*), min(n), max(n), count(tag) FROM counters") == [(200, 11, 11, 200)], at
            runs = [json.loads(r[0]) for r in _rows(url, "SELECT data_steps_run FROM _schemagen_history")]
            assert sorted({n for r in runs for n in r}) == ["bump", "tag"]  # lite: recorded, never run
        finally:
            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def test_an_online_apply_adds_the_columns_its_data_steps_fill_before_planning(pg_url, monkeypatch):
    """Planning runs the data steps (to plan what follows them) in a transaction that is rolled back, after adding
    the columns they fill: that ADD COLUMN held ACCESS EXCLUSIVE on the table while the steps ran and the rest was
    planned, and the application's reads waited. apply --online commits the new columns first, each one short
    step: a read of the table while the rest is planned is not blocked."""
    from schema_dsl.pg import online
    from schema_dsl.pg import plan as pgplan
    _data_v1(pg_url)
    probes, real = [], pgplan.plan_rest

    def planning(*args, **kwargs):
        import psycopg
        with _connect(pg_url) as conn:
            conn.execute("SET lock_timeout = '300ms'")
            try:
                probes.append(conn.execute("SELECT count(*) FROM counters").fetchone()[0])
            except psycopg.errors.LockNotAvailable:
                probes.append("blocked")
        return real(*args, **kwargs)
    monkeypatch.setattr(pgplan, "plan_rest", planning)
    v2 = _load(DATA_V2)
    result = online.apply_online(pg_url, v2, compile_declaration(v2))
    assert result.applied and result.report["ok"], result.report
    assert probes and all(p == 200 for p in probes), probes
    assert _rows(pg_url, "SELECT count(*), min(n), max(n) FROM counters") == [(200, 11, 11)]


def test_plain_apply_converts_a_column_whose_old_default_cannot_be_cast(pg_url):
    """rating TEXT DEFAULT '0' -> INTEGER DEFAULT 0: before, ALTER COLUMN TYPE failed 'default for column "rating"
    cannot be cast automatically to type bigint', exit 2; the old default now goes first, the declared one after."""
    _conv_v1(pg_url, rows=10)
    result = _apply(pg_url, _load(CONV_V2), False)
    assert result.applied and result.report["ok"], result.report
    assert _rows(pg_url, "SELECT rating FROM links WHERE id = 5") == [(5,)]
    with _connect(pg_url) as conn:
        conn.execute("INSERT INTO links (id) VALUES (99)")
    assert _rows(pg_url, "SELECT rating FROM links WHERE id = 99") == [(0,)]


def test_plan_online_tells_a_person_how_the_conversion_goes(runner, tmp_path, pg_url):
    from schema_dsl.cli import main
    _conv_v1(pg_url, rows=10)
    path = tmp_path / "v2.py"
    path.write_text(CONV_V2, encoding="utf-8")
    shown = runner.invoke(main, ["plan", "--db", pg_url, "--schema", "%s:SCHEMA" % path, "--online"])
    assert shown.exit_code == 0, shown.output + shown.stderr
    text = shown.output
    assert "start converting 'links'.'rating' to bigint: new column '_schemagen_new_rating', kept in step by a " \
           "trigger" in text
    assert "swap 'links'.'rating': the converted column takes its name (one short step" in text
    assert "drop the old column 'links'.'_schemagen_old_rating' (the conversion's last step)" in text
    assert text.index("swap 'links'") < text.index("drop the old column")
