"""`schemagen transfer`: the rows of an SQLite database that matches the declaration, moved into PostgreSQL.

The steps (README, "PostgreSQL", "transfer"):

1. The source is opened read-only and read in one snapshot: `BEGIN`, then every read on that one connection
   (its structure first, which starts the snapshot). Its structure must match the declaration (the rule
   `schemagen validate` uses), else the transfer is refused. Writes made after the snapshot are not moved.
2. On the target everything happens in ONE transaction, under `lock_timeout` (default 5s): the declared tables
   are locked ACCESS EXCLUSIVE; a target holding none of the declaration gets it applied first (pg/apply, inside
   this transaction); one that holds it must match it and its tables must be empty, else refused.
3. Constraint timing: the foreign keys of the declared tables are dropped, then their indexes (primary keys and
   UNIQUE constraints included, each kept as its own definition: pg_get_indexdef, pg_get_constraintdef) and their
   triggers disabled (the source's rows already hold what its triggers wrote). The rows are loaded with COPY
   (in dependency order, although with the keys dropped any order works: a child row may come before its
   parent, as with tasks.parent_task_id); right after a table is loaded and verified, each of its indexes is
   built once from its definition (a duplicate stops the transfer), and each key whose two tables are both
   loaded is added back NOT VALID and VALIDATEd, while one thread already reads the next tables (_ReadAhead over
   _read_all: the server's work on one table overlaps this process's on the next ones). A key that fails to
   validate has its orphans named (table, primary key, missing parent): they stop the transfer, or with
   orphans="not-valid" are kept and that key stays NOT VALID.
4. Identity sequences are set past both the highest id and SQLite's sqlite_sequence value.
5. Verification before COMMIT: per table the row count, and a checksum of what was stored: each row's text
   as PostgreSQL outputs it (every value in its type's text output under DateStyle ISO, extra_float_digits 1,
   bytea_output hex: the settings of the transaction), COPY-escaped and tab-separated, hashed, the hashes summed
   (so neither side's row order matters). The source's side hashes the very lines sent to COPY, chunk by chunk in
   the same pass; the target's side is one aggregate query per table on the server (_checksum_sql), so no row is
   read back, run right after the table's COPY while its pages are in the server's buffers (nothing after the
   COPY writes its rows). The hash (hash_kind): with the server on this machine, PostgreSQL's hashtextextended
   (64 bits), the source's side computed by a second, read-only connection that is sent each chunk again
   (_ServerHasher: the server splits and hashes it far faster than Python, and its own side costs one cheap call
   per row instead of an MD5); with a remote server, MD5 (128 bits), the source's side hashed in this process
   so that the rows cross the network once. At the end the structure
   is validated against the declaration. A mismatch rolls everything back.

Speed: SQLite itself writes the COPY text of the common shapes in the query that reads the rows
(_sqlite_text_expr: integers, text, 0/1, 'YYYY-MM-DD HH:MM:SS[.ffffff]'); a row holding any other shape, or
text that COPY must escape, is read again and converted in Python, as are double precision (float8out's shortest
digits), jsonb, bytea, numeric and date. Binary COPY is not used: the text lines are what both sides hash, and PostgreSQL parses them as fast.
A thread reads the rows ahead (_ReadAhead): a table with a rowid is read READ_BATCH rowids at a time, each batch's
lines joined by SQLite in one aggregate query (_range_batches: one sqlite3_step, done without the GIL, per batch),
so this process only checks the batch's counts, encodes and sends it while SQLite builds the next. The one
thread reads every table in turn, up to READ_AHEAD_BYTES ahead of the COPY, so SQLite reads the next tables while
the server verifies a table, builds its indexes and checks its keys (where before this process sat idle through
those). (Two reader threads on two connections sharing one snapshot were measured too: no faster on the 2 shared
cores, where SQLite's work and the server's already fill both.) printf instead of || to join a line's values was
measured too: printf stops a text at a NUL, and the check that then needs (instr per text column) costs what
printf saves.
For this transaction only, the index builds get maintenance_work_mem INDEX_SORT_MEMORY (never less than the
server's) and the checksum queries the server's parallel workers.

Values are converted by the type mapping (compile/postgresql.py): a value that cannot convert (text or JSON
holding NUL, a non-timestamp in a timestamp column, invalid JSON, text in an integer column, ...) stops the
transfer naming table, row and column; it is never coerced to NULL; so does text that is not UTF-8. jsonb
stores JSON parsed: key order, spacing and duplicate keys (the last one wins) of the source text are not kept;
its numbers are kept exactly (1.0000000000000000001 stays, as numeric holds it). An integer that has no exact
double is refused in a double precision column. Every source table that is not moved (a virtual table, a
table the declaration lacks) is named in the result with why and its row count.
"""
from __future__ import annotations

import collections
import contextlib
import datetime
import decimal
import fractions
import hashlib
import json
import math
import queue
import re
import sqlite3
import threading
import time

import psycopg
from psycopg import errors as pgerrors
from psycopg.copy import QueuedLibpqWriter

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
_md5 = hashlib.md5


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
    if isinstance(v, int) and not isinstance(v, bool):
        if float(v) != v:
            raise _Unconvertible("integer %d has no exact double precision value (it would be rounded to %r)"
                                 % (v, float(v)))
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
        obj = json.loads(v, parse_float=decimal.Decimal, parse_constant=_no_constant)
    except ValueError as exc:
        raise _Unconvertible("invalid JSON %r (%s)" % (_short(v), exc)) from None
    if not _nul_free(obj):
        raise _Unconvertible("JSON holding NUL (\\u0000; jsonb cannot hold it)")
    try:
        jsonb_text(obj).encode("utf-8")
    except UnicodeEncodeError:
        raise _Unconvertible("JSON holding a lone surrogate escape (jsonb cannot hold it)") from None
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


# --- PostgreSQL's own text of a converted value ----------------------------------------
# The verification compares what was stored: the target's side is each value's text output on the server
# (DateStyle ISO, extra_float_digits 1, bytea_output hex, set for the transaction), so the source's side must be
# that same text, computed here (or, for the common shapes, by SQLite in the query that reads the rows).

