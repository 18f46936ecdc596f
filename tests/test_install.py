"""The quick-start install, for real: a copy of this checkout, `pip install .` (not editable) into a new venv.

1. Outside any project the installed `schemagen` applies the declaration it ships (the wheel carries every
   subpackage, the templates and the rendered files).
2. The design-change flow inside the checkout: edit schema_dsl/abathur.py; `render --check` exits 1; `apply`
   refuses, naming the stale folder; `render`; `apply` applies the edit. The installed package is a copy,
   yet the working tree's declaration is the one rendered and applied.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import venv

import pytest

from conftest import ROOT


def _tracked_files():
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout: %s" % out.stderr.strip())
    return [line for line in out.stdout.splitlines() if line and (ROOT / line).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("install")
    clone = base / "clone"
    for name in _tracked_files():
        target = clone / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", "."], cwd=clone, capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail("pip install . failed: %s" % result.stderr[-2000:])
    return clone, env_dir / "bin" / "schemagen", base


def _run(args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def _columns(path, table):
    conn = sqlite3.connect(str(path))
    try:
        return [r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))]
    finally:
        conn.close()


def test_the_installed_schemagen_applies_the_shipped_declaration_outside_any_project(installed):
    clone, schemagen, base = installed
    outside = base / "outside"
    outside.mkdir()
    result = _run([str(schemagen), "apply", "--db", "a.db", "--no-validate"], outside)
    assert result.returncode == 0, result.stderr
    assert "tasks" in {r[0] for r in sqlite3.connect(str(outside / "a.db")).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    check = _run([sys.executable, str(clone / "generated" / "validate_schema.py"), str(outside / "a.db")], outside)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_design_change_flow_in_a_fresh_checkout(installed):
    clone, schemagen, base = installed
    db = clone / "flow.db"
    assert _run([str(schemagen), "apply", "--db", str(db), "--no-validate"], clone).returncode == 0
    decl = clone / "schema_dsl" / "abathur.py"
    text = decl.read_text(encoding="utf-8")
    anchor = 'Column("archived_at", "TIMESTAMP", comment="When the session was archived.", new=True),'
    assert anchor in text
    decl.write_text(text.replace(anchor, anchor + '\n        Column("flow_note", "TEXT", comment="Added by the test."),'),
                    encoding="utf-8")
    check = _run([str(schemagen), "render", "--check"], clone)
    assert check.returncode == 1, check.stdout + check.stderr
    before = db.read_bytes()
    refused = _run([str(schemagen), "apply", "--db", str(db)], clone)
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: generated/ is stale for schema_dsl/abathur.py: run schemagen render " \
                                     "(the declaration changed since it was rendered)"
    assert db.read_bytes() == before and "flow_note" not in _columns(db, "sessions")
    rendered = _run([str(schemagen), "render"], clone)
    assert rendered.returncode == 0, rendered.stderr
    assert "flow_note" in (clone / "generated" / "ddl-memory-tables.sql").read_text(encoding="utf-8")
    applied = _run([str(schemagen), "apply", "--db", str(db), "--no-validate"], clone)
    assert applied.returncode == 0, applied.stderr
    assert "flow_note" in _columns(db, "sessions")
    again = _run([str(schemagen), "plan", "--db", str(db)], clone)
    assert again.returncode == 0 and "up to date" in again.stdout
