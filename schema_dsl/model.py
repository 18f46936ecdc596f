"""The schema model: frozen attrs classes, pure data, no SQL text generation.

A `Schema` validates itself when built and raises `DeclarationError` listing
every problem at once, each naming its object. Change a model with
`attrs.evolve`; nothing here mutates.

Choices made where SQLite is lenient:
- Identifiers are compared case-insensitively, as SQLite does, so `Tasks` and
  `tasks` are duplicates.
- A name is rejected when it is empty, has surrounding white space or a NUL
  or control character, or starts with `sqlite_` (reserved by SQLite).
- A foreign key to parent columns that are neither the parent's PRIMARY KEY
  nor UNIQUE is accepted, as SQLite accepts it in real files (it fails later,
  at the first insert, with "foreign key mismatch"); lint reports it
  (fk-parent-not-unique). Foreign keys that form a cycle are accepted too
  (SQLite creates the tables in any order); lint reports them (fk-cycle).
- Views, triggers and virtual tables are declared by their SQL text (the
  full CREATE statement, or a virtual table's module and arguments, used
  verbatim). Their names share one namespace with tables and indexes.
- SQLite's conflict clauses (ON CONFLICT ROLLBACK, ABORT, FAIL, IGNORE or REPLACE after a PRIMARY KEY,
  UNIQUE or NOT NULL) are `PrimaryKey.on_conflict`, `Unique.on_conflict`, `Column.not_null_on_conflict` and
  `Column.unique_on_conflict`; None writes none (SQLite's ABORT). PostgreSQL has none: rendering for it
  refuses them.
- WITHOUT ROWID and STRICT tables are supported (`Table.without_rowid`,
  `Table.strict`); generated columns are not: `schemagen inspect` refuses a
  file that has them, naming the table.
"""
from __future__ import annotations

import re
from typing import Union

import attrs
from attrs import field, frozen
from attrs.validators import in_, instance_of

from .errors import DeclarationError
from .sqlite.structure import HEADER_PRAGMAS  # kept in the file's header: 32-bit signed integers, always persistent

PLAN_CHECKS = ("info", "required")
FK_ACTIONS = ("NO ACTION", "RESTRICT", "SET NULL", "SET DEFAULT", "CASCADE")
FK_REPAIRS = (None, "set null", "delete")  # ForeignKey.repair
FK_DEFERRABLE = (None, "INITIALLY DEFERRED", "INITIALLY IMMEDIATE")  # DEFERRABLE <this>; None: not deferrable
# ON CONFLICT <this> after a PRIMARY KEY, UNIQUE or NOT NULL constraint; None: none written (SQLite's ABORT)
CONFLICT_RESOLUTIONS = (None, "ROLLBACK", "ABORT", "FAIL", "IGNORE", "REPLACE")
PRAGMA_NAMES = ("journal_mode", "synchronous", "foreign_keys", "busy_timeout", "wal_autocheckpoint", *HEADER_PRAGMAS)
STRICT_TYPES = ("INT", "INTEGER", "REAL", "TEXT", "BLOB", "ANY")
# as SQLite stores a declared type: words, then an optional (n) or (n, m); spaces as written ("VARCHAR (255)")
_TYPE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*([ \t]+[A-Za-z_][A-Za-z0-9_]*)*([ \t]*\([ \t]*[+-]?\d+[ \t]*(,[ \t]*[+-]?\d+[ \t]*)?\))?\Z")


def _tuple(value):
    return tuple(value)


def _pairs(value):
    """A mapping as a tuple of (key, value) pairs in a stable order (frozen and hashable)."""
    items = value.items() if isinstance(value, dict) else value
    return tuple(sorted(((k, v) for k, v in items), key=repr))


