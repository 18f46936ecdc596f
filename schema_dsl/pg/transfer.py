"""`schemagen transfer`: the rows of an SQLite database that matches the declaration, moved into PostgreSQL.

The steps (README, "PostgreSQL", "transfer"):

1. The source is opened read-only and read in one snapshot: `BEGIN`, then every read on that one connection
   (its structure first, which starts the snapshot). Its structure must match the declaration (the rule
   `schemagen validate` uses), else the transfer is refused. Writes made after the snapshot are not moved.
2. On the target everything happens in ONE transaction, under `lock_timeout` (default 5s): the declared tables
   are locked ACCESS EXCLUSIVE; a target holding none of the declaration gets it applied first (pg/apply, inside
   this transaction); one that holds it must match it and its tables must be empty, else refused.
3. Constraint timing: the foreign keys of the declared tables are dropped and their triggers disabled (the source's
   rows already hold what its triggers wrote), the rows are loaded with COPY (in
   dependency order, although with the keys dropped any order works: a child row may come before its parent,
   as with tasks.parent_task_id), then every key is added back with its own definition (pg_get_constraintdef)
   NOT VALID and VALIDATEd. Before that, one anti-join per key names the orphans (table, primary key, missing
   parent): they stop the transfer, or with orphans="not-valid" are kept and that key stays NOT VALID.
4. Identity sequences are set past both the highest id and SQLite's sqlite_sequence value.
5. Verification before COMMIT: per table the row count, and a checksum over a canonical form of every row
   computed the same way on both sides (the source's converted values as they were sent, the target's as read
   back): each value canonicalized (ints as digits, floats by repr, timestamps isoformat to the microsecond, JSON
   dumped with sorted keys, bytes as hex, booleans as t/f), each row hashed (BLAKE2b, 128 bits), the hashes
   summed modulo 2**128. The sum does not depend on row order, so neither side's collation matters. Then the
   structure is validated against the declaration. A mismatch rolls everything back.

Values are converted by the type mapping (compile/postgresql.py): a value that cannot convert (text or JSON
holding NUL, a non-timestamp in a timestamp column, invalid JSON, text in an integer column, ...) stops the
transfer naming table, row and column; it is never coerced to NULL. jsonb stores JSON parsed: key order,
spacing and duplicate keys (the last one wins) of the source text are not kept.
"""
from __future__ import annotations

import datetime
import decimal
import hashlib
import json
import re
import time

import psycopg
from psycopg import errors as pgerrors
from psycopg.types.json import Jsonb

from ..compile.postgresql import TIMESTAMP
from ..errors import SchemagenError
from ..sqlite import structure
from ..sqlite.dbfile import open_existing
from ..sqlite.quote import quote_identifier
from . import apply as pg_apply
from . import catalog
from .url import mask, scrub

ORPHAN_MODES = ("refuse", "not-valid")
SNAPSHOT_NOTE = "the source was read in one snapshot (one read transaction): writes made to it after that are not moved"
JSONB_NOTE = "jsonb stores JSON parsed: the source's key order, spacing and duplicate keys (the last wins) are not kept"
EXAMPLES = 5          # orphans named per foreign key
PROGRESS_ROWS = 10_000  # a progress event every this many rows of a table
CHECKSUM_BITS = 128  # BLAKE2b's digest_size 16
_blake2b = hashlib.blake2b


class TransferError(SchemagenError):
    """A transfer refused or rolled back: nothing was changed on the target."""


class _Unconvertible(Exception):
    pass


# --- values: SQLite's, converted by the type mapping --------------------------------

_TS = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
                 r"\s*(Z|[+-]\d{2}:?\d{2})?\Z")


def parse_timestamp(text):
    """SQLite's timestamp text as a naive UTC datetime: 'YYYY-MM-DD[ HH:MM[:SS[.ffffff]]]', 'T' or space, and an
    optional Z or +HH:MM (converted to UTC). More than 6 fraction digits only when the rest are zeros."""
    if len(text) in (19, 26) and text[10] in " T" and text[4] == text[7] == "-" and text[13] == text[16] == ":" \
            and (len(text) == 19 or text[19] == "."):
        try:  # the common shapes, in C: 'YYYY-MM-DD HH:MM:SS[.ffffff]'
            return datetime.datetime.fromisoformat(text)
        except ValueError:
            pass  # the full rule below says why
    m = _TS.match(text.strip())
    if m is None:
        raise _Unconvertible("%r is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff][Z|+HH:MM])" % _short(text))
    y, mo, d, h, mi, s, frac, zone = m.groups()
    if frac and len(frac) > 6 and frac[6:].strip("0"):
        raise _Unconvertible("%r has more than microsecond precision" % _short(text))
    micro = int((frac or "0")[:6].ljust(6, "0"))
    try:
        value = datetime.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), micro)
    except ValueError as exc:
        raise _Unconvertible("%r is not a timestamp (%s)" % (_short(text), exc)) from None
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        value -= sign * datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return value


