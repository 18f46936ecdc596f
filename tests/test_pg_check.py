"""explain, lint --db and validate on PostgreSQL, and Database("postgresql://..."), on a real server."""
from __future__ import annotations

import asyncio
import json

import pytest

from pg_cluster import pg_cluster, pg_url  # noqa: F401 (fixtures)
from schema_dsl.errors import QueryRefused
from schema_dsl.model import Column, Index, PrimaryKey, Schema, Table, fk


def _cli(runner, *args):
    from schema_dsl.cli import main
    return runner.invoke(main, list(args), catch_exceptions=False)


def _connect(url):
    import psycopg
    return psycopg.connect(url, autocommit=True)


def _applied(runner, url):
    result = _cli(runner, "apply", "--db", url)
    assert result.exit_code == 0, result.output + result.stderr
    return url


def _by_index(output):
    return {r["index"]: r for r in json.loads(output)}


def _orphan_under_not_valid(url):
    """A task whose parent does not exist, kept under tasks' parent foreign key re-added NOT VALID; its name."""
    with _connect(url) as conn:
        name = conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'tasks'::regclass AND contype = 'f' "
                            "AND confrelid = 'tasks'::regclass").fetchone()[0]
        definition = conn.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s",
                                  (name,)).fetchone()[0]
        conn.execute('ALTER TABLE tasks DROP CONSTRAINT "%s"' % name)
        conn.execute("INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at, parent_task_id) "
                     "VALUES ('t1', 'p', 'pending', '{}', now(), now(), NULL), "
                     "('t2', 'p', 'pending', '{}', now(), now(), 'ghost')")
        conn.execute('ALTER TABLE tasks ADD CONSTRAINT "%s" %s NOT VALID' % (name, definition))
    return name


# --- explain -------------------------------------------------------------------------------

def test_explain_on_empty_tables_runs_with_seqscan_off_and_says_which_queries_use_their_index(runner, pg_url):
    _applied(runner, pg_url)
    text = _cli(runner, "explain", "--db", pg_url)
    assert text.exit_code == 0, text.output + text.stderr
    assert "statistics: none for agents, audit" in text.output and "enable_seqscan=off" in text.output
    assert "idx_tasks_parent: uses the index (index scan) (enable_seqscan=off)" in text.output
    results = _by_index(_cli(runner, "explain", "--db", pg_url, "--json").output)
    assert len(results) == 33
    assert all(r["seqscan_off"] for r in results.values())
    parent = results["idx_tasks_parent"]
    assert parent["uses_index"] and parent["query"] == "select * from tasks where parent_task_id = $1"
    # a translated SQLite idiom: datetime('now', '-1 day')
    assert results["idx_tasks_submitted_at"]["uses_index"]
    assert "interval '1 day'" in results["idx_tasks_submitted_at"]["query"]
    # the index behind the PRIMARY KEY is identical to idx_sessions_pk: either one counts
    assert results["idx_sessions_pk"]["identical"] == ["sessions_pkey"] and results["idx_sessions_pk"]["uses_index"]
    # the UNIQUE constraint's index serves this query even better: reported as not used, naming the one chosen
    kv = results["idx_memory_namespace_key_version"]
    assert not kv["uses_index"] and "memory_entries_namespace_key_version_key" in kv["reason"]
    assert _cli(runner, "explain", "--db", pg_url, "--strict").exit_code == 1
    # idx_memory_namespace_key_version is a required plan check (plan_check="required"): an error, not a warning
    from schema_dsl.abathur import SCHEMA
    from schema_dsl.check.pgcheck import strict_severities
    severities = strict_severities(SCHEMA, {"results": list(results.values())})
    assert severities.count("error") == 1 and "warning" in severities
    assert _cli(runner, "explain", "--db", pg_url, "--strict", "error").exit_code == 1


def test_explain_after_analyze_uses_the_statistics_and_names_a_missing_index(runner, pg_url):
    _applied(runner, pg_url)
    with _connect(pg_url) as conn:
        conn.execute("INSERT INTO tasks (id, prompt, status, input_data, submitted_at, last_updated_at) "
                     "SELECT 't' || n, 'p', 'pending', '{}', now(), now() FROM generate_series(1, 2000) n")
        conn.execute("ANALYZE tasks")
        conn.execute("DROP INDEX idx_agents_state")
    results = _by_index(_cli(runner, "explain", "--db", pg_url, "--json").output)
    assert not results["idx_tasks_parent"]["seqscan_off"] and results["idx_agents_session"]["seqscan_off"]
    assert results["idx_tasks_parent"]["uses_index"]
    assert "analyzed" in results["idx_tasks_parent"]["statistics"]
    state = results["idx_agents_state"]
    assert not state["uses_index"] and "not in this database" in state["reason"]


