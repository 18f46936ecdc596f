"""migrate/loss.py: what a plan loses, counted once for both dialects, and the one guard that asks before it."""
from __future__ import annotations

import pytest

from schema_dsl.errors import Declined, UnsafeMigrationError
from schema_dsl.migrate import diff as d
from schema_dsl.migrate import loss
from schema_dsl.migrate.introspect import Live
from schema_dsl.model import Column, ForeignKey, Table


def _counter(answers):
    asked = []

    def count(sql):
        asked.append(sql)
        return answers[sql]
    return count, asked


def test_a_dropped_table_and_a_dropped_column_are_counted_in_one_sentence_each():
    live = Live(tables={"t": Table("t", [Column("id", "INTEGER"), Column("c", "TEXT")])})
    count, asked = _counter({'SELECT count(*) FROM "old"': 1, 'SELECT count(*) FROM "t" WHERE "c" IS NOT NULL': 2})
    changes = [d.Remove("table", "old", "removed: unused"), d.Remove("column", "c", "removed: moved", table="t"),
               d.Remove("index", "ix", "removed: slow", table="t")]  # an index loses no data
    lost = loss.data_loss(count, live, changes, rows=lambda table: pytest.fail("'old' is not a live table"))
    assert [x["text"] for x in lost] == ["table 'old': 1 row goes (removed: unused)",
                                         "column 't'.'c': 2 non-NULL values go (removed: moved)"]
    assert [(x["kind"], x["table"], x["column"], x["rows"]) for x in lost] == [("table", "old", None, 1),
                                                                               ("column", "t", "c", 2)]
    assert len(asked) == 2


def test_a_repair_that_deletes_is_data_loss_and_one_that_sets_null_is_not():
    t = Table("items", [Column("id", "INTEGER"), Column("owner_id", "INTEGER")])
    deletes = d.RepairForeignKey(t, ForeignKey(["owner_id"], "owners", ["id"], repair="delete"))
    nulls = d.RepairForeignKey(t, ForeignKey(["owner_id"], "owners", ["id"], repair="set null"))
    assert loss.repair_loss("items", deletes, 3)["text"] == (
        "table 'items': 3 rows deleted, which break foreign key (owner_id) -> owners (declared repair='delete')")
    assert loss.repair_loss("items", nulls, 3) is None


class _Plan:
    data_loss = ({"text": "table 'old': 1 row goes (removed: unused)"},)


def test_the_guard_needs_a_backup_or_allow_then_a_yes():
    terms = {"no_backup": "there is none", "allow": "--allow-data-loss is given", "accept": ""}
    with pytest.raises(UnsafeMigrationError, match="and there is none: without a backup it runs only if "
                                                   "--allow-data-loss is given; nothing was changed"):
        loss.guard("db", _Plan(), False, False, None, terms)
    with pytest.raises(Declined, match="was not confirmed"):
        loss.guard("db", _Plan(), True, False, lambda plan: False, terms)
    assert loss.guard("db", _Plan(), False, True, lambda plan: True, terms) is None
