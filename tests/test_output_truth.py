"""What plan, apply and validate print: the same facts in both, said once, in singulars where there is one
(issues 15 and 17)."""
from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import make_runner
from schema_dsl.cli import main


def _apply(path, *extra):
    result = make_runner().invoke(main, ["apply", "--db", str(path), "--schema", "abathur"] + list(extra))
    return result


@pytest.fixture
def with_junk(tmp_path):
    """An abathur file plus an undeclared table with a row: --prune --allow-data-loss drops it (data loss)."""
    path = tmp_path / "app.db"
    assert _apply(path, "--no-validate").exit_code == 0
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE junk (x)")
    conn.execute("INSERT INTO junk VALUES (1)")
    conn.commit()
    conn.close()
    return path


def test_apply_json_carries_the_data_loss_list_plan_json_has(with_junk):
    planned = make_runner().invoke(main, ["plan", "--db", str(with_junk), "--schema", "abathur", "--json", "--prune",
                                          "--allow-data-loss"])
    assert planned.exit_code == 0, planned.output
    loss = json.loads(planned.stdout)["data_loss"]
    assert loss and "junk" in json.dumps(loss)
    applied = _apply(with_junk, "--json", "--prune", "--allow-data-loss", "--yes")
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout)["data_loss"] == loss
