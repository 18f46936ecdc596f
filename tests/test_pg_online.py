"""Migrations on PostgreSQL that let the application go on (schema_dsl/pg/locks.py, pg/online.py): plain apply
locks children before parents and never deadlocks with an application's foreign-key check; apply --online runs
each step in its own short transaction under a short lock_timeout, retrying, and its result validates as a plain
apply's does; a killed online apply is finished by the next apply, plain or online."""
from __future__ import annotations

import json
import threading
import time

import pytest

from pg_cluster import pg_cluster, pg_url  # noqa: F401 (fixtures)
from schema_dsl.compile.postgresql import compile_declaration

V1_TEXT = """
from schema_dsl.model import Column, PrimaryKey, Schema, Table, fk

SCHEMA = Schema(name="app", tables=[
    Table("sessions", columns=[Column("id", "INTEGER"), Column("name", "TEXT")], primary_key=PrimaryKey(["id"])),
    Table("tasks", columns=[Column("id", "INTEGER"), Column("session_id", "INTEGER"), Column("state", "TEXT")],
          primary_key=PrimaryKey(["id"]), foreign_keys=[fk("session_id", "sessions", "id")]),
])
"""

# both tables change, the parent first: it gets a column and a CHECK, the child a NOT NULL, a CHECK and an index
V2_TEXT = """
from schema_dsl.model import Check, Column, Index, PrimaryKey, Schema, Table, fk

SCHEMA = Schema(name="app", tables=[
    Table("sessions", columns=[Column("id", "INTEGER"), Column("name", "TEXT"), Column("note", "TEXT")],
          primary_key=PrimaryKey(["id"]), checks=[Check("length(name) > 0")]),
    Table("tasks", columns=[Column("id", "INTEGER"), Column("session_id", "INTEGER"),
                            Column("state", "TEXT", not_null=True)],
          primary_key=PrimaryKey(["id"]), foreign_keys=[fk("session_id", "sessions", "id")],
          checks=[Check("state IN ('open', 'done')")]),
], indexes=[Index("idx_tasks_state", "tasks", ["state"])])
"""

# a type conversion: online it goes through a new column (tests/test_pg_online_steps.py), which a view that uses
# the column cannot move to, so with one (made by the test) it is refused (ALTER COLUMN TYPE rewrites the table)
V_TYPE_TEXT = V1_TEXT.replace('Column("state", "TEXT")', 'Column("state", "INTEGER", using_postgresql="0")')


def _load(text):
    scope = {}
    exec(text, scope)
    return scope["SCHEMA"]


V1, V2 = _load(V1_TEXT), _load(V2_TEXT)


def _connect(url):
    import psycopg
    return psycopg.connect(url, autocommit=True)


def _v1_with_rows(url, rows=200):
    from schema_dsl.pg import migration
    migration.apply(url, V1, compile_declaration(V1))
    with _connect(url) as conn:
        conn.execute("INSERT INTO sessions SELECT g, 's' || g FROM generate_series(1, 10) g")
        conn.execute("INSERT INTO tasks SELECT g, 1 + g %% 10, 'open' FROM generate_series(1, %d) g" % rows)


def test_plain_apply_does_not_deadlock_with_an_application_insert_into_the_child(pg_url):
    """The application holds ROW EXCLUSIVE on tasks (an INSERT with no parent to check), the migration starts, then
    the application's next INSERT checks its parent in sessions. The old order (ALTER sessions first, under ACCESS
    EXCLUSIVE, then tasks) deadlocks there and PostgreSQL aborts one side; children first, each attempt under a
    lock_timeout below deadlock_timeout, both finish."""
    from schema_dsl.pg import migration
    _v1_with_rows(pg_url)
    app = _connect(pg_url)
    errors, done = [], {}
    app.execute("BEGIN")
    app.execute("INSERT INTO tasks (id, session_id, state) VALUES (100001, NULL, 'open')")

    def migrate():
        try:
            done["result"] = migration.apply(pg_url, V2, compile_declaration(V2), lock_timeout="20s")
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
    worker = threading.Thread(target=migrate)
    worker.start()
    time.sleep(1.0)  # the migration has planned and waits for a lock now
    try:
        app.execute("INSERT INTO tasks (id, session_id, state) VALUES (100002, 3, 'open')")  # checks sessions
        app.execute("COMMIT")
    except Exception as exc:  # noqa: BLE001 - a deadlock here is the failure the test is about
        errors.append(exc)
        app.execute("ROLLBACK")
    worker.join(60)
    app.close()
    assert not worker.is_alive()
    assert not errors, errors
    assert done["result"].applied
    with _connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM tasks WHERE id IN (100001, 100002)").fetchone()[0] == 2


