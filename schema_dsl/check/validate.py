"""The milestone's validation report.

Checks: every declared table and index present and structurally equal (the
rule of structure.compare, shared with generated/validate_schema.py), the
counts, PRAGMA quick_check (integrity_check with full_integrity), an empty
PRAGMA foreign_key_check, the declared persistent settings (journal_mode),
and for each serves-query the declaration marks as a required plan check
(Index.plan_check), an EXPLAIN QUERY PLAN that uses its index or an
identical one (same table, columns, order, uniqueness and WHERE), named. The report also lists the tables and indexes
found in sqlite_master, the PRAGMA results, sample query plans and the issues
met; `format_text` and `format_markdown` print it. The report `apply` prints
leaves out the two whole-file data checks (see validation_report's applied),
and is built on apply's own connection from the structure apply verified
before COMMIT (check/report.report_after_apply): `schemagen validate` reads
and checks everything itself.
"""
from __future__ import annotations

import re
import sqlite3

from ..sqlite import dbfile, structure
from ..sqlite.leftovers import leftovers
from ..sqlite.data import describe_violation, foreign_key_violations
from ..sqlite.eqp import explain_lines, indexes_used
from ..words import plural



def validation_report(conn, target, path=None, full_integrity=False, allow_extra=True, findings=(), actual=None,
                      applied=None, differences=None):
    """The report of the database behind conn against target (a target.Target: expected structure, serves).

    actual: the structure already read from this database (apply passes the one it verified before COMMIT);
    differences: structure.compare(target.structure, actual), when the caller has it already (apply compared them
    before COMMIT): not compared again.

    applied: apply's own foreign key check ({"tables": [...], "count": n, "kept": [the first
    descriptions]}). With it, the whole-file data checks (quick_check, foreign_key_check), which cost
    the same on every file however little apply changed, are not run: their rows say so and point at
    `schemagen validate` (their `ok` is None, shown as [skip]), and the foreign key row reports what
    apply checked before its COMMIT.
    """
    if actual is None:
        differences = None  # read here, so compared here
    expected = structure.fold_case(target.structure)
    actual = structure.fold_case(structure.read_structure(conn) if actual is None else actual)
    if differences is None:
        differences = structure.compare(expected, actual)
    # compare's count lines ("expected 33 indexes, found 32 of them", "1 indexes beyond ...") restate what it names
    # one by one: the report counts each thing once (its table and index rows carry the counts)
    diffs = [(k, m) for k, m in differences if not _COUNT_LINE.match(m)]
    problems = [m for k, m in diffs if k != "extra" or not allow_extra]
    extras = [m for k, m in diffs if k == "extra" and allow_extra]
    problems += ["%s '%s' is a leftover of an interrupted online apply (schemagen's own): the next apply removes "
                 "it" % (kind, name) for kind, name, _ in leftovers(conn)]
    master = conn.execute(
        "SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index') ORDER BY type DESC, rowid").fetchall()
    history = last_design(conn) if any(tb.lower() == structure.HISTORY_TABLE for _, _, tb in master) else None
    master = [r for r in master if r[2].lower() != structure.HISTORY_TABLE]  # schemagen's own: not the user's schema
    integrity_name = "integrity_check" if full_integrity else "quick_check"
    settings = declared_settings(target)
    pragmas = {name: conn.execute("PRAGMA %s" % name).fetchone()[0] for name in settings}
    if applied is None:
        integrity = [r[0] for r in conn.execute("PRAGMA %s" % integrity_name)]
        violations = [describe_violation(conn, v) for v in foreign_key_violations(conn)]
        pragmas[integrity_name] = integrity
        pragmas["foreign_key_check"] = violations
        data_rows = [
            (integrity_name, integrity == ["ok"], "; ".join(integrity[:5])),
            ("foreign_key_check", not violations, "no violations" if not violations else plural(len(violations), "violation")),
        ]
    else:
        violations = list(applied["kept"])
        scope = list(applied["tables"])
        data_rows = [
            (integrity_name, None, "not run by apply (it reads the whole file): run `schemagen validate`"),
            ("foreign keys of the tables apply changed, checked before COMMIT",
             not applied["count"],
             ("%s that were there before apply, kept" % plural(applied["count"], "violation") if applied["count"]
              else "no violations")
             + (" (%s)" % ", ".join(scope) if scope else " (no table's foreign keys could change)")),
        ]
    samples = []
    plan_checks = target.compiled.get("plan_checks", {})
    for index, queries in target.serves:
        if index.lower() not in actual["indexes"]:
            continue
        declared = plan_checks.get(index, {})
        accepted = [index] + list(declared.get("identical", []))
        for q in queries:
            try:
                lines = explain_lines(conn, q)
            except Exception as exc:  # the query names a column the database lacks
                lines = ["error: %s" % exc]
            used = indexes_used(lines)
            by = next((name for name in used if name.lower() in {a.lower() for a in accepted}), None)
            samples.append({"index": index, "query": q, "plan": lines, "uses_index": by is not None, "used_by": by,
                            "indexes_used": used, "required": bool(declared.get("required"))})
    plan_rows = []
    for s in samples:
        if not s["required"]:
            continue
        if s["uses_index"]:
            detail = "uses %s" % s["used_by"] if s["used_by"].lower() == s["index"].lower() else \
                "uses %s, identical to %s (same columns, order and WHERE)" % (s["used_by"], s["index"])
        else:
            detail = "the plan does not use it: " + " | ".join(s["plan"])
        plan_rows.append(("EXPLAIN QUERY PLAN of %s's query uses it (a required plan check)" % s["index"],
                          s["uses_index"], detail))
    checks = [
        ("structure matches the declaration", not problems, plural(len(problems), "difference") if problems else "ok"),
        (plural(len(expected["tables"]), "table"), sum(1 for t in expected["tables"] if t in actual["tables"]) == len(expected["tables"]),
         "%d of %d declared tables present" % (sum(1 for t in expected["tables"] if t in actual["tables"]), len(expected["tables"]))),
        (plural(len(expected["indexes"]), "index", "indexes"), sum(1 for t in expected["indexes"] if t in actual["indexes"]) == len(expected["indexes"]),
         "%d of %d declared indexes present" % (sum(1 for t in expected["indexes"] if t in actual["indexes"]), len(expected["indexes"]))),
        *data_rows,
        # the settings the declaration keeps in the file; per-connection ones (foreign_keys, busy_timeout) are
        # not a property of the file: every application connection sets them (pragmas.sql), shown as settings
        *[("%s = %s" % (name, value), str(found).lower() == value, str(found))
          for name, value, found in ((name, value, pragmas[name] if name in pragmas else
                                      conn.execute("PRAGMA %s" % name).fetchone()[0])
                                     for name, value in sorted(target.persistent_pragmas.items()))],
        *plan_rows,
    ]
    issues = list(problems)
    issues += ["%s: %s" % (c[0], c[2]) for c in checks[3:] if c[1] is not None and not c[1]]
    return {
        "database": str(path) if path is not None else None,
        "ok": all(c[1] is None or c[1] for c in checks),
        "checks": [{"check": c[0], "ok": None if c[1] is None else bool(c[1]), "detail": c[2]} for c in checks],
        "violations": violations,
        "tables": [{"name": n, "type": t} for t, n, _ in master if t == "table"],
        "indexes": [{"name": n, "table": tb, "automatic": n.startswith("sqlite_autoindex_")} for t, n, tb in master if t == "index"],
        "counts": {"tables": len([1 for t, n, _ in master if t == "table" and not n.startswith("sqlite_")]),
                   "expected_tables": len(expected["tables"]),
                   "indexes": len([1 for t, n, _ in master if t == "index" and not n.startswith("sqlite_")]),
                   "expected_indexes": len(expected["indexes"])},
        "pragmas": pragmas,
        "settings": settings,
        "explain": samples,
        "differences": problems,
        "history": history,
        "extras": extras,
        "issues": issues,
        "findings": list(findings),
        # what only PostgreSQL reports (pg/apply.py's check), under the same keys on both engines
        "dialect": "sqlite", "notes": [], "not_valid_violations": [],
    }


