"""explain and lint on PostgreSQL: does each declared index serve its query? EXPLAIN (FORMAT JSON) says.

Every serves-query runs as PostgreSQL's translation (compile/postgresql.py: `?` -> `$1`, ..., SQLite idioms such
as datetime('now', '-1 day') translated) or as the one declared for PostgreSQL (Index.serves_postgresql). It is
prepared (`PREPARE q AS ...`, parameter types inferred by the server) and its generic plan explained
(`plan_cache_mode = force_generic_plan`, then `EXPLAIN (FORMAT JSON) EXECUTE q(NULL, ...)`): a custom plan would
fold `col = NULL` to "no rows" and use no index at all. PostgreSQL 15 has no EXPLAIN (GENERIC_PLAN).

The plan tree is walked for "Index Name": the query uses its index when the plan names it, or an identical one
(same table, key expressions and order, uniqueness and predicate, as the server prints them), such as the index
behind a PRIMARY KEY.

Plans depend on statistics. A table without any (pg_class.reltuples < 0: never analyzed; or no pg_stats rows:
empty when analyzed) is explained with `SET LOCAL enable_seqscan = off` in a transaction that is rolled back,
and the report says so: with the built-in estimates for an empty table a sequential scan wins every time.

With sample rows (explain_sample), nothing touches the database's own tables: in one transaction that is always
rolled back, the declared tables and indexes are created as temporary tables of the same names (search_path =
pg_temp; they shadow the real ones for this session only), the sample is loaded with COPY, ANALYZE runs on them
and the queries are explained there. Rows, pg_class.reltuples (which ANALYZE updates in place, surviving a
ROLLBACK) and the pg_stat counters of the real tables are never changed, and no lock is taken on them.

Everything returns plain data; check/pgcheck.py turns it into findings and the CLI prints it.
"""
from __future__ import annotations

import itertools
import re

import psycopg

from ..errors import SchemagenError
from . import catalog
from .apply import _one_line, connect
from .url import mask, scrub
from ..sqlite.quote import quote_identifier

_NAMES = itertools.count(1)
_STRING = re.compile(r"'(?:[^']|'')*'")


# --- the catalog: statistics and index definitions ---------------------------------

def table_statistics(conn, namespace):
    """{table: {"reltuples": float, "stats": bool}} for the tables of one schema (pg_stats: readable per column)."""
    rows = conn.execute(
        "SELECT c.relname, c.reltuples, EXISTS (SELECT 1 FROM pg_stats s WHERE s.schemaname = n.nspname "
        "AND s.tablename = c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relnamespace = %s AND c.relkind IN ('r', 'p')", (namespace,)).fetchall()
    return {name: {"reltuples": float(tuples), "stats": bool(stats)} for name, tuples, stats in rows}


def has_statistics(info):
    return info is not None and info["reltuples"] >= 0 and info["stats"]


def index_definitions(conn, namespace):
    """{index: {"table", "unique", "keys": [(key as printed, desc)], "where"}} for every index of one schema,
    those behind PRIMARY KEY and UNIQUE constraints included."""
    rows = conn.execute(
        "SELECT ic.relname, c.relname, i.indisunique, i.indoption::int2[], pg_get_expr(i.indpred, i.indrelid), "
        "ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) k ORDER BY k) "
        "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid "
        "WHERE c.relnamespace = %s", (namespace,)).fetchall()
    return {name: {"table": table, "unique": bool(unique), "where": where,
                   "keys": [(key, bool(option & 1)) for key, option in zip(keys, options)]}
            for name, table, unique, options, where, keys in rows}


def identical_indexes(definitions, name):
    """The other indexes with the same table, keys, order, uniqueness and predicate as `name`."""
    mine = definitions.get(name)
    if mine is None:
        return []
    return sorted(other for other, d in definitions.items() if other != name and d == mine)


# --- plans -----------------------------------------------------------------------------

def plan_nodes(node, depth=0):
    """(depth, node) for every node of a plan tree, depth first."""
    yield depth, node
    for child in node.get("Plans", ()):
        yield from plan_nodes(child, depth + 1)


def indexes_used(plan):
    return [n["Index Name"] for _, n in plan_nodes(plan) if "Index Name" in n]


def plan_lines(plan):
    """The plan as short lines, like EXPLAIN's text form: node, index, relation, condition."""
    out = []
    for depth, n in plan_nodes(plan):
        text = n["Node Type"]
        if n.get("Index Name"):
            text += " using %s" % n["Index Name"]
        if n.get("Relation Name"):
            text += " on %s" % n["Relation Name"]
        for key in ("Index Cond", "Recheck Cond", "Filter", "One-Time Filter", "Sort Key", "Group Key"):
            if key in n:
                value = n[key]
                text += "  %s: %s" % (key, ", ".join(value) if isinstance(value, list) else value)
        out.append("  " * depth + text)
    return out