def test_locks_are_taken_children_first():
    from schema_dsl.pg.locks import children_first
    fks = {"tasks": {"sessions"}, "events": {"tasks", "sessions"}, "sessions": {"users"}}
    assert children_first(["users", "sessions", "tasks", "events", "other"], fks) == \
        ["events", "other", "tasks", "sessions", "users"]
    assert children_first(["a", "b"], {"a": {"b"}, "b": {"a"}}) == ["a", "b"]  # a cycle: by name


def _shape(url):
    """Columns (type, NOT NULL), indexes (definition, validity) and constraints (definition, validated)."""
    with _connect(url) as conn:
        cols = conn.execute("SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
                            "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 "
                            "AND NOT a.attisdropped ORDER BY 1, 2").fetchall()
        idx = conn.execute("SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
                           "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = 'public'::regnamespace "
                           "ORDER BY 1").fetchall()
        cons = conn.execute("SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
                            "WHERE connamespace = 'public'::regnamespace ORDER BY 1").fetchall()
    # schemagen's history (an online apply keeps one) is not the user's schema: compared apart
    mine = lambda rows: [r for r in rows if not r[0].startswith("_schemagen_history")]  # noqa: E731
    return mine(cols), mine(idx), mine(cons)


def _plain_result(pg_cluster):
    """The shape a plain apply of V2 gives on V1 with rows, in a database of its own."""
    import psycopg
    name = "plain_%d_%d" % (id(pg_cluster) % 1000, int(time.time() * 1000) % 100000)
    with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "%s"' % name)
    url = pg_cluster.url(name)
    try:
        from schema_dsl.pg import migration
        _v1_with_rows(url)
        assert migration.apply(url, V2, compile_declaration(V2)).report["ok"]
        return _shape(url)
    finally:
        with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def test_online_apply_ends_where_a_plain_apply_ends(pg_cluster, pg_url):
    from schema_dsl.pg import online
    _v1_with_rows(pg_url)
    p = online.plan_online(pg_url, V2)
    modes = [s.mode for s in p.steps]
    assert "concurrent" in modes and "validate" in modes and not p.refused
    # the NOT NULL goes through a CHECK: added NOT VALID, validated, then SET NOT NULL in a short step
    kinds = [s.kind for s in p.steps]
    assert kinds.index("AddNotNullCheck") < kinds.index("ValidateCheck") < kinds.index("SetNotNull")
    result = online.apply_online(pg_url, V2, compile_declaration(V2))
    assert result.applied and result.report["ok"], result.report
    assert result.online["transactions"] == len(p.steps) > 5
    assert _shape(pg_url) == _plain_result(pg_cluster)
    assert online.plan_online(pg_url, V2).up_to_date