_COUNT_LINE = re.compile(r"(expected \d+ (tables|indexes), found \d+ of them|\d+ (tables|indexes) beyond the declared \d+)\Z")


def declared_settings(target):
    """The names of the PRAGMAs the declaration sets (pragmas.sql), in its order: the only settings a report
    lists."""
    names = []
    for stmt in dbfile.split_statements(target.files.get("pragmas.sql", "")):
        words = stmt.split()
        if len(words) > 1 and words[0].upper() == "PRAGMA":
            name = words[1].split("=")[0].strip().lower()
            if re.match(r"[a-z_]+\Z", name) and name not in names:
                names.append(name)
    return names


def last_design(conn):
    """From schemagen's history table (migrate/history.py): the last apply's declaration, its sha256, when and with
    which schemagen ({"declaration", "declaration_sha256", "applied_at", "schemagen_version"}), or None.
    A table of that name that is not schemagen's record gives {"unreadable": why}: it is no part of the user's schema,
    so validate checks the rest and says so."""
    keys = ("declaration", "declaration_sha256", "applied_at", "schemagen_version")
    try:
        row = conn.execute("SELECT %s FROM %s WHERE kind = 'apply' ORDER BY id DESC LIMIT 1" % (
            ", ".join(keys), structure.HISTORY_TABLE)).fetchone()
    except sqlite3.Error as exc:
        return {"unreadable": str(exc)}
    if row is not None and not all(isinstance(v, str) for v in row):
        return {"unreadable": "its last record of an apply has a value that is not text"}
    return None if row is None else dict(zip(keys, row))


