"""The dialect registry (schema_dsl/dialects/): one rule picks the engine of a --db, and both engines answer the
same operations; what one engine does not take is refused in one line naming it."""
import inspect

import pytest

from schema_dsl import dialects
from schema_dsl.errors import SchemagenError


@pytest.mark.parametrize("db, name", [
    ("app.db", "sqlite"), ("/tmp/x/postgresql.db", "sqlite"), ("postgresql.db", "sqlite"),
    ("postgresql://u@h/db", "postgresql"), ("POSTGRES://h/db", "postgresql"),
    ("postgres://h:5432/db?x=1", "postgresql"),
])
def test_one_rule_picks_the_dialect_of_a_db_value(db, name):
    dialect = dialects.for_db(db)
    assert dialect.name == name and dialects.name_of(db) == name
    assert dialects.for_db(db) is dialect  # one instance per engine


def _operations(cls):
    """The operations a dialect answers: its own and those the base Dialect gives every engine."""
    return {n for n in dir(cls) if not n.startswith("_") and inspect.isfunction(getattr(cls, n))}


def test_both_dialects_answer_the_same_operations():
    """One interface: every operation is the base Dialect's; an engine overrides what differs, and what it has no
    meaning for (inspect and restore on PostgreSQL, transfer into SQLite) is refused in one line."""
    from schema_dsl.dialects.postgresql import PostgreSQL
    from schema_dsl.dialects.sqlite import SQLite
    assert _operations(SQLite) == _operations(dialects.Dialect)
    assert _operations(PostgreSQL) - _operations(dialects.Dialect) == {"compiled"}
    assert {"inspect", "restore"} <= set(PostgreSQL.refused_commands)
    url = "postgresql://h/db"
    for refused in (lambda d: d.inspect(url), lambda d: d.list_backups(url), lambda d: d.restore(url)):
        with pytest.raises(SchemagenError, match="^--db postgresql://h/db: "):
            refused(dialects.for_db(url))
    for operation in ("plan", "plan_online", "export_script", "apply", "validate", "explain", "lint",
                      "read_history", "record_by_hand", "refuse_foreign", "renderer", "script_written"):
        assert operation in _operations(SQLite) and operation in _operations(PostgreSQL), operation


def test_an_option_no_db_takes_is_refused_naming_it():
    assert dialects.refused_option(["a.db"], {"lock_timeout": "--lock-timeout"}) == (
        "--lock-timeout: an option of PostgreSQL only; --db a.db is an SQLite file, nothing was changed")
    assert dialects.refused_option(["postgresql://u:secret@h/db"], {"backup_dir": "--backup-dir"}) == (
        "--backup-dir: PostgreSQL has no file backup (an option of SQLite only); --db postgresql://u:***@h/db is a "
        "PostgreSQL URL, nothing was changed")
    # several --db of both engines: each takes the options of its own engine
    assert dialects.refused_option(["a.db", "postgresql://h/db"], {"lock_timeout": "--lock-timeout",
                                                                  "backup_dir": "--backup-dir"}) is None
    assert dialects.refused_option(["a.db"], {"backup_dir": "--backup-dir", "as_json": "--json"}) is None


def test_a_command_an_engine_does_not_run_is_refused_in_one_line():
    with pytest.raises(SchemagenError, match=r"^--db postgresql://u:\*\*\*@h/db: PostgreSQL has no file backup"):
        dialects.for_db("postgresql://u:pw@h/db").refuse("restore", "postgresql://u:pw@h/db")
    dialects.for_db("a.db").refuse("restore", "a.db")  # SQLite runs it


def test_transfer_goes_only_into_postgresql():
    with pytest.raises(SchemagenError, match="^--to must be a postgresql:// or postgres:// URL$"):
        dialects.for_db("b.db").transfer("a.db", "b.db", None)


# --- through the CLI, on both engines ----------------------------------------------------------------------------

from pg_cluster import pg_cluster, pg_url  # noqa: E402,F401 (fixtures)
from test_behaviour_both import V2, _applied, _cli, engine  # noqa: E402,F401 (the engine fixture and helpers)


class _Documents:
    """Where a database's --json document goes while the runner runs it."""

    collected = None

    def start(self, as_json):
        self.collected = [] if as_json else None

    def take(self):
        collected, self.collected = self.collected, None
        return collected


def _run_three(as_json, lines):
    """The library's runner on three databases, without the CLI: ok, refused (exit 2), problems (exit 1)."""
    from schema_dsl.dialects.several import run_each
    documents = _Documents()

    def one(db, report):
        lines.append(("out", "ran %s %s" % (db, report)))
        if documents.collected is not None:
            documents.collected.append({"database": db, "n": len(lines)})
        if db == "b.db":
            raise SchemagenError("database 'b.db':\n  is a directory")
        if db == "postgresql://ann:secret@h/c":
            raise SystemExit(1)

    return run_each(["a.db", "b.db", "postgresql://ann:secret@h/c"], ["r/a.md", None, None], one, as_json=as_json,
                    echo=lambda text, err=False: lines.append(("err" if err else "out", text)),
                    documents=documents, committed=[])