def test_an_online_step_retries_while_the_application_holds_its_lock_and_others_go_on(pg_url):
    """An application transaction holds ROW EXCLUSIVE on tasks for 1.5 s (well past one attempt): the online
    step's ACCESS EXCLUSIVE is not granted, the attempt gives up after ATTEMPT_MS and retries; meanwhile another
    application connection reads and writes tasks every 10 ms and never waits long; once the lock is released the
    apply finishes."""
    from schema_dsl.pg import online
    _v1_with_rows(pg_url)
    holder = _connect(pg_url)
    holder.execute("BEGIN")
    holder.execute("UPDATE tasks SET state = 'open' WHERE id = 1")
    waits, stop, errors, done = [], threading.Event(), [], {}

    def app():
        conn = _connect(pg_url)
        n = 200000
        while not stop.is_set():
            t = time.perf_counter()
            try:
                conn.execute("INSERT INTO tasks (id, session_id, state) VALUES (%s, 2, 'done')", (n,))
                conn.execute("SELECT count(*) FROM tasks WHERE id > 199000").fetchone()
            except Exception as exc:  # noqa: BLE001 - the test reports it
                errors.append(exc)
            waits.append(time.perf_counter() - t)
            n += 1
            time.sleep(0.01)
        conn.close()

    def migration():
        done["result"] = online.apply_online(pg_url, V2, compile_declaration(V2), lock_timeout="30s")
    reader = threading.Thread(target=app)
    reader.start()
    worker = threading.Thread(target=migration)
    worker.start()
    time.sleep(1.5)
    assert worker.is_alive()  # still retrying its first short step
    holder.execute("COMMIT")
    holder.close()
    worker.join(120)
    time.sleep(0.2)
    stop.set()
    reader.join(10)
    assert not errors, errors
    assert done["result"].applied and done["result"].report["ok"]
    assert done["result"].online["retries"] >= 3
    assert max(waits) < 0.5, max(waits)  # one attempt (0.1 s) and a loaded machine's slack, not 1.5 s
    with _connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM tasks WHERE id >= 200000").fetchone()[0] == len(waits)


KILLER = """
import os, signal, sys
sys.path.insert(0, %(tests)r)
from test_pg_online import V2
from schema_dsl.compile.postgresql import compile_declaration
from schema_dsl.pg import online

def progress(number, total, step):
    if number == %(at)d:
        os.kill(os.getpid(), signal.SIGKILL)

online.apply_online(%(url)r, V2, compile_declaration(V2), progress=progress)
"""