def _history_line(report):
    h = report.get("history")
    if h and "unreadable" in h:
        return "  history: table '%s' is not schemagen's record (%s); `schemagen history` says more" % (
            structure.HISTORY_TABLE, h["unreadable"])
    return ("  last brought to: '%s' (sha256 %s) on %s by schemagen %s" % (
        h["declaration"], h["declaration_sha256"][:12], h["applied_at"], h["schemagen_version"]) if h else None)


def to_json(report):
    import json  # only --json needs it: kept off the import path of apply and validate

    return json.dumps(report, indent=2, sort_keys=True, default=str)


def _status(ok):
    return "skip" if ok is None else "ok" if ok else "FAIL"




def not_run(report):
    """The checks in the report that did not run (apply leaves the whole-file data checks to validate)."""
    return [c["check"] for c in report["checks"] if c["ok"] is None]


def verdict(report):
    """'OK' only when every check ran and passed; never OK beside a check that did not run."""
    if not report["ok"]:
        return "FAILED"
    return "checks that ran passed (%s not run)" % plural(len(not_run(report)), "check") if not_run(report) else "OK"


def format_summary(report, style=lambda text, ok: text):
    """The short report a person reads by default: the verdict, what was checked, what needs the user.

    style(text, ok) may colour a status word (the CLI does on a terminal, unless NO_COLOR is set).
    """
    db = report["database"]
    counts = report["counts"]
    checks = {c["check"]: c for c in report["checks"]}
    out = ["%s: %s" % (db, style(verdict(report), report["ok"]))]
    structure_ok = checks["structure matches the declaration"]["ok"]
    out.append("  structure: %s (%s, %s)" % (
        style("matches the declaration" if structure_ok else plural(len(report["differences"]), "difference"), structure_ok),
        plural(counts["expected_tables"], "table"), plural(counts["expected_indexes"], "index", "indexes")))
    if _history_line(report):
        out.append(_history_line(report))
    for d in report["differences"][:5]:
        out.append("    - %s" % d)
    if len(report["differences"]) > 5:
        out.append("    ... %d more (--verbose)" % (len(report["differences"]) - 5))
    # a check apply leaves to `schemagen validate` (quick_check) is named by --verbose and --json, not here
    ran = [c for c in report["checks"][3:] if c["ok"] is not None]
    failed = [c for c in ran if not c["ok"]]
    out.append("  other checks: %s" % (style("%s passed" % plural(len(ran), "check"), True) if not failed else
                                       style("%d of %s failed" % (len(failed), plural(len(ran), "check")), False)))
    for c in failed:
        out.append("    - %s: %s" % (c["check"], c["detail"]))
    for v in report["violations"][:5]:
        out.append("    - %s" % v)
    if report["extras"]:
        out.append("  kept, not in the declaration: %s" % len(report["extras"]))
        out += ["    - %s" % kept_name(e) for e in report["extras"][:5]]
        if len(report["extras"]) > 5:
            out.append("    ... %d more (--verbose)" % (len(report["extras"]) - 5))
    out += ["  note: %s" % n for n in report.get("notes", ())]
    if report["findings"]:
        out.append("  also: %s (schemagen lint); --verbose shows them" % plural(len(report["findings"]), "design finding"))
    return "\n".join(out)


def kept_name(extra):
    """'extra index 'x' on table 't'' as the kept object it names: "index 'x' on table 't'"."""
    return extra.replace("extra ", "", 1)