def pg_float(v):
    """float8out's text (PostgreSQL 12+, extra_float_digits 1: the shortest digits that read back exactly): 1, 0.5,
    1e+15, 1.5e-05, Infinity. repr differs in '1.0', in keeping fixed notation up to 1e16 (float8out: up to 1e15),
    and in a tie: where repr's shortest digits lie exactly halfway to the next double (only at 2**52 and beyond),
    float8out does not take them and gives the shortest that lies strictly closer."""
    r = repr(v)
    if abs(v) < 1e15:  # the common case: repr's notation is float8out's
        return r[:-2] if r[-2:] == ".0" else r
    if r[-1] == "f":  # inf, -inf (SQLite stores no NaN)
        return r[:-3] + "Infinity"
    if _tie(r, v):
        for places in range(1, 17):
            r = "%.*e" % (places, v)
            if float(r) == v and not _tie(r, v):
                break
    mantissa, _, e = r.lstrip("-").partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).rstrip("0")
    exp = len(whole) - 1 + int(e or 0)
    sign = "-" if r[0] == "-" else ""
    if exp < 15:
        return sign + (digits + "0" * (exp + 1 - len(digits)) if len(digits) <= exp + 1
                       else digits[:exp + 1] + "." + digits[exp + 1:])
    return "%s%s%se+%02d" % (sign, digits[0], "." + digits[1:] if len(digits) > 1 else "", exp)


def _tie(text, v):
    """Whether the decimal text lies exactly halfway between v and a neighbouring double."""
    exact, shown = fractions.Fraction(v), fractions.Fraction(text)
    if shown == exact:
        return False
    other = math.nextafter(v, math.inf if shown > exact else -math.inf)
    return shown * 2 == exact + fractions.Fraction(other)


def numeric_text(d):
    """numeric_out's text of a Decimal: fixed notation, the input's scale kept, no negative zero."""
    if not d:
        d = abs(d)
    return format(d, "f")


def _jkey(item):
    b = item[0].encode("utf-8", "surrogatepass")
    return len(b), b


def jsonb_text(obj):
    """jsonb_out's text of parsed JSON: keys ordered by length then bytes (as jsonb stores them), ', ' and ': ',
    numbers as numeric keeps them (exact: 1.0000000000000000001 stays), strings escaped as PostgreSQL does."""
    if isinstance(obj, str):
        return json.dumps(obj, ensure_ascii=False)
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, decimal.Decimal):
        return numeric_text(obj)
    if isinstance(obj, float):  # a float from elsewhere: its exact shortest digits
        return numeric_text(decimal.Decimal(repr(obj)))
    if isinstance(obj, list):
        return "[" + ", ".join([jsonb_text(v) for v in obj]) + "]"
    return "{" + ", ".join([json.dumps(k, ensure_ascii=False) + ": " + jsonb_text(v)
                            for k, v in sorted(obj.items(), key=_jkey)]) + "}"


def _ts_text(v):
    return v.isoformat(sep=" ", timespec="microseconds").rstrip("0").rstrip(".")


def _numeric_text_for(pg_type):
    m = re.match(r"numeric\((\d+)(?:,\s*(\d+))?\)", pg_type)
    if not m:
        return numeric_text
    precision, scale = int(m.group(1)), int(m.group(2) or 0)

    def text(d):
        q = d.quantize(decimal.Decimal(1).scaleb(-scale), context=decimal.Context(prec=1000))
        if q != d:
            raise _Unconvertible("%s would be rounded to %s (%s)" % (d, q, pg_type))
        if q and q.adjusted() >= precision - scale:
            raise _Unconvertible("%s does not fit %s" % (d, pg_type))
        return numeric_text(q)
    return text


def converter(pg_type):
    """(convert SQLite value -> converted value, PostgreSQL's text output of a converted value) for a type."""
    if pg_type == "bigint":
        return _integer, str
    if pg_type == "double precision":
        return _real, pg_float
    if pg_type == "text":
        return _text, str
    if pg_type == "bytea":
        return _bytes, lambda v: "\\x" + v.hex()
    if pg_type == "boolean":
        return _boolean, lambda v: "t" if v else "f"
    if pg_type == TIMESTAMP:
        return _timestamp, _ts_text
    if pg_type == "date":
        return _date, datetime.date.isoformat
    if pg_type == "jsonb":
        return _json, jsonb_text
    if pg_type.startswith("numeric"):
        return _numeric, _numeric_text_for(pg_type)
    raise TransferError("no conversion to PostgreSQL's %s" % pg_type)


def copy_text(pg_type):
    """SQLite value (not None) -> its COPY text: converted, PostgreSQL's text output, COPY-escaped."""
    convert, text = converter(pg_type)
    if pg_type == "double precision":
        return lambda v: pg_float(v if v.__class__ is float else convert(v))
    if pg_type in ("bigint", "boolean", TIMESTAMP, "date") or pg_type.startswith("numeric"):
        return lambda v: text(convert(v))  # no character COPY escapes
    return lambda v: copy_escape(text(convert(v)))


def copy_escape(text):
    """COPY's text format: backslash, tab, newline and carriage return escaped (the rest is taken as it is)."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


# --- SQLite's side of the common shapes, in the query that reads the rows ---------------
# For a type below, SQLite itself writes the COPY text of a value in its common shape (an integer in an integer
# column, text in a text column, 'YYYY-MM-DD HH:MM:SS[.f..ffffff]' in a timestamp column, 0/1); any
# other value makes the expression NULL, and its row goes through the Python conversions above (which convert
# or refuse it by name). PostgreSQL parses the common shapes as exactly what their text says; a value it still
# refuses (30 February) is named by running the Python conversions over that table.

def _sqlite_text_expr(pg_type, q):
    r"""SQLite expression: the COPY text of column q (quoted) in its common shape, '\N' for NULL, else a newline
    (which no plain line holds: the row goes to pass 2)."""
    if pg_type == "bigint":
        return "CASE typeof(%s) WHEN 'integer' THEN CAST(%s AS TEXT) WHEN 'null' THEN '\\N' ELSE char(10) END" % (q, q)
    if pg_type == "text":  # as it is: the row's line is checked for what COPY must escape
        return "CASE typeof(%s) WHEN 'text' THEN %s WHEN 'null' THEN '\\N' ELSE char(10) END" % (q, q)
    if pg_type == "boolean":
        return ("CASE WHEN %s IS NULL THEN '\\N' WHEN typeof(%s) = 'integer' AND %s = 1 THEN 't' "
                "WHEN typeof(%s) = 'integer' AND %s = 0 THEN 'f' ELSE char(10) END" % (q, q, q, q, q))
    if pg_type == TIMESTAMP:
        # 'YYYY-MM-DD HH:MM:SS[.f..ffffff]' goes as it is (the fraction's trailing zeros dropped, as timestamp_out
        # drops them); PostgreSQL parses it, and the verification compares its text output with what was sent: a
        # text it reads otherwise (second 60, 30 February) fails the checksum or the COPY, and _locate then names
        # the row by Python's rules (parse_timestamp), which refuse it
        return ("CASE WHEN Q IS NULL THEN '\\N' WHEN typeof(Q) = 'text' AND substr(Q, 11, 1) = ' ' AND length(Q) = 19 "
                "THEN Q WHEN typeof(Q) = 'text' AND substr(Q, 11, 1) = ' ' AND length(Q) BETWEEN 21 AND 26 AND "
                "substr(Q, 20, 1) = '.' THEN rtrim(rtrim(Q, '0'), '.') ELSE char(10) END").replace("Q", q)
    return None


def _sqlite_line(exprs):
    """SQLite expression: the expressions' values joined by tabs. With ||, which keeps a NUL inside a text (so the
    chunk's NUL check sees it); printf would be cheaper but stops a text at its NUL."""
    return " || '\t' || ".join(exprs) or "''"  # a tab literal: cheaper than char(9), a call per row