def _former(value):
    """renamed_from as given: one former name (a string, kept as it is) or several (a tuple); None: none."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def former_names(obj):
    """A column's or table's former names (renamed_from), in the order given: () when it has none.

    >>> former_names(Column("author", "TEXT", renamed_from="created_by"))
    ('created_by',)
    >>> former_names(Column("author", "TEXT"))
    ()
    """
    value = obj.renamed_from
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def named(objects, name):
    """The object called `name`, compared case-insensitively as SQLite does, or None.

    >>> named([Column("Title", "TEXT")], "title").name
    'Title'
    """
    key = name.lower()
    return next((o for o in objects if o.name.lower() == key), None)


@frozen
class Literal:
    """A constant default value, rendered as an SQL literal.

    A plain Python value given as `Column(default=...)` becomes a Literal; write Expr for SQL.

    >>> Column("status", "TEXT", default="open").default
    Literal(value='open')
    """

    value: Union[str, int, float, bool, bytes, None]


@frozen
class Expr:
    """An SQL expression used verbatim, e.g. CURRENT_TIMESTAMP (a default, or an expression index key).

    >>> Column("created_at", "TEXT", default=Expr("datetime('now')")).default.sql
    "datetime('now')"
    """

    sql: str = field(validator=instance_of(str))


def _resolution(value):
    """An ON CONFLICT resolution as SQLite spells it (upper case); None stays None."""
    return value.upper() if isinstance(value, str) else value


def _on_conflict():
    """An optional ON CONFLICT resolution: None (SQLite's default, ABORT) or one of CONFLICT_RESOLUTIONS."""
    return field(default=None, converter=_resolution, validator=in_(CONFLICT_RESOLUTIONS), kw_only=True)


def _default(value):
    if value is None or isinstance(value, (Literal, Expr)):
        return value
    return Literal(value)


@frozen
class Column:
    """A table column.

    name, type: as SQLite takes them (the type may be empty, as in SQLite; a STRICT table needs one of
    STRICT_TYPES). not_null, unique: column constraints. default: a plain value (a Literal) or an Expr.
    comment: rendered as an SQL comment and into SCHEMA.md. new: marks a column this version of the
    declaration adds (SCHEMA.md shows it). collate: a collating sequence name such as "NOCASE".
    renamed_from: the column's name in older databases, or several former names (a migration renames the
    one it finds with ALTER TABLE RENAME COLUMN before anything else).
    backfill: an SQL expression over the old row that fills this column for
    rows that exist when it is added or made NOT NULL.

    >>> Column("title", "TEXT", not_null=True, default="", comment="Shown in lists.").default
    Literal(value='')
    >>> Column("url", "TEXT", renamed_from="link").renamed_from
    'link'
    >>> Column("word_count", "INTEGER", not_null=True, backfill="length(body) - length(replace(body, ' ', '')) + 1").not_null
    True
    """

    name: str
    type: str
    not_null: bool = False
    default: Union[Literal, Expr, None] = field(default=None, converter=_default)
    unique: bool = False
    comment: str = ""
    new: bool = False
    renamed_from: Union[str, tuple, None] = field(default=None, converter=_former)
    backfill: Union[str, None] = None
    collate: Union[str, None] = None  # a collating sequence name, e.g. "NOCASE"; None: BINARY
    # ON CONFLICT of the column's NOT NULL (needs not_null) and of its column-level UNIQUE (needs unique)
    not_null_on_conflict: Union[str, None] = _on_conflict()
    unique_on_conflict: Union[str, None] = _on_conflict()
    # how the values a database holds become this column's type when the type changes: an SQL expression over
    # the old row (on SQLite the rebuild copies with it); None: a change of affinity over stored values is refused
    using: Union[str, None] = field(default=None, kw_only=True)
    using_postgresql: Union[str, None] = field(default=None, kw_only=True)  # the same in PostgreSQL's own text

    @property
    def affinity(self):
        """The column's type affinity, by SQLite's rules (datatype3.html, 3.1).

        >>> Column("price", "DECIMAL(10,2)").affinity
        'NUMERIC'
        """
        return type_affinity(self.type)


def type_affinity(declared):
    """The affinity SQLite gives a declared type (datatype3.html, 3.1): INTEGER, TEXT, BLOB, REAL or NUMERIC.

    >>> type_affinity("VARCHAR(80)"), type_affinity("BIGINT"), type_affinity("DATETIME")
    ('TEXT', 'INTEGER', 'NUMERIC')
    """
    t = (declared or "").upper()
    if "INT" in t:
        return "INTEGER"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "TEXT"
    if "BLOB" in t or not t:
        return "BLOB"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "REAL"
    return "NUMERIC"


@frozen
class PrimaryKey:
    """A table's PRIMARY KEY: one column or several (a composite key), in key order.

    autoincrement: AUTOINCREMENT (a single INTEGER column only). on_conflict: SQLite's ON CONFLICT clause
    after PRIMARY KEY (one of CONFLICT_RESOLUTIONS; None writes none).

    >>> PrimaryKey(["id"], autoincrement=True).columns
    ('id',)
    >>> PrimaryKey(["bookmark_id", "tag_id"]).columns   # a composite key
    ('bookmark_id', 'tag_id')
    """

    columns: tuple = field(converter=_tuple)
    autoincrement: bool = False
    on_conflict: Union[str, None] = _on_conflict()  # PRIMARY KEY ... ON CONFLICT <this>


@frozen
class Unique:
    """A table-level UNIQUE constraint over one or more columns (for one column, Column(unique=True) also works).

    name: the CONSTRAINT name, if any. on_conflict: SQLite's ON CONFLICT clause (None writes none).

    >>> Unique(["user_id", "url"]).columns
    ('user_id', 'url')
    """

    columns: tuple = field(converter=_tuple)
    name: Union[str, None] = None  # CONSTRAINT name, where the CREATE TABLE gives one
    on_conflict: Union[str, None] = _on_conflict()  # UNIQUE (...) ON CONFLICT <this>


@frozen
class Check:
    """A table-level CHECK constraint: an SQL expression, used verbatim (and translated for PostgreSQL).

    >>> Check("rating BETWEEN 1 AND 5", name="rating_range").name
    'rating_range'
    """

    expr: str = field(validator=instance_of(str))
    name: Union[str, None] = None  # CONSTRAINT name, where the CREATE TABLE gives one


@frozen
class ForeignKey:
    """A FOREIGN KEY from columns of this table to ref_columns of ref_table (empty ref_columns: its PRIMARY KEY).

    on_delete, on_update: one of FK_ACTIONS. deferrable: None, "INITIALLY DEFERRED" or "INITIALLY
    IMMEDIATE". name: the CONSTRAINT name, if any. repair: what a migration does to existing rows that break
    the key when it is added or changed: None refuses the migration, "set null" sets their columns NULL,
    "delete" deletes them (data loss: apply asks first). For a single column, fk() is shorter.

    >>> f = ForeignKey(["user_id", "url"], "pages", ["user_id", "url"], on_delete="CASCADE")
    >>> f.columns, f.ref_table
    (('user_id', 'url'), 'pages')
    """

    columns: tuple = field(converter=_tuple)
    ref_table: str
    ref_columns: tuple = field(converter=_tuple)
    on_delete: str = field(default="NO ACTION", validator=in_(FK_ACTIONS))
    on_update: str = field(default="NO ACTION", validator=in_(FK_ACTIONS))
    # "INITIALLY DEFERRED" or "INITIALLY IMMEDIATE" after DEFERRABLE, as SQLite spells it; None: not deferrable
    deferrable: Union[str, None] = field(default=None, validator=in_(FK_DEFERRABLE))
    name: Union[str, None] = None  # CONSTRAINT name, where the CREATE TABLE gives one
    # what a migration does to existing rows that break this foreign key when it is added or changed: None
    # (refuse the migration), "set null" (set its columns NULL) or "delete" (delete them: data loss, asked
    # first). Rendered nowhere in the DDL.
    repair: Union[str, None] = field(default=None, validator=in_(FK_REPAIRS), eq=False)


def fk(column, ref_table, ref_column, on_delete="NO ACTION", on_update="NO ACTION", deferrable=None, *, name=None,
       repair=None):
    """A single-column ForeignKey (ref_column None: the parent's PRIMARY KEY); it takes every ForeignKey option.

    >>> fk("user_id", "users", "id", on_delete="CASCADE").on_delete
    'CASCADE'
    >>> fk("parent_id", "folders", "id", on_delete="SET NULL", repair="set null").repair   # a self-reference
    'set null'
    """
    return ForeignKey((column,), ref_table, (ref_column,) if ref_column is not None else (), on_delete, on_update,
                      deferrable, name=name, repair=repair)


@frozen
class IndexColumn:
    """An index key: a column name, or (expression=True) an SQL expression used verbatim.

    collate: the key's own collating sequence (COLLATE NAME after the column); None: the column's own (or
    BINARY). An expression's COLLATE is part of its text, where SQLite's precedence applies it.
    Index(columns=...) also takes "name", "name DESC", "name COLLATE NOCASE" and Expr(...) for these.

    >>> Index("idx_pages_added", "pages", ["added_at DESC"]).columns[0]
    IndexColumn(name='added_at', desc=True, expression=False, collate=None)
    """

    name: str
    desc: bool = False
    expression: bool = False
    collate: Union[str, None] = None


def _index_columns(values):
    out = []
    for v in values:
        if isinstance(v, IndexColumn):
            out.append(v)
            continue
        if isinstance(v, Expr):
            out.append(IndexColumn(v.sql, expression=True))
            continue
        parts = v.split()
        if len(parts) == 2 and parts[1].upper() in ("ASC", "DESC"):
            out.append(IndexColumn(parts[0], parts[1].upper() == "DESC"))
        elif len(parts) in (3, 4) and parts[1].upper() == "COLLATE" and (len(parts) == 3 or parts[3].upper() in ("ASC", "DESC")):
            out.append(IndexColumn(parts[0], len(parts) == 4 and parts[3].upper() == "DESC", collate=parts[2]))
        else:
            out.append(IndexColumn(v))
    return tuple(out)


@frozen
class Index:
    """A named index; `serves` holds the queries it is declared to serve.

    columns: its keys (see IndexColumn). unique: CREATE UNIQUE INDEX. where: a partial index's WHERE
    expression. serves: the queries it is there for (`schemagen explain` shows whether each one uses it;
    plan_check="required" makes validation fail when one does not).

    >>> ix = Index("idx_bookmarks_user_added", "bookmarks", ["user_id", "added_at DESC"],
    ...            serves=["SELECT * FROM bookmarks WHERE user_id = ? ORDER BY added_at DESC"])
    >>> [c.name for c in ix.columns]
    ['user_id', 'added_at']
    """

    name: str
    table: str
    columns: tuple = field(converter=_index_columns)
    unique: bool = False
    where: Union[str, None] = None
    serves: tuple = field(default=(), converter=_tuple)
    comment: str = ""
    # "required": the validation report fails when a serves-query's plan does not use this index (or an
    # identical one); "info": the plan is reported only
    plan_check: str = field(default="info", validator=in_(PLAN_CHECKS))
    # the serves-queries as written for PostgreSQL, one per entry of serves (None: translate that one), for
    # queries the dialect layer cannot translate; empty: every one is translated
    serves_postgresql: tuple = field(default=(), converter=_tuple)


@frozen
class Table:
    """A table: its columns, keys and constraints.

    primary_key: a PrimaryKey or None (then SQLite's rowid). uniques, checks, foreign_keys: Unique, Check and
    ForeignKey records. file: which of Schema.table_files creates it (may be left out when there is one).
    comment: rendered as an SQL comment and into SCHEMA.md. new: marks a table this version adds.
    without_rowid, strict: WITHOUT ROWID and STRICT tables. renamed_from: its name in older databases (or a
    tuple of names); a migration renames it first.

    >>> users = Table("users", [Column("id", "INTEGER"), Column("email", "TEXT", not_null=True, unique=True)],
    ...               primary_key=PrimaryKey(["id"]))
    >>> users.column_names
    ('id', 'email')
    >>> folders = Table("folders", [Column("id", "INTEGER"), Column("parent_id", "INTEGER")],
    ...                 primary_key=PrimaryKey(["id"]),
    ...                 foreign_keys=[fk("parent_id", "folders", "id", on_delete="CASCADE")])   # self-referencing
    """

    name: str
    columns: tuple = field(converter=_tuple)
    primary_key: Union[PrimaryKey, None] = None
    uniques: tuple = field(default=(), converter=_tuple)
    checks: tuple = field(default=(), converter=_tuple)
    foreign_keys: tuple = field(default=(), converter=_tuple)
    file: Union[str, None] = None  # which table file; may be left out when the schema has one
    comment: str = ""
    new: bool = False
    without_rowid: bool = False
    strict: bool = False
    # the table's name in older databases, or several former names (ALTER TABLE RENAME TO, before anything else)
    renamed_from: Union[str, tuple, None] = field(default=None, converter=_former)

    def __attrs_post_init__(self):
        # SQLite makes every PRIMARY KEY column of a WITHOUT ROWID table NOT NULL (withoutrowid.html, 2.0): the
        # declaration says so too, so that its DDL, its expected structure and the diff agree with the file
        if self.without_rowid and isinstance(self.primary_key, PrimaryKey):
            keys = {k.lower() for k in self.primary_key.columns if isinstance(k, str)}
            if any(isinstance(c, Column) and c.name.lower() in keys and not c.not_null for c in self.columns):
                object.__setattr__(self, "columns", tuple(
                    attrs.evolve(c, not_null=True) if isinstance(c, Column) and c.name.lower() in keys else c
                    for c in self.columns))

    def column(self, name):
        """The column called name (case-insensitively), or None.

        >>> Table("t", [Column("Id", "INTEGER")]).column("id").name
        'Id'
        """
        return named(self.columns, name)

    @property
    def column_names(self):
        """The column names in declaration order. Example: ('id', 'email') for a users table."""
        return tuple(c.name for c in self.columns)

    @property
    def all_uniques(self):
        """Column tuples under a UNIQUE constraint, column-level ones included.

        >>> Table("t", [Column("a", "TEXT", unique=True), Column("b", "TEXT")], uniques=[Unique(["a", "b"])]).all_uniques
        (('a',), ('a', 'b'))
        """
        return tuple((c.name,) for c in self.columns if c.unique) + tuple(u.columns for u in self.uniques)


@frozen
class View:
    """A view; sql is the full CREATE VIEW statement, used verbatim.

    postgresql: its CREATE statement(s) for PostgreSQL; sqlite_only=True leaves it out there instead (one of
    the two is needed to render for PostgreSQL).

    >>> View("recent", "CREATE VIEW recent AS SELECT * FROM pages ORDER BY added_at DESC LIMIT 50",
    ...      sqlite_only=True).name
    'recent'
    """

    name: str
    sql: str = field(validator=instance_of(str))
    comment: str = ""
    postgresql: Union[str, None] = None  # its CREATE statement(s) for PostgreSQL; None: see sqlite_only
    sqlite_only: bool = False  # left out on PostgreSQL; one of the two is needed to render for PostgreSQL


@frozen
class Trigger:
    """A trigger on a table (or view); sql is the full CREATE TRIGGER statement, used verbatim.

    postgresql: the statements that stand for it there (e.g. CREATE FUNCTION ...; CREATE TRIGGER ...), or
    sqlite_only=True to leave it out.

    >>> Trigger("pages_touch", "pages",
    ...         "CREATE TRIGGER pages_touch AFTER UPDATE OF title ON pages BEGIN "
    ...         "UPDATE pages SET updated_at = datetime('now') WHERE id = NEW.id; END", sqlite_only=True).table
    'pages'
    """

    name: str
    table: str
    sql: str = field(validator=instance_of(str))
    comment: str = ""
    postgresql: Union[str, None] = None  # e.g. CREATE FUNCTION ...; CREATE TRIGGER ... for PostgreSQL
    sqlite_only: bool = False  # left out on PostgreSQL


@frozen
class VirtualTable:
    """A virtual table: CREATE VIRTUAL TABLE name USING module(args), args verbatim (e.g. fts5 columns and options).

    An external-content FTS5 index needs triggers that keep it in step with its table (see docs/guide.md).

    >>> VirtualTable("pages_fts", "fts5", "title, body, content='pages', content_rowid='id'", sqlite_only=True).module
    'fts5'
    """

    name: str
    module: str
    args: str = field(default="", validator=instance_of(str))
    comment: str = ""
    postgresql: Union[str, None] = None  # what stands in for it on PostgreSQL (e.g. a table and a GIN index)
    sqlite_only: bool = False  # left out on PostgreSQL


@frozen
class Pragma:
    """A connection setting (one of PRAGMA_NAMES); `persistent` ones are stored in the file.

    >>> Pragma("journal_mode", "WAL", persistent=True).persistent
    True
    >>> Pragma("foreign_keys", "ON").name
    'foreign_keys'
    """

    name: str = field(validator=in_(PRAGMA_NAMES))
    value: Union[str, int]
    persistent: bool = False


REMOVABLE = ("index", "view", "trigger", "column", "table")


@frozen
class Removed:
    """Something a design change removes from every database it meets, with the reason.

    kind: index, view, trigger (no data goes), column or table (data goes: apply asks first, see README).
    table: the column's table (kind "column" only). Build one with removed().

    >>> Removed("column", "legacy_flag", "never read", table="pages").table
    'pages'
    """

    kind: str = field(validator=in_(REMOVABLE))
    name: str
    reason: str = field(validator=instance_of(str))
    table: Union[str, None] = None


def removed(kind, name, reason, table=None):
    """A declared removal, for Schema(removed=[...]): apply drops it from every database that still has it.

    >>> removed("index", "idx_old", "redundant: the PRIMARY KEY serves it").kind
    'index'
    >>> removed("column", "legacy_flag", "never read", table="pages").name
    'legacy_flag'
    """
    return Removed(kind, name, reason, table)


@frozen
class DataStep:
    """A one-off change of the data between two designs, run once per database (the history records it).

    sql: SQLite statements (one or several, ';'-separated); python: callable(connection) for what SQL cannot
    say (given apply's sqlite3 connection, inside its transaction; it must not commit). Exactly one of the two.
    postgresql: the statements for PostgreSQL; sqlite_only: left out on PostgreSQL.
    Apply runs a pending step after the additions and renames and before conversions, new constraints,
    rebuilds and removals, in the one transaction; a new or empty database records it as done without running.

    >>> step = DataStep("split_name", sql="UPDATE users SET first_name = substr(name, 1, instr(name, ' ') - 1)")
    >>> step.name, step.python is None
    ('split_name', True)
    >>> Schema(name="app", tables=[Table("users", [Column("id", "INTEGER"), Column("name", "TEXT"),
    ...        Column("first_name", "TEXT")], PrimaryKey(["id"]))], data_steps=[step]).data_steps[0].name
    'split_name'
    """

    name: str
    sql: Union[str, None] = None
    postgresql: Union[str, None] = None
    sqlite_only: bool = False
    python: object = field(default=None, eq=False, repr=False)
    comment: str = ""


@frozen
class Schema:
    """A whole declared schema. Building one validates it.

    Building one raises DeclarationError listing every problem (unknown columns or tables, bad names, ...).
    table_files: the DDL files tables go in, in the order they run; index_file: the file of the indexes.
    lint_resolutions: how each lint finding is resolved ({rule: text} or {(rule, object): text}).
    views, triggers, virtual_tables: created after the tables and indexes. removed: what this design removes
    from databases that still have it (removed(...) records). A declaration file names one as SCHEMA.

    >>> SCHEMA = Schema("notes", tables=[
    ...     Table("notes", [Column("id", "INTEGER"), Column("body", "TEXT", not_null=True)],
    ...           primary_key=PrimaryKey(["id"]))],
    ...     pragmas=[Pragma("foreign_keys", "ON")])
    >>> SCHEMA.table("NOTES").name
    'notes'
    >>> Schema("bad", tables=[Table("t", [Column("id", "INTEGER")], primary_key=PrimaryKey(["nope"]))])
    Traceback (most recent call last):
    ...
    schema_dsl.errors.DeclarationError: invalid schema declaration: table 't': PRIMARY KEY names unknown column 'nope'
    """

    name: str
    tables: tuple = field(converter=_tuple)
    indexes: tuple = field(default=(), converter=_tuple)
    pragmas: tuple = field(default=(), converter=_tuple)
    table_files: tuple = field(default=("ddl-tables.sql",), converter=_tuple)
    index_file: str = "ddl-indexes.sql"
    source: str = ""
    # how each lint finding is resolved: {rule: text} or {(rule, object): text}
    lint_resolutions: tuple = field(default=(), converter=_pairs)
    # created after the tables and indexes, in this order: virtual tables, views, triggers
    views: tuple = field(default=(), converter=_tuple)
    triggers: tuple = field(default=(), converter=_tuple)
    virtual_tables: tuple = field(default=(), converter=_tuple)
    # what this design removes from existing databases (Removed records)
    removed: tuple = field(default=(), converter=_tuple)
    # one-off data changes, each run once per database, in this order (DataStep records)
    data_steps: tuple = field(default=(), converter=_tuple)
    # keep schemagen's record of every apply in the database (_schemagen_history); data steps imply it
    history: bool = False

    def __attrs_post_init__(self):
        problems = schema_problems(self)
        if problems:
            raise DeclarationError(problems)

    def table(self, name):
        """The table called name (case-insensitively), or None. Example: `schema.table("users")`."""
        return named(self.tables, name)

    def index(self, name):
        """The index called name (case-insensitively), or None. Example: `schema.index("idx_users_email")`."""
        return named(self.indexes, name)

    def view(self, name):
        """The view called name (case-insensitively), or None. Example: `schema.view("recent")`."""
        return named(self.views, name)

    def trigger(self, name):
        """The trigger called name (case-insensitively), or None. Example: `schema.trigger("pages_touch")`."""
        return named(self.triggers, name)

    def virtual_table(self, name):
        """The virtual table called name (case-insensitively), or None. Example: `schema.virtual_table("pages_fts")`."""
        return named(self.virtual_tables, name)

    def file_of(self, table):
        """The table file a table is created in: its `file`, or the only table file.

        Example: `schema.file_of(schema.table("users"))` gives 'ddl-tables.sql' when there is one table file.
        """
        if table.file is None and len(self.table_files) == 1:
            return self.table_files[0]
        return table.file

    def tables_in_file(self, filename):
        """Tables of one DDL file, each after every table it references.

        Example: `schema.tables_in_file("ddl-tables.sql")`.
        """
        return dependency_order([t for t in self.tables if self.file_of(t) == filename])

    def ordered_tables(self):
        """Every table in the order the DDL creates them: file by file, each after the tables it references.

        Example: `[t.name for t in schema.ordered_tables()]` gives ['users', 'folders', 'bookmarks', ...].
        """
        return tuple(t for f in self.table_files for t in self.tables_in_file(f))


def dependency_order(tables):
    """Tables sorted so that each comes after those it references; ties keep declaration order.

    >>> child = Table("child", [Column("p", "INTEGER")], foreign_keys=[fk("p", "parent", "id")])
    >>> parent = Table("parent", [Column("id", "INTEGER")], primary_key=PrimaryKey(["id"]))
    >>> [t.name for t in dependency_order([child, parent])]
    ['parent', 'child']
    """
    names = {t.name.lower() for t in tables}
    done, out, pending = set(), [], list(tables)
    while pending:
        for t in pending:
            deps = {f.ref_table.lower() for f in t.foreign_keys} & names
            deps.discard(t.name.lower())
            if deps <= done:
                out.append(t)
                done.add(t.name.lower())
                pending.remove(t)
                break
        else:  # a cycle: keep declaration order for the rest (lint reports it: fk-cycle)
            out.extend(pending)
            break
    return tuple(out)


def _name_problems(kind, name):
    if not isinstance(name, str) or not name:
        return ["%s name %r: expected a non-empty string" % (kind, name)]
    if name != name.strip() or any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in name):  # C0, DEL, C1
        return ["%s %r: name has surrounding white space or a control character" % (kind, name)]
    if name.lower().startswith("sqlite_"):
        return ["%s %r: names starting with 'sqlite_' are reserved by SQLite" % (kind, name)]
    return []