def _catalog(report):
    """Where the report read the tables and indexes: SQLite's sqlite_master, PostgreSQL's pg_catalog."""
    return "pg_catalog" if report.get("dialect") == "postgresql" else "sqlite_master"


def format_text(report, samples=4):
    out = ["validation report for %s: %s" % (report["database"], verdict(report))]
    for c in report["checks"]:
        out.append("  [%s] %s: %s" % (_status(c["ok"]), c["check"], c["detail"]))
    counts = report["counts"]
    out.append("  %s: %s (%d declared), %s (%d declared), %s" % (
        _catalog(report), plural(counts["tables"], "table"), counts["expected_tables"],
        plural(counts["indexes"], "named index", "named indexes"), counts["expected_indexes"],
        plural(sum(1 for i in report["indexes"] if i["automatic"]), "automatic index", "automatic indexes")))
    if _history_line(report):
        out.append(_history_line(report))
    p = report["pragmas"]
    if report.get("settings"):  # only the settings the declaration declares
        out.append("  pragmas: " + ", ".join("%s=%s" % (k, p[k]) for k in report["settings"]))
    required = [s for s in report["explain"] if s.get("required")]
    shown = required + [s for s in report["explain"] if not s.get("required")][:max(samples - len(required), 0)]
    if shown:
        out.append("  sample query plans:")
        for s in shown:
            out.append("    %s: %s" % (s["index"], s["query"]))
            out += ["      %s" % line for line in s["plan"]]
    if report["issues"]:
        out.append("  issues:")
        out += ["    - %s" % i for i in report["issues"]]
    for v in report["violations"][:20]:
        out.append("    - %s" % v)
    if report["extras"]:
        out.append("  kept, not in the declaration:")
        out += ["    - %s" % kept_name(e) for e in report["extras"]]
    out += ["  note: %s" % n for n in report.get("notes", ())]
    if report["findings"]:
        out.append("  issues encountered in the design (lint findings), and how each is resolved:")
        for f in report["findings"]:
            out.append("    - [%s] %s %s: %s" % (f["severity"], f["rule"], f["object"], f["message"]))
            if f.get("resolution"):
                out.append("      resolution: %s" % f["resolution"])
    return "\n".join(out)


def format_markdown(report):
    out = ["# Validation report", "", "Database: `%s`. Result: **%s**." % (report["database"], verdict(report)), "",
           "## Checks", "", "| check | result | detail |", "| --- | --- | --- |"]
    out += ["| %s | %s | %s |" % (c["check"], _status(c["ok"]), c["detail"].replace("|", "\\|")) for c in report["checks"]]
    out += ["", "## Tables in %s" % _catalog(report), ""] + ["- `%s`" % t["name"] for t in report["tables"]]
    out += ["", "## Indexes in %s" % _catalog(report), ""] + [
        "- `%s` on `%s`%s" % (i["name"], i["table"], " (automatic, not counted)" if i["automatic"] else "") for i in report["indexes"]]
    if report["pragmas"]:  # SQLite's; PostgreSQL's report has none
        out += ["", "## PRAGMA results", "", "| pragma | value |", "| --- | --- |"]
        for k, v in report["pragmas"].items():
            out.append("| %s | %s |" % (k, ("; ".join(map(str, v)) if isinstance(v, list) else v) or "(no rows)"))
    if report["explain"]:
        out += ["", "## EXPLAIN QUERY PLAN samples", ""]
    else:
        out.append("")
    for s in report["explain"]:
        out += ["### %s%s" % (s["index"], "" if s["uses_index"] else " (declared index not used)"), "",
                "```sql", s["query"], "```", "", "```"] + s["plan"] + ["```", ""]
    out += ["## Issues encountered", ""]
    out += ["- %s" % i for i in report["issues"]] or ["- none"]
    if report["findings"]:
        out += ["", "### Design findings, and how each is resolved", ""]
        out += ["- **%s** `%s` (%s): %s.%s" % (f["severity"], f["object"], f["rule"], f["message"].rstrip("."),
                                               " Resolution: %s." % f["resolution"].rstrip(".") if f.get("resolution") else "")
                for f in report["findings"]]
    if report["extras"]:
        out += ["", "## Kept, not in the declaration", ""] + ["- %s" % kept_name(e) for e in report["extras"]]
    if report.get("notes"):
        out += ["", "## Notes", ""] + ["- %s" % n for n in report["notes"]]
    return "\n".join(out) + "\n"