@pytest.mark.parametrize("then", ["plain", "online"])
def test_a_killed_online_apply_is_finished_by_the_next_apply(pg_cluster, pg_url, then):
    import os
    import subprocess
    import sys

    from schema_dsl.pg import migration, online
    _v1_with_rows(pg_url)
    steps = online.plan_online(pg_url, V2).steps
    tests = os.path.dirname(os.path.abspath(__file__))
    # killed before the step that SETs NOT NULL: its CHECK is there, added and validated
    at = 1 + next(n for n, s in enumerate(steps) if s.kind == "SetNotNull")
    out = subprocess.run([sys.executable, "-c", KILLER % {"tests": tests, "at": at, "url": pg_url}],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == -9, out.stderr
    with _connect(pg_url) as conn:  # part of it is committed, the helper CHECK among it
        helpers = "SELECT count(*) FROM pg_constraint WHERE conname LIKE '\\_schemagen\\_nn\\_%'"
        assert conn.execute(helpers).fetchone()[0] == 1
    from schema_dsl.pg import apply as pg_apply
    report = pg_apply.validate(pg_url, compile_declaration(V2))  # validate names the leftover
    assert not report["ok"] and any("interrupted `apply --online`" in n for n in report["notes"]), report["notes"]
    if then == "plain":
        result = migration.apply(pg_url, V2, compile_declaration(V2))
    else:
        result = online.apply_online(pg_url, V2, compile_declaration(V2))
    assert result.applied and result.report["ok"], result.report
    assert _shape(pg_url) == _plain_result(pg_cluster)
    assert online.plan_online(pg_url, V2).up_to_date


def _cli(runner, *args):
    from schema_dsl.cli import main
    return runner.invoke(main, list(args), catch_exceptions=False)


def _decl(tmp_path, name, text):
    path = tmp_path / ("%s.py" % name)
    path.write_text(text, encoding="utf-8")
    return "%s:SCHEMA" % path


def test_plan_online_names_each_steps_lock_and_apply_online_refuses_a_rewrite(runner, tmp_path, pg_url):
    _v1_with_rows(pg_url)
    shown = _cli(runner, "plan", "--db", pg_url, "--schema", _decl(tmp_path, "v2", V2_TEXT), "--online")
    assert shown.exit_code == 0, shown.output + shown.stderr
    text = shown.output
    assert "--online" in text.splitlines()[0]
    assert "lock: SHARE UPDATE EXCLUSIVE on 'tasks' while it scans the table: reads and writes go on" in text
    assert "lock: ACCESS EXCLUSIVE on 'tasks' for a moment (catalog only); each attempt waits at most 50 ms" in text
    assert "CONCURRENTLY" in text and "idx_tasks_state" in text
    as_json = json.loads(_cli(runner, "plan", "--db", pg_url, "--schema", _decl(tmp_path, "v2", V2_TEXT),
                              "--online", "--json").output)
    assert {s["mode"] for s in as_json["online_steps"]} == {"short", "validate", "concurrent"}
    with _connect(pg_url) as conn:
        conn.execute("CREATE VIEW open_tasks AS SELECT id FROM tasks WHERE state = 'open'")
    before = _shape(pg_url)
    refused = _cli(runner, "apply", "--db", pg_url, "--schema", _decl(tmp_path, "vt", V_TYPE_TEXT), "--online")
    assert refused.exit_code == 2
    assert "--online cannot make change the type of 'tasks'.'state'" in refused.stderr
    assert "a column that view open_tasks uses" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert _shape(pg_url) == before


def test_an_online_apply_stopped_after_a_commit_exits_3_and_apply_again_finishes(runner, tmp_path, pg_url):
    """The first step (sessions' new column) commits; tasks stays locked by the application past the budget: exit
    3, the message says how many steps committed and to run apply again; once released, apply again finishes."""
    _v1_with_rows(pg_url)
    v2 = _decl(tmp_path, "v2", V2_TEXT)
    holder = _connect(pg_url)
    holder.execute("BEGIN")
    holder.execute("UPDATE tasks SET state = 'open' WHERE id = 1")
    try:
        stopped = _cli(runner, "apply", "--db", pg_url, "--schema", v2, "--online", "--lock-timeout", "400ms")
    finally:
        holder.execute("COMMIT")
        holder.close()
    assert stopped.exit_code == 3, stopped.output + stopped.stderr
    assert "online steps committed, then" in stopped.stderr and "again to finish" in stopped.stderr
    with _connect(pg_url) as conn:  # the committed part: sessions.note is there
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'sessions' "
                            "AND column_name = 'note'").fetchone()[0] == 1
    again = _cli(runner, "apply", "--db", pg_url, "--schema", v2, "--online")
    assert again.exit_code == 0, again.output + again.stderr
    assert "--online" in again.output and ": OK" in again.output


def test_an_online_apply_killed_before_any_of_its_steps_is_finished_by_the_next_online_apply(pg_cluster, pg_url):
    """SIGKILL before each step in turn (so after every possible number of committed steps), on one database:
    each time the next online apply is killed one step further, and the last one finishes; the result is a plain
    apply's."""
    import os
    import subprocess
    import sys

    from schema_dsl.pg import online
    _v1_with_rows(pg_url)
    total = len(online.plan_online(pg_url, V2).steps)
    tests = os.path.dirname(os.path.abspath(__file__))
    killed = 0
    for at in range(2, total + 1):
        left = len(online.plan_online(pg_url, V2).steps)
        if left < 2:
            break
        out = subprocess.run([sys.executable, "-c", KILLER % {"tests": tests, "at": 2, "url": pg_url}],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == -9, out.stderr
        killed += 1
        now = online.plan_online(pg_url, V2).steps
        assert len(now) < left, [s.title for s in now]  # one more step committed each time
    assert killed >= 5
    result = online.apply_online(pg_url, V2, compile_declaration(V2))
    assert result.report["ok"], result.report
    assert _shape(pg_url) == _plain_result(pg_cluster)
    assert online.plan_online(pg_url, V2).up_to_date


def test_an_invalid_index_left_by_a_failed_concurrent_build_is_rebuilt_online(pg_url):
    """A CREATE UNIQUE INDEX CONCURRENTLY that failed (duplicates) leaves idx_tasks_state INVALID under the declared
    name: the online plan drops it CONCURRENTLY and builds it again, CONCURRENTLY, and the result is valid."""
    import psycopg

    from schema_dsl.pg import online
    _v1_with_rows(pg_url)
    with _connect(pg_url) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute('CREATE UNIQUE INDEX CONCURRENTLY "idx_tasks_state" ON "tasks" ("state")')
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_tasks_state'::regclass"
                            ).fetchone()[0] is False
    p = online.plan_online(pg_url, V2)
    rebuild = [s for s in p.steps if s.kind == "RebuildInvalidIndex"]
    assert [s.mode for s in rebuild] == ["concurrent", "concurrent"]
    assert rebuild[0].statements[0].startswith("DROP INDEX CONCURRENTLY")
    result = online.apply_online(pg_url, V2, compile_declaration(V2))
    assert result.report["ok"], result.report
    with _connect(pg_url) as conn:
        assert conn.execute("SELECT indisvalid, indisunique FROM pg_index "
                            "WHERE indexrelid = 'idx_tasks_state'::regclass").fetchone() == (True, False)