def _traces(url):
    with _connect(url) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = conn.execute(
            "SELECT c.relname, c.reltuples, c.relpages, s.n_tup_ins, s.n_tup_del, s.n_live_tup, s.n_dead_tup, "
            "s.analyze_count, s.n_mod_since_analyze FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid "
            "ORDER BY 1").fetchall()
        counts = {t: conn.execute('SELECT count(*) FROM "%s"' % t).fetchone()[0] for t, *_ in rows}
        stats = conn.execute("SELECT count(*) FROM pg_stats WHERE schemaname = 'public'").fetchone()[0]
        temp = conn.execute("SELECT count(*) FROM pg_class WHERE relpersistence = 't'").fetchone()[0]
    return rows, counts, stats, temp


def _settled(url):
    """_traces once the counters of sessions that ended have reached the statistics (flushed as they exit)."""
    import time
    last = _traces(url)
    for _ in range(20):
        time.sleep(0.25)
        now = _traces(url)
        if now == last:
            return now
        last = now
    return last


def test_sample_rows_explain_on_analyzed_copies_and_leave_nothing_behind(runner, pg_url):
    _applied(runner, pg_url)
    with _connect(pg_url) as conn:
        conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s1', 'app', 'alice')")
        conn.execute("ANALYZE sessions")
    before = _settled(pg_url)
    assert before[1]["sessions"] == 1 and len(before[0]) == 9
    result = _cli(runner, "explain", "--db", pg_url, "--sample-rows", "300")
    assert result.exit_code == 0, result.output + result.stderr
    assert "300 generated rows per table" in result.output and "tasks +300" in result.output
    assert "enable_seqscan=off" not in result.output
    results = _by_index(_cli(runner, "explain", "--db", pg_url, "--sample-rows", "300", "--json").output)
    assert not any(r["seqscan_off"] for r in results.values())
    assert all(r["statistics"].startswith("analyzed") for r in results.values())
    assert sum(r["uses_index"] for r in results.values()) >= 15
    assert _settled(pg_url) == before


# --- lint --db -------------------------------------------------------------------------------

def test_lint_db_reports_no_statistics_and_index_not_used(runner, pg_url):
    _applied(runner, pg_url)
    findings = json.loads(_cli(runner, "lint", "--db", pg_url, "--json").output)
    rules = {(f["rule"], f["object"]) for f in findings}
    assert ("index-not-used", "idx_memory_namespace_key_version") in rules
    assert ("index-not-used", "idx_tasks_parent") not in rules
    nostats = [f for f in findings if f["rule"] == "no-statistics"]
    assert len(nostats) == 1 and "sessions" in nostats[0]["message"]
    assert any(f["rule"] == "json-valid-nullable" for f in findings)  # the declaration lint as well
    with _connect(pg_url) as conn:
        conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES ('s1', 'app', 'alice')")
        conn.execute("ANALYZE sessions")
    nostats = [f for f in json.loads(_cli(runner, "lint", "--db", pg_url, "--json").output) if f["rule"] == "no-statistics"]
    assert "sessions" not in nostats[0]["message"] and "tasks" in nostats[0]["message"]
    assert _cli(runner, "lint", "--db", pg_url, "--strict").exit_code == 1


# --- validate ---------------------------------------------------------------------------------

def test_validate_reports_rows_that_break_a_not_valid_constraint(runner, pg_url):
    _applied(runner, pg_url)
    name = _orphan_under_not_valid(pg_url)
    result = _cli(runner, "validate", "--db", pg_url, "--json")
    report = json.loads(result.output)
    assert report["not_valid_violations"] == [{"table": "tasks", "constraint": name, "kind": "foreign key",
                                               "parent": "tasks", "rows": 1, "examples": ["t2"]}]
    text = _cli(runner, "validate", "--db", pg_url).output
    assert "constraint tasks.%s (NOT VALID foreign key to tasks): 1 existing row break it, e.g. 't2'" % name in text


# --- Database on PostgreSQL -------------------------------------------------------------------

def _schema():
    parent = Table("parents", columns=[Column("id", "INTEGER"), Column("name", "TEXT", not_null=True)],
                   primary_key=PrimaryKey(["id"]))
    child = Table("children", columns=[Column("id", "INTEGER"), Column("parent_id", "INTEGER")],
                  primary_key=PrimaryKey(["id"]), foreign_keys=[fk("parent_id", "parents", "id")])
    return Schema(name="c", tables=[parent, child],
                  indexes=[Index("idx_children_parent", "children", ["parent_id"],
                                 serves=["SELECT * FROM children WHERE parent_id = ?"])])