def describe(plan):
    """What the plan reads: its scans, and a sort when there is one."""
    parts = []
    for _, n in plan_nodes(plan):
        kind = n["Node Type"]
        if kind.endswith("Scan") and n.get("Relation Name") or "Index Name" in n:
            parts.append("%s%s%s" % (kind, " using %s" % n["Index Name"] if n.get("Index Name") else "",
                                     " on %s" % n["Relation Name"] if n.get("Relation Name") else ""))
        elif kind in ("Sort", "Incremental Sort"):
            parts.append("%s by %s" % (kind, ", ".join(n.get("Sort Key", ()))))
    return "; ".join(parts) or "no table is read"


def parameters(query):
    """How many $n parameters a PostgreSQL query takes (the highest n outside string literals)."""
    return max((int(n) for n in re.findall(r"\$(\d+)", _STRING.sub("''", query))), default=0)


def explain_plan(conn, query, seqscan_off=False):
    """The generic plan (the JSON plan tree's root) of one query; parameters are bound as NULL of the inferred type."""
    name = "schemagen_explain_%d" % next(_NAMES)
    n = parameters(query)
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        if seqscan_off:
            conn.execute("SET LOCAL enable_seqscan = off")
        conn.execute("PREPARE %s AS %s" % (name, query))
        try:
            with conn.transaction():
                row = conn.execute("EXPLAIN (FORMAT JSON) EXECUTE %s%s" % (
                    name, "(%s)" % ", ".join(["NULL"] * n) if n else "")).fetchone()
        finally:
            conn.execute("DEALLOCATE %s" % name)  # PREPARE outlives a rollback
    return row[0][0]["Plan"]


# --- the serves-queries ------------------------------------------------------------------

def _one(conn, index, table, queries, definitions, statistics):
    sqlite_query, query = queries.get("sqlite"), queries.get("postgresql")
    info = statistics.get(table)
    seqscan_off = not has_statistics(info)
    result = {"index": index, "table": table, "query": query, "sqlite_query": sqlite_query,
              "declared_for_postgresql": bool(queries.get("declared")), "plan": [], "uses_index": False,
              "used": [], "identical": identical_indexes(definitions, index), "access": None, "instead": None,
              "reason": None, "seqscan_off": seqscan_off,
              "statistics": None if info is None else ("analyzed, %d rows estimated" % info["reltuples"]
                                                       if not seqscan_off else "none")}
    if query is None:
        result["reason"] = ("the serves-query cannot be translated for PostgreSQL (%s): declare it with "
                            "Index(..., serves_postgresql=[...])" % queries.get("untranslated", "unknown"))
        result["instead"] = "not explained"
        return result
    if index not in definitions:
        result["reason"] = "index '%s' is not in this database (`schemagen apply` creates it)" % index
    try:
        plan = explain_plan(conn, query, seqscan_off)
    except psycopg.Error as exc:
        result["instead"] = "the query cannot be prepared"
        result["reason"] = ("the query cannot be prepared on this database (%s); is it at the declaration? "
                            "(`schemagen validate`)" % _one_line(exc.diag.message_primary or str(exc)))
        result["plan"] = ["error: %s" % _one_line(str(exc))]
        return result
    used = indexes_used(plan)
    accepted = [index, *result["identical"]]
    hit = next((n for n in used if n in accepted), None)
    result.update(plan=plan_lines(plan), plan_json=plan, used=used, uses_index=hit is not None)
    if hit is not None:
        node = next(n for _, n in plan_nodes(plan) if n.get("Index Name") == hit)
        result["access"] = node["Node Type"].lower() + ("" if hit == index else " of %s, identical to %s" % (hit, index))
        result["reason"] = None
        return result
    result["instead"] = describe(plan)
    if result["reason"] is None:
        others = [n for n in used if n not in accepted]
        if others:
            result["reason"] = "the planner chose %s instead%s" % (", ".join(others), "" if seqscan_off else (
                " (estimated with the table's statistics)"))
        elif seqscan_off:
            result["reason"] = ("even with enable_seqscan=off the planner reads the table without '%s': the index "
                                "cannot serve this query" % index)
        else:
            result["reason"] = ("with the table's statistics (%d rows estimated) the planner estimates its own plan "
                                "cheaper" % info["reltuples"] if info else "the planner does not use it")
    return result


def explain_queries(conn, compiled, namespace=None):
    """A result (plain dict) for every serves-query of the compiled declaration, in declaration order."""
    ns = catalog.current_namespace(conn) if namespace is None else namespace
    definitions = index_definitions(conn, ns)
    statistics = table_statistics(conn, ns)
    indexes = compiled["structure"]["indexes"]
    out = []
    for index, queries in compiled["serves"]:
        for q in queries:
            out.append(_one(conn, index, indexes[index]["table"], q, definitions, statistics))
    return out, statistics