def test_milestone_2_online_validates_as_the_plain_apply_does(runner, tmp_path, pg_cluster):
    """examples/abathur_m2.py on Abathur rows moved to PostgreSQL: apply --online (a rename, index removals and
    recreations, a foreign key replaced) ends validated and up to date, like the plain apply, every row kept."""
    import sys
    from pathlib import Path

    import psycopg
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import legacy

    root = Path(__file__).resolve().parents[1]
    m2 = str(root / "examples" / "abathur_m2.py")
    src = tmp_path / "old.db"
    legacy.create(str(src), "old", tasks=60)
    assert _cli(runner, "apply", "--db", str(src), "--no-backup").exit_code == 0
    names = ("om1", "oplain", "oonline")
    with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
        for db in names:
            conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)
        conn.execute('CREATE DATABASE "om1"')
    try:
        moved = _cli(runner, "transfer", "--from", str(src), "--to", pg_cluster.url("om1"))
        assert moved.exit_code == 0, moved.output + moved.stderr
        with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "oplain" TEMPLATE "om1"')
            conn.execute('CREATE DATABASE "oonline" TEMPLATE "om1"')
        shown = _cli(runner, "plan", "--db", pg_cluster.url("oonline"), "--schema", m2, "--online")
        assert shown.exit_code == 0 and "one short step" in shown.output, shown.output + shown.stderr
        assert _cli(runner, "apply", "--db", pg_cluster.url("oplain"), "--schema", m2).exit_code == 0
        done = _cli(runner, "apply", "--db", pg_cluster.url("oonline"), "--schema", m2, "--online")
        assert done.exit_code == 0, done.output + done.stderr
        assert "--online" in done.output
        for db in ("oplain", "oonline"):
            assert _cli(runner, "validate", "--db", pg_cluster.url(db), "--schema", m2).exit_code == 0
        assert _cli(runner, "plan", "--db", pg_cluster.url("oonline"), "--schema", m2,
                    "--online").output.startswith("up to date")
        assert _shape(pg_cluster.url("oonline")) == _shape(pg_cluster.url("oplain"))
        counts = []
        for db in ("oplain", "oonline"):
            with _connect(pg_cluster.url(db)) as conn:
                counts.append(conn.execute("SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM sessions), "
                                           "(SELECT count(*) FROM memory_entries)").fetchone())
        assert counts[0] == counts[1] and counts[0][0] > 0
    finally:
        with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
            for db in names:
                conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % db)


