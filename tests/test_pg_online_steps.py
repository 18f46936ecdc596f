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
    from schema_dsl.pg import migrate
    from schema_dsl.pg import online as pgonline
    if online:
        return pgonline.apply_online(url, schema, compile_declaration(schema), allow_data_loss=True)
    return migrate.apply(url, schema, compile_declaration(schema), allow_data_loss=True)


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