def test_database_on_postgresql(pg_url):
    from schema_dsl import Database
    from schema_dsl.pg.database import PgDatabase

    async def scenario():
        db = Database(pg_url, schema=_schema(), statement_timeout="30s")
        assert isinstance(db, PgDatabase) and "Database(" in repr(db)
        first = await db.initialize()
        assert first.applied
        assert not (await db.initialize()).applied
        conn = await db.connect()
        settings = {}
        for name in ("statement_timeout", "lock_timeout", "TimeZone", "idle_in_transaction_session_timeout"):
            settings[name] = (await (await conn.execute("SHOW %s" % name)).fetchone())[0]
        assert settings == {"statement_timeout": "30s", "lock_timeout": "5s", "TimeZone": "UTC",
                            "idle_in_transaction_session_timeout": "0"}
        await conn.execute("INSERT INTO parents (id, name) VALUES (%s, %s)", (1, "one"))
        await conn.execute("INSERT INTO children (parent_id) VALUES (%s)", (1,))
        await conn.commit()
        async with db.connect() as other:
            row = await (await other.execute("SELECT p.name, count(*) FROM parents p JOIN children c ON c.parent_id = p.id "
                                             "WHERE p.id = %s GROUP BY p.name", (1,))).fetchone()
            assert row == ("one", 1)
        assert other.closed
        with pytest.raises(QueryRefused):
            await db.explain_query_plan("UPDATE parents SET name = 'x'")
        with pytest.raises(QueryRefused):
            await db.explain_query_plan("SELECT 1; DELETE FROM parents")
        plan = await db.explain_query_plan("SELECT * FROM children WHERE parent_id = %s", (1,))
        assert plan and "Scan" in plan[0]
        assert await db.validate_foreign_keys() == []
        assert await db.integrity_check() == ["ok"] and await db.integrity_check(full=True) == ["ok"]
        await conn.execute("ALTER TABLE children DROP CONSTRAINT children_parent_id_fkey")
        await conn.execute("INSERT INTO children (id, parent_id) VALUES (%s, %s)", (7, 99))
        await conn.execute("ALTER TABLE children ADD CONSTRAINT children_parent_id_fkey FOREIGN KEY (parent_id) "
                           "REFERENCES parents (id) NOT VALID")
        await conn.commit()
        assert await db.validate_foreign_keys() == [("children", 7, "parents", "children_parent_id_fkey")]
        problems = await db.integrity_check()
        assert len(problems) == 1 and "children.children_parent_id_fkey" in problems[0] and "1 existing row" in problems[0]
        await db.close()
        assert conn.closed
        await db.close()  # idempotent

    asyncio.run(scenario())


def test_database_on_postgresql_as_async_context_manager_with_the_shipped_declaration(pg_url):
    from schema_dsl import Database

    async def scenario():
        async with Database(pg_url) as db:
            assert db.last_apply.applied and db.last_apply.report["counts"]["tables"] == 9
            async with db.connect() as conn:
                await conn.execute("INSERT INTO sessions (id, app_name, user_id) VALUES (%s, %s, %s)", ("s1", "a", "u"))
                await conn.commit()
            conn = await db.connect()
        assert conn.closed
        with _connect(pg_url) as sync:
            assert sync.execute("SELECT user_id FROM sessions").fetchall() == [("u",)]

    asyncio.run(scenario())


def test_a_password_never_appears_in_database_errors(pg_cluster):
    from schema_dsl import Database
    from schema_dsl.errors import SchemagenError
    url = pg_cluster.url("nodb_here").replace("postgresql:///", "postgresql://nobody:hunter2-secret@/")

    async def scenario():
        db = Database(url, schema=_schema())
        assert "hunter2-secret" not in repr(db)
        with pytest.raises(SchemagenError) as info:
            await db.connect()
        assert "hunter2-secret" not in str(info.value) and "***" in str(info.value)

    asyncio.run(scenario())


def test_a_serves_query_may_be_declared_for_postgresql():
    from schema_dsl.compile.postgresql import compile_declaration
    from schema_dsl.errors import DeclarationError
    from schema_dsl.model import evolve
    schema = _schema()
    ix = evolve(schema.indexes[0], serves=["SELECT * FROM children WHERE parent_id = ?",
                                           "SELECT * FROM children WHERE typeof(parent_id) = 'integer'"])
    compiled = compile_declaration(evolve(schema, indexes=[ix]))
    queries = dict(compiled["serves"])["idx_children_parent"]
    assert queries[0]["postgresql"] == "select * from children where parent_id = $1"
    assert queries[1]["postgresql"] is None and "typeof" in queries[1]["untranslated"]
    declared = evolve(ix, serves_postgresql=[None, "SELECT * FROM children WHERE pg_typeof(parent_id) = 'bigint'::regtype;"])
    queries = dict(compile_declaration(evolve(schema, indexes=[declared]))["serves"])["idx_children_parent"]
    assert queries[0]["postgresql"] == "select * from children where parent_id = $1"
    assert queries[1] == {"sqlite": ix.serves[1], "declared": True,
                          "postgresql": "SELECT * FROM children WHERE pg_typeof(parent_id) = 'bigint'::regtype"}
    with pytest.raises(DeclarationError, match="serves_postgresql has 1 queries for 2 serves-queries"):
        compile_declaration(evolve(schema, indexes=[evolve(ix, serves_postgresql=["SELECT 1"])]))