def test_with_a_history_the_online_apply_records_itself_last(pg_url):
    """A declaration that keeps a history (pg/history.py): the online plan's last step records the apply, after
    every change has committed, and the row is there afterwards."""
    import attrs

    from schema_dsl.pg import migration, online
    v1, v2 = attrs.evolve(V1, history=True), attrs.evolve(V2, history=True)
    migration.apply(pg_url, v1, compile_declaration(v1))
    with _connect(pg_url) as conn:
        conn.execute("INSERT INTO sessions VALUES (1, 'a')")
        conn.execute("INSERT INTO tasks VALUES (1, 1, 'open')")
    p = online.plan_online(pg_url, v2)
    assert p.steps[-1].kind == "RecordHistory" and "history" in p.steps[-1].lock
    assert online.apply_online(pg_url, v2, compile_declaration(v2)).report["ok"]
    with _connect(pg_url) as conn:
        kinds = conn.execute("SELECT kind, steps FROM _schemagen_history ORDER BY id").fetchall()
    assert len(kinds) == 2 and "set column 'tasks'.'state' NOT NULL" in kinds[-1][1]
    assert online.plan_online(pg_url, v2).up_to_date


def test_an_online_apply_keeps_a_history_when_the_declaration_has_none(pg_url):
    """Issue 19: --online creates schemagen's history when the declaration keeps none, and records itself there
    (before: no table, nothing said where the online change stood)."""
    from schema_dsl.pg import migration, online
    assert not V2.history
    migration.apply(pg_url, V1, compile_declaration(V1))
    with _connect(pg_url) as conn:
        conn.execute("INSERT INTO sessions VALUES (1, 'a')")
        conn.execute("INSERT INTO tasks VALUES (1, 1, 'open')")
    assert online.apply_online(pg_url, V2, compile_declaration(V2)).report["ok"]
    with _connect(pg_url) as conn:
        kinds = conn.execute("SELECT kind, steps FROM _schemagen_history ORDER BY id").fetchall()
    assert len(kinds) == 1 and "set column 'tasks'.'state' NOT NULL" in kinds[0][1]
    assert online.plan_online(pg_url, V2).up_to_date


TIMED = """
import sys
sys.path.insert(0, %(tests)r)
from test_pg_online import V2
from test_pg_online_steps import CONV_V2, _load
from schema_dsl.compile.postgresql import compile_declaration
from schema_dsl.pg import online
target = V2 if %(case)r == "v2" else _load(CONV_V2)
print("started", flush=True)
online.apply_online(%(url)r, target, compile_declaration(target),
                    progress=lambda number, total, step: print("step %%d" %% number, flush=True))
print("step end", flush=True)
"""


def _case(case):
    """(set up the old state with rows at url, the declaration to reach)."""
    from test_pg_online_steps import CONV_V2, _conv_v1, _load
    if case == "v2":
        return (lambda url: _v1_with_rows(url, rows=200000)), V2
    return (lambda url: _conv_v1(url, rows=60000)), _load(CONV_V2)


