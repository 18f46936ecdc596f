"""Run the schemagen CLI with a pause at one named point, so that a test can send a real SIGINT there.

    python interrupt_driver.py POINT[#N] schemagen-arguments...

At the N-th time (default 1) the run reaches POINT it writes "@@POINT" to stderr and sleeps; the test sends
SIGINT when it reads that line. Points: begin (before BEGIN IMMEDIATE), steps (after the plan's statements,
before the checks and COMMIT), commit (COMMIT about to run), committed (COMMIT has just returned), wal (the
settings after COMMIT: the WAL switch), report (the validation report after COMMIT), question (the data-loss
question), exit (the command is done, its exit code chosen), restored (restore's backup API copy has just returned:
a Ctrl-C during the copy is raised there, after it).
"""
from __future__ import annotations

import io
import sqlite3
import sys
import time

POINT, _, NTH = sys.argv[1].partition("#")
NTH = int(NTH or 1)
SEEN = {}


def pause(name):
    SEEN[name] = SEEN.get(name, 0) + 1
    if name == POINT and SEEN[name] == NTH:
        sys.stderr.write("@@%s\n" % name)
        sys.stderr.flush()
        time.sleep(3.0)  # the SIGINT lands in here (a deferred one lets the sleep run out)


def wrap(module, attr, name):
    original = getattr(module, attr)

    def paused(*args, **kwargs):
        pause(name)
        return original(*args, **kwargs)
    setattr(module, attr, paused)


class Connection(sqlite3.Connection):
    def execute(self, sql, *args):
        if sql == "COMMIT":
            pause("commit")
            out = super().execute(sql, *args)
            pause("committed")
            return out
        return super().execute(sql, *args)

    def backup(self, target, *args, **kwargs):
        out = super().backup(target, *args, **kwargs)
        pause("restored")
        return out


_connect = sqlite3.connect


def connect(*args, **kwargs):
    kwargs.setdefault("factory", Connection)
    return _connect(*args, **kwargs)


sqlite3.connect = connect

import click  # noqa: E402

import schema_dsl.check.report  # noqa: E402
import schema_dsl.migrate.apply as apply_module  # noqa: E402
from schema_dsl.cli import main  # noqa: E402

wrap(apply_module, "_begin", "begin")
wrap(apply_module, "_verify_structure", "steps")
wrap(apply_module, "_finish_connection", "wal")
wrap(schema_dsl.check.report, "build_report", "report")
wrap(schema_dsl.check.report, "report_on_connection", "report")  # apply builds its report on its connection
wrap(click, "confirm", "question")
_exit = sys.exit


def paused_exit(code=0):
    pause("exit")
    _exit(code)


sys.exit = paused_exit


class _TerminalStdin(io.TextIOWrapper):
    """stdin that says it is a terminal, so that apply asks its data-loss question (the test never answers)."""

    def isatty(self):
        return True


if POINT == "question":
    sys.stdin = _TerminalStdin(sys.stdin.buffer, encoding="utf-8")

sys.argv = ["schemagen"] + sys.argv[2:]
main()