def schema_problems(schema):
    """Every problem of a declared schema, each naming its object (Schema(...) raises them as one error).

    Example: `schema_problems(schema)` gives [] for a valid schema, else lines such as
    "table 'pages', foreign key (user_id): references unknown table 'user'".
    """
    p = []
    seen = {}
    for obj_kind, objs in (("table", schema.tables), ("index", schema.indexes), ("virtual table", schema.virtual_tables),
                           ("view", schema.views), ("trigger", schema.triggers)):
        for obj in objs:
            p += _name_problems(obj_kind, obj.name)
            key = obj.name.lower() if isinstance(obj.name, str) else obj.name
            if key in seen:
                p.append("%s '%s': duplicate name (already used by a %s)" % (obj_kind, obj.name, seen[key]))
            seen[key] = obj_kind
    tables = {t.name.lower(): t for t in schema.tables if isinstance(t.name, str)}
    file_pos = {f: i for i, f in enumerate(schema.table_files)}
    for t in schema.tables:
        where = "table '%s'" % t.name
        if schema.file_of(t) not in file_pos:
            p.append("%s: file %r is not one of the table files %s%s" % (
                where, t.file, list(schema.table_files), " (name one: the schema has several)" if t.file is None else ""))
        if not t.columns:
            p.append("%s: expected at least one column" % where)
        cols = {}
        for c in t.columns:
            p += ["%s: %s" % (where, msg) for msg in _name_problems("column", c.name)]
            if c.collate is not None and not (isinstance(c.collate, str) and re.match(r"[A-Za-z_][A-Za-z0-9_]*\Z", c.collate)):
                p.append("%s, column '%s': collate %r is not a collating sequence name" % (where, c.name, c.collate))
            if isinstance(c.name, str) and c.name.lower() in cols:
                p.append("%s: duplicate column '%s'" % (where, c.name))
            cols[c.name.lower()] = c
            if c.not_null_on_conflict is not None and not c.not_null:
                p.append("%s, column '%s': not_null_on_conflict %s needs not_null=True" % (where, c.name, c.not_null_on_conflict))
            if c.unique_on_conflict is not None and not c.unique:
                p.append("%s, column '%s': unique_on_conflict %s needs unique=True" % (where, c.name, c.unique_on_conflict))
            if c.type and not _TYPE_RE.match(c.type):  # no type at all is allowed, as in SQLite
                p.append("%s, column '%s': type %r is not a valid SQLite type name" % (where, c.name, c.type))
        for c in t.columns:
            for old in _former_problems(p, "%s, column '%s'" % (where, c.name), c):
                if old.lower() in cols:
                    p.append("%s, column '%s': renamed_from '%s' names another declared column" % (where, c.name, old))
        for old in _former_problems(p, where, t):
            if old.lower() in tables:
                p.append("%s: renamed_from '%s' names another declared table" % (where, old))

        def known(columns, what):
            for name in columns:
                if name.lower() not in cols:
                    p.append("%s: %s names unknown column '%s'" % (where, what, name))

        pk = t.primary_key
        if pk is not None:
            known(pk.columns, "PRIMARY KEY")
            if pk.autoincrement:
                c = cols.get(pk.columns[0].lower()) if len(pk.columns) == 1 else None
                if c is None or c.type.upper() != "INTEGER":
                    p.append("%s: AUTOINCREMENT needs a single INTEGER PRIMARY KEY column, got %s" % (
                        where, ", ".join("%s %s" % (n, cols[n.lower()].type if n.lower() in cols else "?") for n in pk.columns)))
        for u in t.uniques:
            known(u.columns, "UNIQUE constraint")
        for f in t.foreign_keys:
            what = "foreign key (%s)" % ", ".join(f.columns)
            known(f.columns, what)
            parent = tables.get(f.ref_table.lower())
            if parent is None:
                p.append("%s, %s: references unknown table '%s'" % (where, what, f.ref_table))
            else:
                for rc in f.ref_columns:
                    if parent.column(rc) is None:
                        p.append("%s, %s: references unknown column '%s.%s'" % (where, what, f.ref_table, rc))
                if not f.ref_columns and (parent.primary_key is None or len(parent.primary_key.columns) != len(f.columns)):
                    p.append("%s, %s: references the PRIMARY KEY of '%s', which has %s" % (
                        where, what, f.ref_table, "none" if parent.primary_key is None
                        else "%d columns" % len(parent.primary_key.columns)))
                tf, pf = schema.file_of(t), schema.file_of(parent)
                if tf in file_pos and pf in file_pos and file_pos[pf] > file_pos[tf]:
                    p.append("%s, %s: placed in %s, before the referenced table '%s' in the later file %s" % (
                        where, what, tf, parent.name, pf))
            if f.ref_columns and len(f.ref_columns) != len(f.columns):
                p.append("%s, %s: %d columns reference %d" % (where, what, len(f.columns), len(f.ref_columns)))
            for action_name, action in (("ON DELETE", f.on_delete), ("ON UPDATE", f.on_update),
                                        ("repair", "SET NULL" if f.repair == "set null" else None)):
                if action == "SET NULL":
                    for name in f.columns:
                        c = cols.get(name.lower())
                        if c is not None and c.not_null:
                            p.append("%s, %s: %s SET NULL on NOT NULL column '%s'" % (where, what, action_name, name))
    for t in schema.tables:
        if t.without_rowid and t.primary_key is None:
            p.append("table '%s': WITHOUT ROWID needs a PRIMARY KEY" % t.name)
        if t.without_rowid and t.primary_key is not None and t.primary_key.autoincrement:
            p.append("table '%s': AUTOINCREMENT is not allowed on a WITHOUT ROWID table" % t.name)
        if t.strict:
            for c in t.columns:
                if c.type.upper() not in STRICT_TYPES:
                    p.append("table '%s', column '%s': a STRICT table needs one of the types %s, got %r" % (
                        t.name, c.name, ", ".join(STRICT_TYPES), c.type))
    for ix in schema.indexes:
        where = "index '%s'" % ix.name
        t = tables.get(ix.table.lower()) if isinstance(ix.table, str) else None
        if t is None:
            p.append("%s: on unknown table '%s'" % (where, ix.table))
            continue
        if not ix.columns:
            p.append("%s: expected at least one column" % where)
        for c in ix.columns:
            if not c.expression and t.column(c.name) is None:
                p.append("%s: names unknown column '%s.%s'" % (where, ix.table, c.name))
            if c.collate is not None and not (isinstance(c.collate, str) and re.match(r"[A-Za-z_][A-Za-z0-9_]*\Z", c.collate)):
                p.append("%s, key '%s': collate %r is not a collating sequence name" % (where, c.name, c.collate))
    views = {v.name.lower() for v in schema.views if isinstance(v.name, str)}
    for v in schema.virtual_tables:
        if not (isinstance(v.module, str) and re.match(r"[A-Za-z_][A-Za-z0-9_]*\Z", v.module)):
            p.append("virtual table '%s': module %r is not a module name" % (v.name, v.module))
    for kind, objs in (("view", schema.views), ("trigger", schema.triggers)):
        for v in objs:
            if not v.sql.strip():
                p.append("%s '%s': expected its CREATE %s statement, got empty SQL" % (kind, v.name, kind.upper()))
    for tr in schema.triggers:
        if not isinstance(tr.table, str) or (tr.table.lower() not in tables and tr.table.lower() not in views):
            p.append("trigger '%s': on unknown table or view '%s'" % (tr.name, tr.table))
    for pr in schema.pragmas:
        if not isinstance(pr.value, (str, int)) or isinstance(pr.value, bool):
            p.append("pragma '%s': value must be a string or an integer, got %r" % (pr.name, pr.value))
        elif pr.name in HEADER_PRAGMAS and not (isinstance(pr.value, int) and -2 ** 31 <= pr.value < 2 ** 31):
            p.append("pragma '%s': expected a 32-bit signed integer, got %r" % (pr.name, pr.value))
        if pr.name in HEADER_PRAGMAS and not pr.persistent:
            p.append("pragma '%s': it is stored in the database file; declare it with persistent=True" % pr.name)
    names = [pr.name for pr in schema.pragmas]
    p += ["pragma '%s': declared %d times" % (n, names.count(n)) for n in sorted(set(names)) if names.count(n) > 1]
    p += removal_problems(schema)
    p += data_step_problems(schema)
    return p