def _short(text, n=40):
    text = str(text)
    return text if len(text) <= n else text[:n] + "..."


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


def _nul_free(obj):
    if isinstance(obj, str):
        return "\0" not in obj
    if isinstance(obj, dict):
        return all(_nul_free(k) and _nul_free(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_nul_free(v) for v in obj)
    return True


def _integer(v):
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise _Unconvertible("%s %r is not an integer" % (_kind(v), _short(v)))


def _real(v):
    if isinstance(v, float):
        return v
    if isinstance(v, int):
        return float(v)
    raise _Unconvertible("%s %r is not a number" % (_kind(v), _short(v)))


def _text(v):
    if isinstance(v, str):
        if "\0" in v:
            raise _Unconvertible("text holding NUL (PostgreSQL's text cannot hold it)")
        return v
    raise _Unconvertible("%s %r in a text column" % (_kind(v), _short(v)))


def _bytes(v):
    if isinstance(v, bytes):
        return v
    raise _Unconvertible("%s %r in a bytea column" % (_kind(v), _short(v)))


def _boolean(v):
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise _Unconvertible("%s %r is not 0 or 1" % (_kind(v), _short(v)))


def _timestamp(v):
    if isinstance(v, str):
        return parse_timestamp(v)
    raise _Unconvertible("%s %r is not a timestamp text" % (_kind(v), _short(v)))


def _date(v):
    value = _timestamp(v)
    if value.time() != datetime.time():
        raise _Unconvertible("%r is not a date" % _short(v))
    return value.date()


def _json(v):
    if not isinstance(v, str):
        raise _Unconvertible("%s %r is not JSON text" % (_kind(v), _short(v)))
    if "\0" in v:
        raise _Unconvertible("JSON text holding NUL")
    try:
        obj = json.loads(v, parse_constant=_no_constant)
    except ValueError as exc:
        raise _Unconvertible("invalid JSON %r (%s)" % (_short(v), exc)) from None
    if not _nul_free(obj):
        raise _Unconvertible("JSON holding NUL (\\u0000; jsonb cannot hold it)")
    return obj


def _numeric(v):
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise _Unconvertible("%s %r is not a number" % (_kind(v), _short(v)))
    try:
        value = decimal.Decimal(repr(v) if isinstance(v, float) else str(v))
    except decimal.InvalidOperation:
        raise _Unconvertible("%r is not a number" % _short(v)) from None
    if not value.is_finite():
        raise _Unconvertible("%r is not a finite number" % _short(v))
    return value


def _kind(v):
    return {int: "integer", float: "real", str: "text", bytes: "BLOB"}.get(type(v), type(v).__name__)


def converter(pg_type):
    """(convert SQLite value -> value for COPY, canonical text of a converted value) for a PostgreSQL type."""
    if pg_type == "bigint":
        return _integer, str
    if pg_type == "double precision":
        return _real, repr
    if pg_type == "text":
        return _text, str
    if pg_type == "bytea":
        return _bytes, bytes.hex
    if pg_type == "boolean":
        return _boolean, lambda v: "t" if v else "f"
    if pg_type == TIMESTAMP:
        return _timestamp, lambda v: v.isoformat(timespec="microseconds")
    if pg_type == "date":
        return _date, datetime.date.isoformat
    if pg_type == "jsonb":
        return _json, canonical_json
    if pg_type.startswith("numeric"):
        return _numeric, lambda v: str(v.normalize())
    raise TransferError("no conversion to PostgreSQL's %s" % pg_type)


def _json_numbers(obj):
    """JSON with integral floats as ints: jsonb keeps 1e2 as 100, so both sides must agree on the number."""
    if isinstance(obj, float) and obj.is_integer() and abs(obj) < 2 ** 53:
        return int(obj)
    if isinstance(obj, dict):
        return {k: _json_numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_numbers(v) for v in obj]
    return obj


def canonical_json(obj):
    return json.dumps(_json_numbers(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Checksum:
    """Count and an order-independent checksum of rows: the sum of each canonical row's 128-bit BLAKE2b."""

    __slots__ = ("canon", "rows", "total")

    def __init__(self, canon):
        self.canon = canon
        self.rows = 0
        self.total = 0

    def add(self, row):
        # no canonical value holds NUL (text and JSON holding it are refused): values are joined by NUL SOH, and
        # NULL is a lone NUL, so the joined text reads back one way only
        text = "\0\1".join([canon(v) if v is not None else "\0" for v, canon in zip(row, self.canon)])
        self.total += int.from_bytes(_blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest(), "big")
        self.rows += 1

    @property
    def hex(self):
        return "%032x" % (self.total % (1 << CHECKSUM_BITS))


# --- the result --------------------------------------------------------------------

class TransferResult:
    __slots__ = ("source", "target", "applied_schema", "tables", "orphans", "not_valid", "sequences", "timings",
                 "notes")

    def __init__(self, source, target):
        self.source, self.target = source, target
        self.applied_schema = False
        self.tables = {}      # name -> {rows, source_checksum, target_checksum, seconds, rows_per_second}
        self.orphans = []     # {table, constraint, parent, count, examples}
        self.not_valid = []   # "table.constraint" left NOT VALID (orphans="not-valid")
        self.sequences = {}   # "table.column" -> the value set
        self.timings = {}
        self.notes = [SNAPSHOT_NOTE]

    @property
    def rows(self):
        return sum(t["rows"] for t in self.tables.values())

    def as_dict(self):
        return {"source": self.source, "target": self.target, "dialect": "postgresql",
                "applied_schema": self.applied_schema, "rows": self.rows, "tables": self.tables,
                "orphans": self.orphans, "not_valid": self.not_valid, "sequences": self.sequences,
                "seconds": {k: round(v, 4) for k, v in self.timings.items()}, "notes": self.notes,
                "checksum": "blake2b-128 per canonical row, summed mod 2**128 (order-independent)"}


# --- the source ----------------------------------------------------------------------

def _source_plan(conn, sqlite_structure, compiled):
    """The declared tables (dependency order) with their columns and PostgreSQL types; the source's structure must
    match the declaration."""
    actual = structure.read_structure(conn)
    diffs = structure.compare(sqlite_structure, actual)
    problems = [m for k, m in diffs if k != "extra"]
    if problems:
        raise TransferError("the source does not match the declaration (%d difference%s: %s); run `schemagen apply "
                            "--db` on it first (or `schemagen validate`): nothing was changed" % (
                                len(problems), "" if len(problems) == 1 else "s", "; ".join(problems[:3])))
    tables = []
    pg_tables = compiled["structure"]["tables"]
    for st in compiled["statements"]:
        if st["kind"] != "table":
            continue
        t = pg_tables[st["name"]]
        tables.append((st["name"], list(t["columns"]), [t["columns"][c]["type"] for c in t["columns"]],
                       list(t["primary_key"]),
                       [c for c, info in t["columns"].items() if info["identity"]]))
    extras = [m for k, m in diffs if k == "extra"]
    return tables, extras


def _sqlite_sequences(conn):
    try:
        return {name.lower(): seq for name, seq in conn.execute("SELECT name, seq FROM sqlite_sequence")}
    except Exception:  # no AUTOINCREMENT table: no sqlite_sequence
        return {}


def _row_label(pk, columns, row, rowid):
    if pk:
        index = {c.lower(): i for i, c in enumerate(columns)}
        return ", ".join("%s=%r" % (c, row[index[c.lower()]]) for c in pk)
    return "rowid=%s" % rowid


# --- the target ----------------------------------------------------------------------

def _q(name):
    return '"' + name.replace('"', '""') + '"'


def _foreign_keys(conn, tables):
    """The foreign keys on the declared tables: (table, name, definition, columns, parent, parent columns)."""
    rows = conn.execute(
        "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid), "
        "ARRAY(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, o) JOIN pg_attribute a "
        "      ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.o), "
        "p.relname, "
        "ARRAY(SELECT a.attname::text FROM unnest(k.confkey) WITH ORDINALITY u(n, o) JOIN pg_attribute a "
        "      ON a.attrelid = k.confrelid AND a.attnum = u.n ORDER BY u.o) "
        "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
        "WHERE k.contype = 'f' AND c.relnamespace = %s AND c.relname = ANY(%s) ORDER BY c.relname, k.conname",
        (catalog.current_namespace(conn), list(tables))).fetchall()
    return rows


def _orphans(conn, fk, pk):
    table, name, _definition, cols, parent, pcols = fk
    present = " AND ".join("c.%s IS NOT NULL" % _q(c) for c in cols)
    match = " AND ".join("p.%s = c.%s" % (_q(pc), _q(c)) for c, pc in zip(cols, pcols))
    shown = pk or cols
    where = "%s AND NOT EXISTS (SELECT 1 FROM %s p WHERE %s)" % (present, _q(parent), match)
    count = conn.execute("SELECT count(*) FROM %s c WHERE %s" % (_q(table), where)).fetchone()[0]
    if not count:
        return None
    examples = conn.execute("SELECT %s, %s FROM %s c WHERE %s LIMIT %d" % (
        ", ".join("c.%s" % _q(c) for c in shown), ", ".join("c.%s" % _q(c) for c in cols), _q(table), where,
        EXAMPLES)).fetchall()
    return {"table": table, "constraint": name, "columns": cols, "parent": parent, "parent_columns": pcols,
            "count": count,
            "examples": [{"row": ", ".join("%s=%r" % (c, v) for c, v in zip(shown, r[:len(shown)])),
                          "missing": ", ".join("%s=%r" % (pc, v) for pc, v in zip(pcols, r[len(shown):]))}
                         for r in examples]}


def describe_orphans(o):
    return "table '%s': %d row%s whose %s names no %s row (%s), e.g. %s" % (
        o["table"], o["count"], "" if o["count"] == 1 else "s", ", ".join(o["columns"]), o["parent"],
        o["constraint"], "; ".join("row %s: missing parent %s(%s)" % (e["row"], o["parent"], e["missing"])
                                   for e in o["examples"]))


def _target_checksum(conn, table, columns, types):
    sums = Checksum([converter(t)[1] for t in types])
    with conn.cursor(name="schemagen_transfer_verify", binary=True) as cur:
        cur.itersize = 5000
        cur.execute("SELECT %s FROM %s" % (", ".join(_q(c) for c in columns), _q(table)))
        for row in cur:
            sums.add(row)
    return sums


# --- the transfer ----------------------------------------------------------------------

def transfer(sqlite_path, url, sqlite_structure, compiled, orphans="refuse", lock_timeout=pg_apply.DEFAULT_LOCK_TIMEOUT,
             progress=None):
    """Move the rows of the SQLite file into the PostgreSQL database at url, all or nothing; a TransferResult.

    sqlite_structure: the declaration's SQLite structure (compile/target's Target.structure); compiled: its
    PostgreSQL compilation (pg/apply.compiled_for). progress(event, table, rows, total, seconds) is called at the
    start and end of each table ("table", "done") and every PROGRESS_ROWS rows during COPY ("copy"), and at each
    phase ("phase", name).
    """
    if orphans not in ORPHAN_MODES:
        raise TransferError("orphans must be one of %s (got %r)" % (", ".join(ORPHAN_MODES), orphans))
    progress = progress or (lambda *a: None)
    started = time.perf_counter()
    result = TransferResult(sqlite_path, mask(url))
    source = open_existing(sqlite_path, "ro")
    try:
        source.execute("BEGIN")  # the snapshot: every read below is in this one read transaction
        tables, extras = _source_plan(source, sqlite_structure, compiled)
        if extras:
            result.notes.append("not moved, the declaration lacks it: %s" % "; ".join(extras))
        skipped = [s["name"] for s in compiled["statements"] if s["kind"] == "virtual table"]
        if skipped:
            result.notes.append("virtual tables are not moved (rebuild their content on PostgreSQL): %s"
                                % ", ".join(skipped))
        sequences = _sqlite_sequences(source)
        result.timings["source_check"] = time.perf_counter() - started
        target = pg_apply.connect(url)
        try:
            _run(source, target, url, compiled, tables, sequences, orphans, lock_timeout, progress, result)
        finally:
            target.close()
    finally:
        source.close()  # ends the read transaction
    result.timings["total"] = time.perf_counter() - started
    return result


def _run(source, target, url, compiled, tables, sequences, orphans, lock_timeout, progress, result):
    database = result.target
    names = [t[0] for t in tables]
    table = None
    try:
        with target.transaction():
            target.execute("SELECT set_config('lock_timeout', %s, true)", (str(lock_timeout or "0"),))
            clock = time.perf_counter()
            present = pg_apply._declared_present(target, compiled["structure"])
            if not present:
                progress("phase", "applying the declaration")
                pg_apply.apply_in(target, url, compiled, lock_timeout)
                result.applied_schema = True
            else:
                report = pg_apply.check(target, compiled, database)
                if not report["ok"]:
                    raise TransferError("%s holds the declaration's objects but does not match it (%s); run `schemagen "
                                        "apply --db` on it first: nothing was changed" % (
                                            database, "; ".join(report["differences"][:3])))
            target.execute("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE" % ", ".join(_q(n) for n in names))
            full = [n for n in names if target.execute("SELECT EXISTS (SELECT 1 FROM %s)" % _q(n)).fetchone()[0]]
            if full:
                raise TransferError("%s: the target's tables must be empty; %s already hold%s rows: nothing was changed"
                                    % (database, ", ".join(full), "s" if len(full) == 1 else ""))
            fks = _foreign_keys(target, names)
            for fk in fks:
                target.execute("ALTER TABLE %s DROP CONSTRAINT %s" % (_q(fk[0]), _q(fk[1])))
            # the source's rows already hold what its triggers wrote: the target's own triggers (a last_update
            # stamp, say) must not rewrite them while they are loaded; enabled again before COMMIT
            triggered = [r[0] for r in target.execute(
                "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(%s) "
                "ORDER BY 1", (names,))]
            for name in triggered:
                target.execute("ALTER TABLE %s DISABLE TRIGGER USER" % _q(name))
            result.timings["prepare"] = time.perf_counter() - clock
            copied = {}
            for table, columns, types, pk, identity in tables:
                copied[table] = _copy_table(source, target, table, columns, types, pk, progress, result)
            table = None
            for name in triggered:
                target.execute("ALTER TABLE %s ENABLE TRIGGER USER" % _q(name))
            table = None
            clock = time.perf_counter()
            progress("phase", "checking foreign keys")
            pks = {t[0]: t[3] for t in tables}
            found = [o for o in (_orphans(target, fk, pks.get(fk[0])) for fk in fks) if o]
            result.orphans = found
            if found and orphans == "refuse":
                raise TransferError("the source holds rows that break a foreign key (orphans); nothing was changed "
                                    "(--orphans=not-valid keeps them and leaves that key NOT VALID): %s" % (
                                        "; ".join(describe_orphans(o) for o in found)))
            broken = {(o["table"], o["constraint"]) for o in found}
            for fk in fks:
                target.execute("ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID" % (_q(fk[0]), _q(fk[1]), fk[2]))
                if (fk[0], fk[1]) in broken:
                    result.not_valid.append("%s.%s" % (fk[0], fk[1]))
                else:
                    target.execute("ALTER TABLE %s VALIDATE CONSTRAINT %s" % (_q(fk[0]), _q(fk[1])))
            if result.not_valid:
                result.notes.append("kept orphans: foreign key%s %s left NOT VALID (existing rows unchecked, new rows "
                                    "checked)" % ("" if len(result.not_valid) == 1 else "s", ", ".join(result.not_valid)))
            result.timings["foreign_keys"] = time.perf_counter() - clock
            clock = time.perf_counter()
            for table, columns, types, pk, identity in tables:
                for column in identity:
                    result.sequences["%s.%s" % (table, column)] = _set_sequence(
                        target, table, column, sequences.get(table.lower()))
            table = None
            result.timings["sequences"] = time.perf_counter() - clock
            clock = time.perf_counter()
            progress("phase", "verifying counts and checksums")
            for table, columns, types, pk, identity in tables:
                sums = _target_checksum(target, table, columns, types)
                info = result.tables[table]
                info["target_rows"], info["target_checksum"] = sums.rows, sums.hex
                if (sums.rows, sums.hex) != (info["rows"], info["checksum"]):
                    raise TransferError("table '%s': verification failed: the source has %d rows (checksum %s), the "
                                        "target %d (checksum %s); rolled back, nothing was changed" % (
                                            table, info["rows"], info["checksum"], sums.rows, sums.hex))
            table = None
            report = pg_apply.check(target, compiled, database)
            if not report["ok"]:
                raise TransferError("%s: after the load the structure does not match the declaration (%s); rolled "
                                    "back, nothing was changed" % (database, "; ".join(report["differences"][:3])))
            result.timings["verify"] = time.perf_counter() - clock
            from .history import carry_over  # the file's record: a data step it ran does not run again here
            carried = carry_over(source, target)
            if carried:
                result.notes.append("history: %d record%s of the file carried over (_schemagen_history)" % (
                    carried, "" if carried == 1 else "s"))
            clock = time.perf_counter()
        result.timings["commit"] = time.perf_counter() - clock
    except pgerrors.LockNotAvailable as exc:
        raise TransferError("%s: a lock was not granted within lock_timeout %s (%s): another session holds it; rolled "
                            "back, nothing changed" % (database, lock_timeout,
                                                       _one_line(scrub(exc.diag.message_primary or str(exc), url)))) from None
    except psycopg.Error as exc:
        detail = getattr(exc.diag, "message_detail", None)
        raise TransferError("%s: %s%s%s; rolled back, nothing was changed" % (
            database, "table '%s': " % table if table else "", _one_line(scrub(str(exc), url)),
            " (%s)" % _one_line(scrub(detail, url)) if detail and detail not in str(exc) else "")) from None
    result.notes.append(JSONB_NOTE)
    return result


def _one_line(text):
    return " ".join(str(text).split())


def _copy_table(source, target, table, columns, types, pk, progress, result):
    clock = time.perf_counter()
    total = source.execute("SELECT count(*) FROM %s" % quote_identifier(table)).fetchone()[0]
    progress("table", table, 0, total, 0.0)
    pairs = [converter(t) for t in types]
    convert = [p[0] for p in pairs]
    jsonb = [t == "jsonb" for t in types]
    sums = Checksum([p[1] for p in pairs])
    with_rowid = not pk
    select = "SELECT %s%s FROM %s" % ("rowid, " if with_rowid else "", ", ".join(quote_identifier(c) for c in columns),
                                      quote_identifier(table))
    rows = source.execute(select)
    n = 0
    width = len(columns)
    copy_sql = "COPY %s (%s) FROM STDIN" % (_q(table), ", ".join(_q(c) for c in columns))
    with target.cursor() as cur, cur.copy(copy_sql) as copy:
        for raw in rows:
            rowid = raw[0] if with_rowid else None
            values = raw[1:] if with_rowid else raw
            out = [None] * width
            for i in range(width):
                v = values[i]
                if v is None:
                    continue
                try:
                    out[i] = convert[i](v)
                except _Unconvertible as exc:
                    raise TransferError("table '%s', row %s, column '%s': %s; it is never coerced to NULL: fix the "
                                        "value in the source; nothing was changed" % (
                                            table, _row_label(pk, columns, values, rowid), columns[i], exc)) from None
            sums.add(out)
            copy.write_row([Jsonb(v) if jsonb[i] and v is not None else v for i, v in enumerate(out)]
                           if any(jsonb) else out)
            n += 1
            if n % PROGRESS_ROWS == 0:
                progress("copy", table, n, total, time.perf_counter() - clock)
    seconds = time.perf_counter() - clock
    result.tables[table] = {"rows": n, "checksum": sums.hex, "seconds": round(seconds, 4),
                            "rows_per_second": round(n / seconds) if seconds > 0 else None}
    progress("done", table, n, total, seconds)
    return n


def _set_sequence(conn, table, column, sqlite_seq):
    """Set the identity sequence past both the highest id and SQLite's sqlite_sequence value; the value set."""
    high = conn.execute("SELECT max(%s) FROM %s" % (_q(column), _q(table))).fetchone()[0] or 0
    value = max(high, sqlite_seq or 0)
    if value <= 0:
        return None
    conn.execute("SELECT setval(pg_get_serial_sequence(%s, %s), %s, true)", (_q(table), column, value))
    return value


# --- text ------------------------------------------------------------------------------

def format_result(result):
    lines = ["transferred %s -> %s (PostgreSQL): %d rows in %d tables, one transaction, %.2fs%s" % (
        result.source, result.target, result.rows, len(result.tables), result.timings.get("total", 0.0),
        "; the declaration was applied first" if result.applied_schema else "")]
    for name, t in result.tables.items():
        lines.append("  %-16s %9d rows  %8.2fs  %s rows/s  checksum %s  [ok]" % (
            name, t["rows"], t["seconds"], t["rows_per_second"] if t["rows_per_second"] is not None else "-",
            t["checksum"]))
    for key, value in result.sequences.items():
        if value is not None:
            lines.append("  sequence of %s set to %d" % (key, value))
    for o in result.orphans:
        lines.append("  kept orphans: %s" % describe_orphans(o))
    lines += ["  note: %s" % n for n in result.notes]
    return "\n".join(lines)