def _gone(url, seconds=20):
    """Wait until the server has ended the killed client's session: it finishes its statement before it notices,
    and until then still holds its locks (an apply started at once may meet it, 'deadlock detected', exit 2)."""
    deadline = time.monotonic() + seconds
    with _connect(url) as conn:
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid()").fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.mark.parametrize("case", ["v2", "conversion"])
def test_sigkill_at_timed_points_of_an_online_apply_then_apply_again_ends_as_a_plain_apply(pg_cluster, case):
    """SIGKILL at points in time spread over a whole online apply (inside a batch, a VALIDATE, a concurrent build,
    not only between steps), each on its own copy, then the next apply, plain and online in turn: each ends where
    the plain apply ends, every row there, nothing of schemagen's left but the history."""
    import os
    import random
    import subprocess
    import sys

    import psycopg

    from schema_dsl.pg import migration, online
    from test_pg_online_steps import _shape as conv_shape
    setup, target = _case(case)
    shape = _shape if case == "v2" else conv_shape
    tests = os.path.dirname(os.path.abspath(__file__))
    base = pg_cluster.base
    names = []

    def fresh(tag):
        name = "tk_%s_%s_%d" % (case[:4], tag, os.getpid())
        names.append(name)
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
            conn.execute('CREATE DATABASE "%s" TEMPLATE "%s"' % (name, names[0]))
        return pg_cluster.url(name)

    try:
        names.append("tk_%s_template_%d" % (case[:4], os.getpid()))
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "%s"' % names[0])
        setup(pg_cluster.url(names[0]))
        plain = fresh("plain")
        assert migration.apply(plain, target, compile_declaration(target), allow_data_loss=True).report["ok"]
        expected = shape(plain)
        rows = "SELECT count(*) FROM %s" % ("tasks" if case == "v2" else "links")
        with _connect(plain) as conn:
            count = conn.execute(rows).fetchone()[0]
        left = []
        def start(url):
            """The online apply in a process of its own, once it has imported everything (its 'started' line)."""
            proc = subprocess.Popen([sys.executable, "-c", TIMED % {"tests": tests, "case": case, "url": url}],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert proc.stdout.readline().strip() == "started"
            return proc, time.perf_counter()

        proc, _ = start(fresh("timing"))  # when each step starts, and how long it takes here
        seen = [(line.strip(), time.perf_counter()) for line in proc.stdout]
        assert proc.wait(300) == 0, proc.stderr.read()
        lasts = [(seen[i][0], seen[i + 1][1] - seen[i][1]) for i in range(len(seen) - 1)]
        rng = random.Random(19)
        # a step (the longer ones more often: weighted by how long they take) and a point inside it
        points = [(step, rng.uniform(0.05, 0.9) * seconds) for step, seconds in
                  rng.choices(lasts, weights=[0.02 + x for _, x in lasts], k=5)]
        for n, (step, delay) in enumerate(points):
            url = fresh("k%d" % n)
            proc, _ = start(url)
            for line in proc.stdout:
                if line.strip() == step:
                    break
            time.sleep(delay)
            proc.kill()
            proc.wait(30)
            _gone(url)
            left.append([s.title for s in online.plan_online(url, target).steps])
            if n % 2:
                result = migration.apply(url, target, compile_declaration(target), allow_data_loss=True)
            else:
                result = online.apply_online(url, target, compile_declaration(target), allow_data_loss=True)
            assert result.report["ok"], (delay, result.report)
            assert shape(url) == expected, delay
            with _connect(url) as conn:
                assert conn.execute(rows).fetchone()[0] == count
        whole_plan = [s.title for s in online.plan_online(pg_cluster.url(names[0]), target).steps]
        assert any(titles and titles != whole_plan for titles in left), left  # killed inside: part of it committed
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            for name in reversed(names):
                conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


V_RENAME_TEXT = V2_TEXT.replace('Column("name", "TEXT"), Column("note", "TEXT")',
                                'Column("title", "TEXT", renamed_from="name"), Column("note", "TEXT")').replace(
    'Check("length(name) > 0")', 'Check("length(title) > 0")')


def test_an_online_apply_commits_its_renames_before_planning_the_rest(pg_url, monkeypatch):
    """Planning runs the renames inside its transaction (the rest is planned against the new names) and rolls it
    back: that transaction held ACCESS EXCLUSIVE on the renamed table while it counted rows for the rest (seconds
    on a big database), and the application's reads of that table waited. Now apply --online commits the rename
    first, as its own short step, and plans the rest after: a read during the planning is not blocked."""
    from schema_dsl.pg import online
    from schema_dsl.pg import plan as pgplan
    _v1_with_rows(pg_url)
    v_rename = _load(V_RENAME_TEXT)
    probes = []
    real = pgplan.plan_rest

    def planning(*args, **kwargs):  # an application's read while the rest is planned
        import psycopg
        with _connect(pg_url) as conn:
            conn.execute("SET lock_timeout = '300ms'")
            try:
                probes.append(conn.execute("SELECT count(*) FROM sessions").fetchone()[0])
            except psycopg.errors.LockNotAvailable:
                probes.append("blocked")
        return real(*args, **kwargs)
    monkeypatch.setattr(pgplan, "plan_rest", planning)
    titles = []
    result = online.apply_online(pg_url, v_rename, compile_declaration(v_rename),
                                 progress=lambda n, total, step: titles.append(step.title))
    assert result.applied and result.report["ok"], result.report
    assert titles[0].startswith("rename column 'sessions'.'name' to 'title'")
    assert probes and all(p == 10 for p in probes), probes