def data_step_problems(schema):
    """Each data step has a unique name and exactly one of sql and python; no declared name uses schemagen's
    own prefix (_schemagen_: its history table and a rebuild's temporary tables).

    >>> t = Table("users", [Column("id", "INTEGER")], PrimaryKey(["id"]))
    >>> data_step_problems(Schema(name="app", tables=[t]))
    []
    """
    p = []
    for obj in (*schema.tables, *schema.indexes, *schema.views, *schema.triggers, *schema.virtual_tables):
        if isinstance(obj.name, str) and obj.name.lower().startswith("_schemagen_"):
            p.append("%s '%s': names starting with '_schemagen_' are schemagen's own" % (
                type(obj).__name__.lower(), obj.name))
    seen = set()
    for step in schema.data_steps:
        if not isinstance(step, DataStep):
            p.append("data_steps: expected DataStep records (schema_dsl.model.DataStep), got %r" % (step,))
            continue
        where = "data step %r" % step.name
        if not isinstance(step.name, str) or not step.name.strip() or step.name != step.name.strip():
            p.append("%s: expected a non-empty name without surrounding white space" % where)
            continue
        if step.name.lower() in seen:
            p.append("%s: declared twice" % where)
        seen.add(step.name.lower())
        if (step.sql is None) == (step.python is None):
            p.append("%s: expected exactly one of sql= and python=" % where)
        elif step.sql is not None and not (isinstance(step.sql, str) and step.sql.strip()):
            p.append("%s: sql= is empty" % where)
        elif step.python is not None and not callable(step.python):
            p.append("%s: python= must be a callable taking the connection, got %r" % (where, step.python))
    return p