# --- PostgreSQL's side: the same text, hashed on the server ------------------------------

def _pg_text_expr(pg_type, q):
    r"""PostgreSQL expression: the COPY text of column q as stored ('\N' for NULL), as the source's side writes it."""
    if pg_type == "text":
        return ("coalesce(replace(replace(replace(replace(%s, '\\', '\\\\'), E'\\t', '\\t'), E'\\n', '\\n'), "
                "E'\\r', '\\r'), '\\N')" % q)
    if pg_type in ("jsonb", "bytea"):  # jsonb's text escapes control characters; bytea's starts with a backslash
        return "coalesce(replace(%s::text, '\\', '\\\\'), '\\N')" % q
    if pg_type == "boolean":  # boolean::text is 'true', boolout's COPY text 't'
        return "CASE WHEN %s THEN 't' WHEN NOT %s THEN 'f' ELSE '\\N' END" % (q, q)
    return "coalesce(%s::text, '\\N')" % q


def _row_text_sql(columns, types):
    """PostgreSQL expression: a stored row's COPY text, as the source's side sent it (C collation: bytes)."""
    return "(%s) COLLATE \"C\"" % " || E'\\t' || ".join(_pg_text_expr(t, _q(c)) for c, t in zip(columns, types))


def _checksum_sql(table, columns, types, utf8, kind=None):
    row = _row_text_sql(columns, types)
    if kind == SERVER_HASH:
        # one hashtextextended per row, summed: each worker sums its share (no subquery: the row text once)
        return "SELECT count(*), sum(hashtextextended(%s, 0)) FROM %s" % (row, _q(table))
    digest = "md5(%s)" % row if utf8 else "md5(convert_to(%s, 'UTF8'))" % row
    # each MD5 as two signed 64-bit halves (a bigint sums fast); a negative half is its unsigned value less 2**64,
    # given back by counting them (_target_checksum). OFFSET 0 keeps each subquery apart: pulled up, the md5 and
    # the halves would be computed once per reference
    return ("SELECT count(*), sum(a), sum(b), count(*) FILTER (WHERE a < 0), count(*) FILTER (WHERE b < 0) FROM "
            "(SELECT ('x' || substr(h, 1, 16))::bit(64)::bigint AS a, ('x' || substr(h, 17, 16))::bit(64)::bigint "
            "AS b FROM (SELECT %s AS h FROM %s OFFSET 0) r OFFSET 0) r2" % (digest, _q(table)))


MD5_HASH = "md5"
SERVER_HASH = "hashtextextended"
# the source's side of SERVER_HASH: the lines of a chunk exactly as sent to COPY (a chunk ends with its newline, so
# the split gives one empty string more, taken off), each hashed by the same function as the target's side
_HASH_LINES_SQL = ("SELECT count(*) - 1, sum(hashtextextended(l, 0)) - hashtextextended('', 0) FROM "
                   "unnest(string_to_array(convert_from(%b, 'UTF8') COLLATE \"C\", E'\\n')) l")


def hash_kind(conn):
    """How rows are hashed for the verification: SERVER_HASH when the server is on this machine (a unix socket or
    a loopback address): the COPY text is sent a second time, on a second connection that hashes it (so this
    process hashes nothing and the server's side is one cheap function per row); else MD5_HASH, hashed here
    (the text crosses the network once)."""
    info = conn.info
    host = info.host or ""
    if host.startswith("/") or host.startswith("@") or host in ("localhost",):
        return SERVER_HASH
    try:
        addr = info.hostaddr or host
    except Exception:  # noqa: BLE001 - libpq before 12 cannot say (psycopg's NotSupportedError): the name decides
        addr = host
    return SERVER_HASH if addr in ("127.0.0.1", "::1") or addr.startswith("127.") else MD5_HASH


