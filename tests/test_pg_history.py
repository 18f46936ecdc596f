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