def removal_problems(schema):
    """A removal must not name something still declared, nor a table declared foreign keys reference.

    Example: `removal_problems(schema)` gives [] when every removed(...) is consistent (schema_problems
    includes these).
    """
    p = []
    declared = {"index": schema.index, "view": schema.view, "trigger": schema.trigger, "table": schema.table}
    for r in schema.removed:
        if isinstance(r, Removed) and r.kind != "column" and isinstance(r.name, str) and r.name.lower().startswith("sqlite_"):
            p.append("removed %s '%s': an SQLite internal object (sqlite_ prefix), which SQLite keeps itself; "
                     "expected a name of the application's own" % (r.kind, r.name))
    seen = set()
    for r in schema.removed:
        if not isinstance(r, Removed):
            p.append("removed: expected Removed records (schema_dsl.model.removed), got %r" % (r,))
            continue
        what = "removed %s '%s'" % (r.kind, r.name if r.table is None else "%s.%s" % (r.table, r.name))
        key = (r.kind, (r.table or "").lower(), r.name.lower())
        if key in seen:
            p.append("%s: declared removed twice" % what)
        seen.add(key)
        if not r.reason.strip():
            p.append("%s: expected a reason" % what)
        if r.kind == "column":
            t = schema.table(r.table) if r.table else None
            if r.table is None:
                p.append("%s: a column removal names its table (table=...)" % what)
            elif t is not None and t.column(r.name) is not None:
                p.append("%s: the column is still declared in table '%s'" % (what, t.name))
            elif t is not None and any(c.renamed_from and r.name.lower() in _former_names(c) for c in t.columns):
                p.append("%s: a declared column is renamed from it" % what)
            continue
        if r.table is not None:
            p.append("%s: only a column removal names a table" % what)
        if declared[r.kind](r.name) is not None:
            p.append("%s: it is also declared; remove it from the declaration or drop the removal" % what)
        if r.kind == "table":
            for t in schema.tables:
                for f in t.foreign_keys:
                    if f.ref_table.lower() == r.name.lower():
                        p.append("%s: table '%s' still declares a foreign key (%s) to it" % (
                            what, t.name, ", ".join(f.columns)))
    return p


def _former_names(column):
    return {n.lower() for n in former_names(column) if isinstance(n, str)}


def _former_problems(p, where, obj):
    """Append what is wrong with obj.renamed_from to p; return its well-formed former names."""
    good = []
    for old in former_names(obj):
        if not isinstance(old, str) or not old.strip():
            p.append("%s: renamed_from %r: expected a name or a tuple of names" % (where, old))
        elif old.lower() == obj.name.lower():
            p.append("%s: renamed_from '%s' is its own name" % (where, old))
        else:
            good.append(old)
    return good


def evolve(obj, **changes):
    """attrs.evolve, re-exported so callers change models one way only: a changed copy, validated again.

    >>> c = Column("link", "TEXT")
    >>> url = evolve(c, name="url", renamed_from="link")
    >>> url.name, url.type, url.renamed_from, c.name
    ('url', 'TEXT', 'link', 'link')
    """
    return attrs.evolve(obj, **changes)