def test_the_runner_of_several_databases_is_in_the_library_and_the_worst_exit_code_wins():
    """dialects/several.py runs one command per --db (no click): a header per database, a failure's one line on
    stderr, then the summary (URLs masked) or the --json list; 2 outranks 1."""
    lines = []
    ran = _run_three(False, lines)
    assert lines == [("out", "== a.db"), ("out", "ran a.db r/a.md"), ("out", "== b.db"), ("out", "ran b.db None"),
                     ("err", "error: database 'b.db': is a directory"), ("out", "== postgresql://ann:***@h/c"),
                     ("out", "ran postgresql://ann:secret@h/c None")]
    assert ran.exit_code() == 2 and ran.interrupted is None
    assert ran.summary().splitlines() == [
        "", "3 files:",
        "  %-24s  0  ok" % "a.db",
        "  %-24s  2  refused, nothing changed: database 'b.db': is a directory" % "b.db",
        "  postgresql://ann:***@h/c  1  problems found"]
    import json
    lines = []
    listed = json.loads(_run_three(True, lines).json())
    assert [(d["database"], d["exit_code"], d["error"], d.get("n")) for d in listed] == [
        ("a.db", 0, None, 1), ("b.db", 2, "database 'b.db': is a directory", 2),
        ("postgresql://ann:***@h/c", 1, None, 3)]
    assert lines == [("out", "ran a.db r/a.md"), ("out", "ran b.db None"),
                     ("out", "ran postgresql://ann:secret@h/c None")]


def test_the_runner_on_one_database_is_the_single_database_behaviour():
    from schema_dsl.dialects.several import run_each
    seen = []

    def one(db, report):
        seen.append((db, report))
        raise SchemagenError("refused")

    with pytest.raises(SchemagenError, match="^refused$"):
        run_each(["a.db"], ["r.md"], one, as_json=False, echo=seen.append, documents=_Documents(), committed=[])
    assert seen == [("a.db", "r.md")]


def test_a_report_that_cannot_be_written_after_a_committed_apply_exits_3_on_both(runner, engine, monkeypatch):
    """apply's report is written after COMMIT: a failure there says the change is committed and exits 3, on
    PostgreSQL as on SQLite (PostgreSQL's apply exited 2 there, as if nothing had changed)."""
    from schema_dsl import outfiles
    from schema_dsl.errors import OutputPathError
    _applied(runner, engine)

    def full(path, text, label):
        raise OutputPathError("%s %r: no space left on device" % (label, str(path)))
    monkeypatch.setattr(outfiles, "write_text", full)
    result = _cli(runner, "apply", "--db", engine.db, "--schema", engine.decl(V2), "--report",
                  str(engine.tmp / "r.md"))
    assert result.exit_code == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the change to ") and \
        "is committed, then: --report" in lines[0], result.stderr
    assert engine.query("SELECT body FROM posts") == []  # the migration (a new column) stands


@pytest.mark.parametrize("args", [
    ["plan"], ["plan", "--sql"], ["apply"], ["validate"], ["explain"], ["lint"], ["history"],
    ["history", "--record", "x"],
])
def test_without_psycopg_every_postgresql_command_says_so_in_one_line(tmp_path, args):
    """The PostgreSQL dialect imports pg/ (and psycopg) per operation: a missing psycopg is one line naming the
    extra to install, exit 2, for every command (history once ended in a traceback: pg/history.py imports the
    connection helper inside its functions)."""
    import subprocess
    import sys
    script = ("import sys\n"
              "sys.modules['psycopg'] = None\n"
              "from schema_dsl.cli import main\n"
              "main(sys.argv[1:], prog_name='schemagen')\n")
    done = subprocess.run([sys.executable, "-c", script, *args, "--db", "postgresql://u:pw@localhost:1/db"],
                          capture_output=True, text=True, cwd=tmp_path)
    errors = [line for line in done.stderr.splitlines() if not line.startswith("note: ")]
    assert done.returncode == 2, done.stderr
    assert errors == [errors[0]] and errors[0].startswith("error: PostgreSQL needs psycopg (") and \
        errors[0].endswith("pip install 'schemagen[postgresql]'"), done.stderr


def test_database_of_a_url_without_psycopg_says_so_in_one_line():
    """Database(url) without psycopg raises the CLI's one-line SchemagenError naming the extra to install (it
    raised the bare ModuleNotFoundError of importing pg/database.py)."""
    import subprocess
    import sys
    script = ("import sys\n"
              "sys.modules['psycopg'] = None\n"
              "from schema_dsl import Database\n"
              "from schema_dsl.errors import SchemagenError\n"
              "try:\n"
              "    Database('postgresql://u:pw@localhost:1/db')\n"
              "except SchemagenError as exc:\n"
              "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("PostgreSQL needs psycopg (") and \
        done.stdout.strip().endswith("pip install 'schemagen[postgresql]'"), done.stdout