class Checksum:
    """Count and an order-independent checksum of rows: the sum of each row's hash over its COPY text (every value
    as PostgreSQL's text output, COPY-escaped, tab-separated, NULL as \\N): its 128-bit MD5 summed modulo 2**128
    (MD5_HASH), or its 64-bit hashtextextended summed modulo 2**64 (SERVER_HASH)."""

    __slots__ = ("rows", "total", "bits")

    def __init__(self, rows=0, total=0, bits=CHECKSUM_BITS):
        self.rows = rows
        self.total = total
        self.bits = bits

    @property
    def hex(self):
        return "%0*x" % (self.bits // 4, self.total % (1 << self.bits))


class _LocalHasher:
    """MD5_HASH's source side: each line of a chunk hashed in this process."""

    kind = MD5_HASH

    def __init__(self):
        self._sums = Checksum()

    def add(self, chunk):
        md5, from_bytes = _md5, int.from_bytes
        lines = chunk[:-1].split(b"\n")
        self._sums.total += sum([from_bytes(md5(line).digest(), "big") for line in lines])
        self._sums.rows += len(lines)

    def finish(self):
        """The Checksum of the chunks added since the last finish."""
        sums, self._sums = self._sums, Checksum()
        return sums

    def close(self):
        pass


class _ServerHasher:
    """SERVER_HASH's source side: a thread sends each chunk of COPY text, as sent, to a second connection that
    counts and hashes its lines (_HASH_LINES_SQL); at most COPY_QUEUE chunks wait. The connection only reads."""

    kind = SERVER_HASH

    def __init__(self, url):
        self._conn = pg_apply.connect(url)
        self._queue = queue.Queue(maxsize=COPY_QUEUE)
        self._rows, self._sum, self._error = 0, 0, None
        self._thread = threading.Thread(target=self._run, name="schemagen-transfer-hash", daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            chunk = self._queue.get()
            try:
                if chunk is None:
                    return
                if self._error is None:
                    rows, total = self._conn.execute(_HASH_LINES_SQL, (chunk,)).fetchone()
                    self._rows += rows
                    self._sum += int(total)
            except BaseException as exc:  # noqa: B902 - raised in the caller's thread by finish()
                self._error = exc
            finally:
                self._queue.task_done()

    def add(self, chunk):
        if self._error is None:
            self._queue.put(chunk)

    def finish(self):
        """The Checksum of the chunks added since the last finish; a failed hashing query raised here
        (psycopg.DataError for text that is not UTF-8)."""
        self._queue.join()
        if self._error is not None:
            raise self._error
        sums = Checksum(self._rows, self._sum, 64)
        self._rows, self._sum = 0, 0
        return sums

    def close(self):
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._conn.close()


# --- the result --------------------------------------------------------------------

class TransferResult:
    __slots__ = ("source", "target", "applied_schema", "tables", "orphans", "not_valid", "sequences", "timings",
                 "notes", "not_moved")

    def __init__(self, source, target):
        self.source, self.target = source, target
        self.applied_schema = False
        self.tables = {}      # name -> {rows, source_checksum, target_checksum, seconds, rows_per_second}
        self.orphans = []     # {table, constraint, parent, count, examples}
        self.not_valid = []   # "table.constraint" left NOT VALID (orphans="not-valid")
        self.sequences = {}   # "table.column" -> the value set
        self.timings = {}
        self.notes = [SNAPSHOT_NOTE]
        self.not_moved = []   # {table, reason, rows}: every source table left behind

    @property
    def rows(self):
        return sum(t["rows"] for t in self.tables.values())

    def as_dict(self):
        return {"source": self.source, "target": self.target, "dialect": "postgresql",
                "applied_schema": self.applied_schema, "rows": self.rows, "tables": self.tables,
                "orphans": self.orphans, "not_valid": self.not_valid, "not_moved": self.not_moved,
                "rows_not_moved": sum(t["rows"] or 0 for t in self.not_moved), "sequences": self.sequences,
                "seconds": {k: round(v, 4) for k, v in self.timings.items()}, "notes": self.notes,
                "checksum": "a hash per row of its COPY text (each value as PostgreSQL's text output), summed "
                            "(order-independent): hashtextextended mod 2**64 (16 hex digits) with a local server, "
                            "md5 mod 2**128 (32) with a remote one; the target's side computed on the server"}


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
    extras = [m for k, m in diffs if k == "extra" and not m.startswith("extra table ")
              and not re.match(r"\d+ tables beyond", m)]
    declared = {n.lower() for n in sqlite_structure["tables"]}
    undeclared = sorted(n for n in actual["tables"] if n.lower() not in declared)
    return tables, extras, undeclared


def _not_moved(conn, sqlite_structure, compiled, undeclared):
    """Every table of the source that is not moved, why, and its rows (None when SQLite cannot count them, such as
    a virtual table whose module this SQLite lacks)."""
    with_body = {s["name"].lower() for s in compiled["statements"] if s["kind"] == "virtual table"}
    out = []
    for name in sorted(sqlite_structure.get("virtual_tables") or {}):
        out.append((name, "a virtual table: its PostgreSQL counterpart is created by the declaration, its content is "
                    "not moved (rebuild it there)" if name.lower() in with_body else
                    "a virtual table declared sqlite_only: left out on PostgreSQL"))
    out += [(name, "not in the declaration") for name in undeclared]
    rows = []
    for name, why in out:
        try:
            count = conn.execute("SELECT count(*) FROM %s" % quote_identifier(name)).fetchone()[0]
        except sqlite3.Error:
            count = None
        rows.append({"table": name, "reason": why, "rows": count})
    return rows


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

_q = quote_identifier  # the one quoter: a quoted identifier doubles its '"' on both engines


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
    """The target's Checksum of table (columns in copy order), computed on the server over the same text the source's
    side hashed: by hash_kind, one hashtextextended per row summed, or one MD5 per row summed in two 64-bit halves."""
    utf8 = conn.execute("SHOW server_encoding").fetchone()[0].upper() in ("UTF8", "UTF-8")
    if hash_kind(conn) == SERVER_HASH:
        rows, total = conn.execute(_checksum_sql(table, columns, types, utf8, SERVER_HASH)).fetchone()
        return Checksum(rows, int(total or 0), 64)
    rows, high, low, _high_negative, low_negative = conn.execute(_checksum_sql(table, columns, types, utf8)).fetchone()
    # sum of unsigned halves = sum of signed + 2**64 per negative; the high half's carry (2**128) drops out
    total = ((int(high or 0) << 64) + int(low or 0) + (int(low_negative) << 64)) % (1 << CHECKSUM_BITS)
    return Checksum(rows, total)


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
    source = open_existing(sqlite_path, "ro", check_same_thread=False)  # read ahead by a thread: _ReadAhead
    try:
        source.execute("BEGIN")  # the snapshot: every read below is in this one read transaction
        tables, extras, undeclared = _source_plan(source, sqlite_structure, compiled)
        if extras:
            result.notes.append("not moved, the declaration lacks it: %s" % "; ".join(extras))
        result.not_moved = _not_moved(source, sqlite_structure, compiled, undeclared)
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


def _deferred_indexes(conn, tables):
    """The indexes on the declared tables that no foreign key needs (run after the keys are dropped):
    (table, index, CREATE INDEX statement, constraint name or None, constraint definition or None)."""
    return conn.execute(
        "SELECT c.relname, i.relname, pg_get_indexdef(x.indexrelid), k.conname, pg_get_constraintdef(k.oid) "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid "
        "LEFT JOIN pg_constraint k ON k.conindid = x.indexrelid AND k.conrelid = x.indrelid AND k.contype IN ('p', 'u', 'x') "
        "WHERE c.relnamespace = %s AND c.relname = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = x.indexrelid) "
        "ORDER BY c.relname, i.relname", (catalog.current_namespace(conn), list(tables))).fetchall()


def _run(source, target, url, compiled, tables, sequences, orphans, lock_timeout, progress, result):
    database = result.target
    names = [t[0] for t in tables]
    table = None
    try:
        with target.transaction():
            target.execute("SELECT set_config('lock_timeout', %s, true)", (str(lock_timeout or "0"),))
            # the text the verification compares is the server's output: one setting of each, for this transaction
            for name, value in (("DateStyle", "ISO, YMD"), ("extra_float_digits", "1"), ("bytea_output", "hex"),
                                ("client_encoding", "UTF8")):
                target.execute("SELECT set_config(%s, %s, true)", (name, value))
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
            # the rows are loaded without the indexes (primary keys and UNIQUE constraints too) and each index is
            # built once afterwards from its own definition, as pg_dump's output does; a duplicate stops the
            # transfer when its index is built
            indexes = _deferred_indexes(target, names)
            for tname, iname, _definition, cname, _cdef in indexes:
                if cname:
                    target.execute("ALTER TABLE %s DROP CONSTRAINT %s" % (_q(tname), _q(cname)))
                else:
                    target.execute("DROP INDEX %s" % _q(iname))
            # the source's rows already hold what its triggers wrote: the target's own triggers (a last_update
            # stamp, say) must not rewrite them while they are loaded; enabled again before COMMIT
            triggered = [r[0] for r in target.execute(
                "SELECT DISTINCT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace AND c.relname = ANY(%s) "
                "ORDER BY 1", (names,))]
            for name in triggered:
                target.execute("ALTER TABLE %s DISABLE TRIGGER USER" % _q(name))
            result.timings["prepare"] = time.perf_counter() - clock
            clock = time.perf_counter()
            # the checksum query hashes every row: worth the parallel workers the server has (the planner's
            # default costs see one cheap function per row and scan alone), for this transaction only
            for name in ("parallel_setup_cost", "parallel_tuple_cost"):
                target.execute("SELECT set_config(%s, '0', true)", (name,))
            pks = {t[0]: t[3] for t in tables}
            # each index is sorted in memory where the server's setting allows it, and by parallel workers
            # where the server has them (PostgreSQL gives each worker a share of at least 32 MB, so its default
            # 64 MB allows one): for this transaction only, never below what the server has
            target.execute("SELECT set_config('maintenance_work_mem', %s, true) WHERE pg_size_bytes("
                           "current_setting('maintenance_work_mem')) < pg_size_bytes(%s)",
                           (INDEX_SORT_MEMORY, INDEX_SORT_MEMORY))
            # primary keys and UNIQUE constraints first (the foreign keys' checks use them), per table
            by_table = {}
            for ix in sorted(indexes, key=lambda ix: ix[3] is None):
                by_table.setdefault(ix[0], []).append(ix)
            spent = {"copy": 0.0, "verify": 0.0, "indexes": 0.0, "foreign_keys": 0.0}
            broken, waiting, loaded = [], list(fks), set()

            def add_key(fk):
                nonlocal table
                table = fk[0]
                target.execute("ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID" % (_q(fk[0]), _q(fk[1]), fk[2]))
                try:
                    with target.transaction():  # a savepoint: a failed VALIDATE leaves the key NOT VALID
                        target.execute("ALTER TABLE %s VALIDATE CONSTRAINT %s" % (_q(fk[0]), _q(fk[1])))
                except pgerrors.ForeignKeyViolation:
                    broken.append(fk)
            # one thread reads every table, ahead of the COPY by up to READ_AHEAD_BYTES: while the server verifies
            # a table and builds its indexes, SQLite already reads the next ones
            plans = [_plan_read(source, *t[:3]) for t in tables]
            hasher = _ServerHasher(url) if hash_kind(target) == SERVER_HASH else _LocalHasher()
            reader = _ReadAhead(_read_all(source, plans))
            try:
                for read, (table, columns, types, pk, identity) in zip(plans, tables):
                    clock = time.perf_counter()
                    columns, types, _sums = _copy_table(source, target, read, reader, pk, progress, result, hasher)
                    spent["copy"] += time.perf_counter() - clock
                    clock = time.perf_counter()
                    # verified at once, while its pages are still in the server's buffers (at 1M rows a table no
                    # longer fits them by the end of the load): nothing after the COPY writes its rows (the index
                    # builds, the foreign key checks and the sequences read them; its triggers are off until then)
                    _verify_table(source, target, table, columns, types, pks[table], result.tables[table],
                                  before_locate=reader.close)
                    spent["verify"] += time.perf_counter() - clock
                    clock = time.perf_counter()
                    # each index built once from its definition right after its table is loaded (a duplicate
                    # stops the transfer), while the next tables are read
                    for tname, iname, definition, cname, cdef in by_table.pop(table, ()):
                        if cname:
                            target.execute("ALTER TABLE %s ADD CONSTRAINT %s %s" % (_q(tname), _q(cname), cdef))
                        else:
                            target.execute(definition)
                    spent["indexes"] += time.perf_counter() - clock
                    clock = time.perf_counter()
                    # each foreign key added back NOT VALID and VALIDATEd once its table and its parent are loaded
                    # and indexed (neither gets a row after that), while the next tables are read
                    loaded.add(table)
                    for fk in [fk for fk in waiting if fk[0] in loaded and fk[4] in loaded]:
                        waiting.remove(fk)
                        add_key(fk)
                    table = None
                    spent["foreign_keys"] += time.perf_counter() - clock
            finally:
                reader.close()
                hasher.close()
            table = None
            verifying = spent["verify"]
            result.timings["copy"] = spent["copy"]
            for name in triggered:
                target.execute("ALTER TABLE %s ENABLE TRIGGER USER" % _q(name))
            result.timings["indexes"] = spent["indexes"]
            clock = time.perf_counter()
            progress("phase", "checking foreign keys")
            for fk in waiting:  # a key whose parent is not a declared table
                add_key(fk)
            broken.sort(key=fks.index)
            result.timings["foreign_keys"] = spent["foreign_keys"] + time.perf_counter() - clock
            clock = time.perf_counter()
            found = [o for o in (_orphans(target, fk, pks.get(fk[0])) for fk in broken) if o]
            if len(found) != len(broken):
                raise TransferError("%s: a foreign key failed to validate but no orphan was found; rolled back, "
                                    "nothing was changed" % database)
            result.orphans = found
            if found and orphans == "refuse":
                raise TransferError("the source holds rows that break a foreign key (orphans); nothing was changed "
                                    "(--orphans=not-valid keeps them and leaves that key NOT VALID): %s" % (
                                        "; ".join(describe_orphans(o) for o in found)))
            result.not_valid = ["%s.%s" % (fk[0], fk[1]) for fk in broken]
            if result.not_valid:
                result.notes.append("kept orphans: foreign key%s %s left NOT VALID (existing rows unchecked, new rows "
                                    "checked)" % ("" if len(result.not_valid) == 1 else "s", ", ".join(result.not_valid)))
            result.timings["foreign_keys"] += time.perf_counter() - clock
            clock = time.perf_counter()
            for table, columns, types, pk, identity in tables:
                for column in identity:
                    result.sequences["%s.%s" % (table, column)] = _set_sequence(
                        target, table, column, sequences.get(table.lower()))
            table = None
            result.timings["sequences"] = time.perf_counter() - clock
            clock = time.perf_counter()
            progress("phase", "verifying the structure")
            report = pg_apply.check(target, compiled, database)
            if not report["ok"]:
                raise TransferError("%s: after the load the structure does not match the declaration (%s); rolled "
                                    "back, nothing was changed" % (database, "; ".join(report["differences"][:3])))
            result.timings["verify"] = verifying + time.perf_counter() - clock
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


def _verify_table(source, target, table, columns, types, pk, info, before_locate=None):
    """Count and checksum what the target stored of table against what was sent (info: its result entry);
    a mismatch names the first row Python's rules refuse, else the table, and rolls back. before_locate: called
    before the source is read again (it stops the next table's read-ahead)."""
    sums = _target_checksum(target, table, columns, types)
    info["target_rows"], info["target_checksum"] = sums.rows, sums.hex
    if (sums.rows, sums.hex) != (info["rows"], info["checksum"]):
        if before_locate is not None:
            before_locate()
        _locate(source, table, columns, types, pk)
        raise TransferError("table '%s': verification failed: the source has %d rows (checksum %s), the target %d "
                            "(checksum %s); rolled back, nothing was changed" % (
                                table, info["rows"], info["checksum"], sums.rows, sums.hex))


def _one_line(text):
    return " ".join(str(text).split())


COPY_CHUNK = 1 << 20  # bytes sent to COPY at a time
COPY_QUEUE = 4        # chunks waiting to be sent (memory: COPY_QUEUE * COPY_CHUNK)
READ_BATCH = 2000     # rows fetched from SQLite at a time
READ_AHEAD_BYTES = 16 << 20  # text read ahead of the COPY (memory: a little more than this)
INDEX_SORT_MEMORY = "256MB"  # maintenance_work_mem while the deferred indexes are built (server memory)


def copy_order(columns, types):
    """The columns in the order they are sent: those SQLite writes the text of first, then those converted in
    Python (double precision, jsonb, numeric, date). COPY names its columns, so any order loads the same rows."""
    fast = [(c, t) for c, t in zip(columns, types) if _sqlite_text_expr(t, "x") is not None]
    slow = [(c, t) for c, t in zip(columns, types) if _sqlite_text_expr(t, "x") is None]
    return [c for c, _ in fast + slow], [t for _, t in fast + slow], len(fast)


def _source_rows(source, sql, args=()):
    """The rows of a query, or None at a text value that is not UTF-8 (the caller names it)."""
    cur = source.execute(sql, args)
    while True:
        try:
            batch = cur.fetchmany(2000)
        except sqlite3.OperationalError as exc:
            if "decode" in str(exc) or "UTF-8" in str(exc):
                yield None
                return
            raise
        if not batch:
            return
        yield from batch


def _locate(source, table, columns, types, pk):
    """Raise the TransferError naming the first row and column of table whose value cannot convert (converting
    every value in Python, text read as bytes so text that is not UTF-8 is named too); return if none is found."""
    pairs = [converter(t) for t in types]
    with_rowid = not pk
    select = "SELECT %s%s FROM %s" % ("rowid, " if with_rowid else "", ", ".join(
        "typeof(%s), CASE typeof(%s) WHEN 'text' THEN CAST(%s AS BLOB) ELSE %s END" % ((quote_identifier(c),) * 4)
        for c in columns), quote_identifier(table))
    for raw in source.execute(select):
        rowid = raw[0] if with_rowid else None
        flat = raw[1:] if with_rowid else raw
        kinds, values = flat[0::2], list(flat[1::2])
        bad = None
        for i, kind in enumerate(kinds):
            if kind == "text":
                try:
                    values[i] = values[i].decode("utf-8")
                except UnicodeDecodeError as exc:
                    values[i] = values[i].decode("utf-8", "replace")
                    bad = bad or (i, "text that is not valid UTF-8 (byte 0x%02x at offset %d)" % (
                        exc.object[exc.start], exc.start))
        if bad is None:
            for i, v in enumerate(values):
                if v is None:
                    continue
                try:
                    pairs[i][1](pairs[i][0](v))
                except _Unconvertible as exc:
                    bad = (i, str(exc))
                    break
        if bad is not None:
            raise TransferError("table '%s', row %s, column '%s': %s; it is never coerced to NULL: fix the value in the "
                                "source; nothing was changed" % (
                                    table, _row_label(pk, columns, values, rowid), columns[bad[0]], bad[1]))


def _line(values, pairs):
    out = []
    for v, (convert, text) in zip(values, pairs):
        out.append("\\N" if v is None else copy_escape(text(convert(v))))
    return "\t".join(out)


def _writer(cursor):
    """A COPY writer whose sending runs in a thread (psycopg's QueuedLibpqWriter), with at most COPY_QUEUE chunks
    waiting: this process reads SQLite and hashes the next chunk while the server parses the last one. (The
    default writer sends in this thread, and a send blocks until the server has read most of the chunk.)"""
    writer = QueuedLibpqWriter(cursor)
    # psycopg's default queue holds 1024 chunks: up to 1 GB here. The queue is psycopg's private attribute: where
    # a psycopg has none (another version), the writer keeps its own queue, which costs memory, not correctness.
    if isinstance(getattr(writer, "_queue", None), queue.Queue):
        writer._queue = queue.Queue(maxsize=COPY_QUEUE)
    return writer


class _ReadAhead:
    """Batches read from the source by a thread while the caller sends the batches before them: each item is
    (text, rows, slow) for a block of plain lines that SQLite joined (_range_batches), or (None, rows, None) for a
    list of rows to check one by one; (None, [], None) after the last. SQLite does its work inside sqlite3_step, which runs
    without the GIL, so that work overlaps this process's and the server's, as the floor's sqlite3 process runs
    beside psql (on one core it simply takes turns). At most READ_AHEAD_BYTES of text wait (one batch at least):
    enough to hold a whole table of the common sizes, read while the server verifies the table before it and
    builds that table's indexes (_run). The thread alone uses the connection until close(), which the caller calls
    before it touches the connection again (close waits for the thread)."""

    def __init__(self, items):
        self._items = items
        self._waiting = collections.deque()
        self._held = 0  # text held by the waiting items (their _size)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._using = threading.Lock()  # held by the thread while it reads: paused() takes it
        self._thread = threading.Thread(target=self._read, name="schemagen-transfer-read", daemon=True)
        self._thread.start()

    def _read(self):
        items = iter(self._items)
        try:
            while True:
                while not self._using.acquire(timeout=0.05):
                    if self._stop.is_set():
                        return
                try:
                    if self._stop.is_set():
                        return
                    item = next(items, None)
                finally:
                    self._using.release()
                if item is None:
                    return
                self._put(item, _size(item))
        except BaseException as exc:  # noqa: B902 - handed to the caller, which raises it in its own thread
            self._put(exc, 0)

    @contextlib.contextmanager
    def paused(self):
        """The caller uses the connection meanwhile: the thread waits before its next read."""
        with self._using:
            yield

    def _put(self, item, size):
        with self._cond:
            while self._held and self._held + size > READ_AHEAD_BYTES and not self._stop.is_set():
                self._cond.wait(0.05)
            self._waiting.append((item, size))
            self._held += size
            self._cond.notify_all()

    def next_batch(self):
        """The next item; (None, [], None) after the last; the reader's error raised here."""
        with self._cond:
            while not self._waiting:
                if not self._thread.is_alive():  # never: the thread hands over each table's end, or its error
                    raise TransferError("the source's reading thread stopped early; nothing was changed")
                self._cond.wait(0.5)
            item, size = self._waiting.popleft()
            self._held -= size
            self._cond.notify_all()
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self):
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join()


def _size(item):
    """About how many bytes an item of _ReadAhead holds: its text, or its rows' lines and values."""
    block, rows, slow = item
    if block is not None:
        return len(block) + (64 * len(slow) * len(slow[0]) if slow else 0)
    values = 64 * len(rows) * (len(rows[0]) if rows else 0)
    return values + sum(len(r[0]) if r and r[0].__class__ is str else 64 for r in rows)


_ROWID_ALIASES = ("rowid", "_rowid_", "oid")
_FIRST_ROWID = -(1 << 63)


def _rowid_alias(source, table, columns):
    """A name that reads table's rowid (one its columns do not shadow), or None: a WITHOUT ROWID table, or SQLite
    too old to say (pragma_table_list, 3.37)."""
    try:
        row = source.execute("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?", (table,)).fetchone()
    except sqlite3.Error:
        return None
    if row is None or row[0]:
        return None
    names = {c.lower() for c in columns}
    return next((a for a in _ROWID_ALIASES if a not in names), None)


def _range_batches(source, table, rowid, line_sql, nulls_sql, tabs, slow_cols=""):
    """The table's rows READ_BATCH at a time in rowid order, each batch joined by SQLite in one aggregate query
    (one sqlite3_step, without the GIL, instead of one per row): (block, rows, slow) when every line of the batch is
    plain (the rule of _clean_block, told from the aggregate's counts), else (None, the batch's rows, None) to be
    checked one by one, read again by their rowids. slow_cols (", a, b"): the columns converted in Python, read by
    a second query over the same rowids (slow: their rows); the rowids the aggregate joined must be those, in the
    same order, else the batch goes row by row: a value never lands in another row's line."""
    qt = quote_identifier(table)
    joined = ("SELECT group_concat(l, char(10)), count(*), sum(n), max(r)%s FROM (SELECT %s AS l, %s AS n, %s AS r "
              "FROM %s WHERE %s >= ? ORDER BY %s LIMIT %d)" % (", group_concat(r)" if slow_cols else "", line_sql,
                                                                 nulls_sql, rowid, qt, rowid, rowid, READ_BATCH))
    between = "FROM %s WHERE %s BETWEEN ? AND ? ORDER BY %s" % (qt, rowid, rowid)
    rows = "SELECT %s, %s%s %s" % (line_sql, nulls_sql, slow_cols, between)
    slow_sql = "SELECT %s%s %s" % (rowid, slow_cols, between)
    low = _FIRST_ROWID
    while True:
        found = source.execute(joined, (low,)).fetchone()
        block, n, nulls, high = found[:4]
        if not n:
            yield None, [], None
            return
        slow = None
        if block is not None and block.count("\t") == tabs * n and block.count("\n") == n - 1 and "\r" not in block \
                and block.count("\\") == nulls:
            if slow_cols:
                slow = source.execute(slow_sql, (low, high)).fetchall()
                if found[4] != ",".join([str(r[0]) for r in slow]):
                    block = None
                else:
                    slow = [r[1:] for r in slow]
        else:
            block = None
        if block is not None:
            yield block, n, slow
        else:
            yield None, source.execute(rows, (low, high)).fetchall(), None
        if high >= (1 << 63) - 1:
            yield None, [], None
            return
        low = high + 1


def _clean_block(batch, tabs):
    r"""The lines of a batch joined by newlines, when every one of them is a plain line; else None.

    The per-row rule (_copy_table) is: not NULL, exactly `tabs` tabs, as many backslashes as the row has NULLs,
    no newline or carriage return. Every line SQLite writes has at least its separators' tabs and its NULLs'
    backslashes, so the totals over the batch equal the sums of those minimums only when each line has exactly
    them; the newlines joining the lines are counted likewise."""
    lines = [row[0] for row in batch]
    if None in lines:
        return None
    block = "\n".join(lines)
    if block.count("\t") != tabs * len(lines) or block.count("\n") != len(lines) - 1 or "\r" in block \
            or block.count("\\") != sum(row[1] for row in batch):
        return None
    return block


_ESCAPED = "'*[' || char(92, 9, 10, 13) || ']*'"  # GLOB: text holding what COPY's text format escapes


class _Read:
    """One table's read (_plan_read): its count and the queries of both passes (_copy_table)."""

    __slots__ = ("table", "columns", "types", "n_fast", "total", "line_sql", "nulls_sql", "pass2", "slow_text",
                 "slow_cols", "tabs", "rowid")

    def items(self, source):
        """The table's batches, as _ReadAhead hands them over, ending with (None, [], None)."""
        if self.rowid is not None:  # SQLite joins each batch's lines (see _range_batches)
            return _range_batches(source, self.table, self.rowid, self.line_sql, self.nulls_sql, self.tabs,
                                  self.slow_cols)
        return _batches(source.execute("SELECT %s, %s%s FROM %s" % (self.line_sql, self.nulls_sql, self.slow_cols,
                                                                    quote_identifier(self.table))))


def _batches(cursor):
    """The rows of a query, READ_BATCH at a time, as _ReadAhead hands them over."""
    while True:
        batch = cursor.fetchmany(READ_BATCH)
        yield None, batch, None
        if not batch:
            return


def _plan_read(source, table, columns, types):
    """How table is read (a _Read), asked of the source before any table is read: its count, its rowid."""
    r = _Read()
    r.table = table
    r.total = source.execute("SELECT count(*) FROM %s" % quote_identifier(table)).fetchone()[0]
    r.columns, r.types, n_fast = copy_order(columns, types)
    r.n_fast = n_fast
    fast = [quote_identifier(c) for c in r.columns[:n_fast]]
    r.line_sql = line_sql = _sqlite_line([_sqlite_text_expr(t, c) for c, t in zip(fast, r.types[:n_fast])])
    r.nulls_sql = " + ".join("(%s IS NULL)" % c for c in fast) or "0"
    texts = [c for c, t in zip(fast, r.types[:n_fast]) if t in ("text", TIMESTAMP)]  # sent as SQLite holds them
    r.pass2 = "instr(%s, char(10))" % line_sql + (" OR (%s) GLOB %s" % (
        " || ".join("coalesce(%s, '')" % c for c in texts), _ESCAPED) if texts else "")
    r.slow_text = [copy_text(t) for t in r.types[n_fast:]]
    r.slow_cols = "".join(", " + quote_identifier(c) for c in r.columns[n_fast:])
    r.tabs = n_fast - 1
    r.rowid = _rowid_alias(source, table, r.columns) if n_fast else None
    return r


def _read_all(source, reads):
    """Every table's batches, one table after the other (one thread reads them all: _ReadAhead)."""
    for r in reads:
        yield from r.items(source)


def _copy_table(source, target, read, reader, pk, progress, result, hasher):
    r"""COPY the table's rows (columns in copy_order); the Checksum of what was sent (hasher's, chunk by chunk, in the
    same pass: _LocalHasher or _ServerHasher).

    Pass 1: SQLite writes each row's line from the common shapes (_sqlite_text_expr), text as it is; a line whose
    text holds a tab, newline, carriage return or backslash (told by counting them: the only backslashes of a
    plain line are its NULLs' \N) or a value in another shape (written as a newline) is left for pass 2, which reads those
    rows again with the same condition and converts every value in Python. double precision, jsonb, bytea,
    numeric and date are converted in Python in pass 1."""
    clock = time.perf_counter()
    table, columns, types, n_fast, total = read.table, read.columns, read.types, read.n_fast, read.total
    pass2, slow_text, tabs = read.pass2, read.slow_text, read.tabs
    progress("table", table, 0, total, 0.0)
    qt = quote_identifier(table)
    copy_sql = "COPY %s (%s) FROM STDIN" % (_q(table), ", ".join(_q(c) for c in columns))
    skipped = 0
    sent = 0

    def failed(detail):
        reader.close()  # _locate reads the source: the read-ahead thread stops first
        _locate(source, table, columns, types, pk)
        raise TransferError("table '%s': %s; nothing was changed" % (table, detail))

    try:
        with target.cursor() as cur, cur.copy(copy_sql, writer=_writer(cur)) as copy:
            buf, size, pending = [], 0, 0

            def flush():
                nonlocal buf, size, pending, sent
                chunk = b"\n".join(buf) + b"\n"
                if b"\0" in chunk:
                    failed("a value holds NUL")
                copy.write(chunk)
                hasher.add(chunk)
                sent += pending
                buf, size, pending = [], 0, 0

            try:
                while True:
                    try:
                        block, batch, slow = reader.next_batch()
                    except sqlite3.OperationalError as exc:
                        if "decode" in str(exc) or "UTF-8" in str(exc):
                            failed("a value could not be read")
                        raise
                    if block is not None:  # joined and checked by SQLite's aggregate: batch is its row count
                        if slow_text:  # the Python columns converted column by column, joined to the lines
                            try:
                                tails = [["\\N" if v is None else f(v) for v in values]
                                         for values, f in zip(zip(*slow), slow_text)]
                            except _Unconvertible as exc:
                                failed(str(exc))
                            block = "\n".join(map("\t".join, zip(block.split("\n"), *tails)))
                        try:
                            data = block.encode("utf-8")
                        except UnicodeEncodeError:
                            failed("a value is not valid UTF-8")
                        buf.append(data)
                        size += len(data)
                        pending += batch
                        if size >= COPY_CHUNK or pending >= PROGRESS_ROWS:
                            flush()
                            progress("copy", table, sent, total, time.perf_counter() - clock)
                        continue
                    if not batch:
                        break
                    block = _clean_block(batch, tabs) if n_fast else None
                    if block is not None and slow_text:  # the Python columns converted column by column
                        try:
                            tails = [["\\N" if v is None else f(v) for v in values]
                                     for values, f in zip(list(zip(*batch))[2:], slow_text)]
                        except _Unconvertible:
                            block = None  # the row-by-row path below names the value
                        else:
                            block = "\n".join(map("\t".join, zip(block.split("\n"), *tails)))
                    if block is not None:  # the common case: the batch's lines go as SQLite wrote them
                        try:
                            data = block.encode("utf-8")
                        except UnicodeEncodeError:
                            failed("a value is not valid UTF-8")
                        buf.append(data)
                        size += len(data)
                        pending += len(batch)
                    else:
                        for row in batch:
                            line = row[0]
                            if line is None or line.count("\\") != row[1] or line.count("\t") != tabs or "\n" in line \
                                    or "\r" in line:
                                skipped += 1  # read again in pass 2
                                continue
                            if slow_text:
                                try:
                                    tail = ["\\N" if v is None else f(v) for v, f in zip(row[2:], slow_text)]
                                except _Unconvertible as exc:
                                    failed(str(exc))
                                line = line + "\t" + "\t".join(tail) if n_fast else "\t".join(tail)
                            try:
                                data = line.encode("utf-8")
                            except UnicodeEncodeError:
                                failed("a value is not valid UTF-8")
                            buf.append(data)
                            size += len(data)
                            pending += 1
                    if size >= COPY_CHUNK or pending >= PROGRESS_ROWS:
                        flush()
                        progress("copy", table, sent, total, time.perf_counter() - clock)
            except BaseException:
                reader.close()
                raise
            if skipped:  # the source read here, the reader (already on the next table) held back meanwhile
                pairs = [converter(t) for t in types]
                select = "SELECT %s FROM %s WHERE %s" % (", ".join(quote_identifier(c) for c in columns), qt, pass2)
                with reader.paused():
                    for raw in _source_rows(source, select):
                        if raw is None:
                            failed("a value could not be read")
                        try:
                            data = _line(raw, pairs).encode("utf-8")
                        except (_Unconvertible, UnicodeEncodeError) as exc:
                            failed(str(exc))
                        buf.append(data)
                        size += len(data)
                        pending += 1
                        skipped -= 1
                        if size >= COPY_CHUNK:
                            flush()
            if buf:
                flush()
        sums = hasher.finish()
    except psycopg.Error as exc:
        if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)):
            reader.close()
            _locate(source, table, columns, types, pk)  # a value PostgreSQL refuses that Python's rules refuse too
        raise
    n = sums.rows
    if n != total or sent != total or skipped:
        raise TransferError("table '%s': read %d rows of %d; nothing was changed" % (table, n, total))
    seconds = time.perf_counter() - clock
    result.tables[table] = {"rows": n, "checksum": sums.hex, "seconds": round(seconds, 4),
                            "rows_per_second": round(n / seconds) if seconds > 0 else None}
    progress("done", table, n, total, seconds)
    return columns, types, sums


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
    for t in result.not_moved:
        lines.append("  not moved: table '%s' (%s rows): %s" % (
            t["table"], "?" if t["rows"] is None else t["rows"], t["reason"]))
    lines += ["  note: %s" % n for n in result.notes]
    return "\n".join(lines)