def _report(database, source, sample_rows, results, statistics, compiled, notes=()):
    declared = set(compiled["structure"]["tables"])
    return {"database": database, "dialect": "postgresql", "source": source, "sample_rows": sample_rows,
            "without_statistics": sorted(t for t in declared if not has_statistics(statistics.get(t))
                                         and t in statistics),
            "statistics": {t: statistics[t] for t in sorted(statistics) if t in declared},
            "results": results, "notes": list(notes)}


def explain_database(url, compiled):
    """The explain report of the database itself (only read: every EXPLAIN runs in a transaction rolled back)."""
    conn = connect(url)
    try:
        conn.prepare_threshold = None  # no prepared statements of psycopg's own beside ours
        results, statistics = explain_queries(conn, compiled)
        return _report(mask(url), "database", None, results, statistics, compiled)
    except psycopg.Error as exc:
        raise SchemagenError("explain %s: %s" % (mask(url), _one_line(scrub(str(exc), url)))) from None
    finally:
        conn.close()


_q = quote_identifier  # the one quoter: a quoted identifier doubles its '"' on both engines


def _value(value, pg_type):
    if pg_type == "boolean" and value is not None:
        return bool(value)
    return value


def explain_sample(url, compiled, sample):
    """The explain report on temporary copies of the declared tables holding `sample` ({table: (columns, rows)}),
    analyzed, in one transaction that is rolled back: the database's own tables are neither read nor changed."""
    conn = connect(url)
    counts = {}
    try:
        conn.prepare_threshold = None
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL search_path = pg_temp")  # CREATE TABLE makes temporary tables; names resolve to them
            for statement in compiled["statements"]:
                if statement["kind"] in ("table", "index"):
                    conn.execute(statement["sql"])
            types = {t: {c: info["type"] for c, info in s["columns"].items()}
                     for t, s in compiled["structure"]["tables"].items()}
            for table, (columns, rows) in sample.items():
                with conn.cursor().copy("COPY pg_temp.%s (%s) FROM STDIN" % (
                        _q(table), ", ".join(_q(c) for c in columns))) as copy:
                    for row in rows:
                        copy.write_row([_value(v, types[table].get(c)) for c, v in zip(columns, row)])
                counts[table] = len(rows)
            for table in compiled["structure"]["tables"]:
                conn.execute("ANALYZE pg_temp.%s" % _q(table))
            results, statistics = explain_queries(conn, compiled, catalog.temp_namespace(conn))
        notes = ["temporary copies of the declared tables and indexes, %s, then ANALYZE, in a transaction rolled "
                 "back: the database's own tables were not touched" % ", ".join(
                     "%s +%d" % (t, n) for t, n in counts.items())]
        return _report(mask(url), "sample", max((len(r) for _, r in sample.values()), default=0), results,
                       statistics, compiled, notes)
    except psycopg.Error as exc:
        raise SchemagenError("explain %s with sample rows: %s" % (mask(url), _one_line(scrub(str(exc), url)))) from None
    finally:
        conn.close()


# --- output ---------------------------------------------------------------------------

def format_text(report):
    results = report["results"]
    used = sum(1 for r in results if r["uses_index"])
    out = ["EXPLAIN (FORMAT JSON) of %d declared serves-queries on %s (PostgreSQL)%s" % (
        len(results), report["database"], " (temporary copies of the tables, %d generated rows per table)" %
        report["sample_rows"] if report["source"] == "sample" else "")]
    missing = report["without_statistics"]
    if missing:
        out.append("statistics: none for %s (never analyzed, or empty when analyzed): their queries were explained "
                   "with enable_seqscan=off, which shows whether the index can serve the query, not whether the "
                   "planner will prefer it once the table has rows; `--sample-rows N` explains with N generated rows "
                   "and ANALYZE" % ", ".join(missing))
    elif report["source"] == "sample":
        out.append("statistics: the temporary copies were analyzed with their generated rows")
    else:
        out.append("statistics: every declared table has been analyzed")
    out += ["note: %s" % n for n in report["notes"]]
    out.append("%d of %d use their index, %d do not" % (used, len(results), len(results) - used))
    for n, r in enumerate(results, start=1):
        out.append("")
        flag = " (enable_seqscan=off)" if r["seqscan_off"] and r["query"] else ""
        if r["uses_index"]:
            out.append("%2d. %s: uses the index (%s)%s" % (n, r["index"], r["access"], flag))
        else:
            out.append("%2d. %s: NOT USED; instead: %s%s" % (n, r["index"], r["instead"], flag))
        out.append("      query: %s" % (r["query"] or r["sqlite_query"]))
        out += ["      plan:  %s" % line for line in r["plan"]]
        if r["reason"]:
            out.append("      why:   %s" % r["reason"])
    return "\n".join(out)
