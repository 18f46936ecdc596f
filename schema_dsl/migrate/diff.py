"""Declaration vs live database: a closed set of small frozen change records.

`diff(schema, live)` is pure: it reads the declaration and the introspected
database and returns the changes, in the order they must run. Whether a new
column can be a plain ALTER TABLE ADD COLUMN or its table needs SQLite's
12-step rebuild is one rule, `add_column_blocker`.

What the database has and the declaration does not (a user's own tables,
columns, indexes, constraints, views, triggers) produces no change: it is
kept, carried through any rebuild, and listed by `extras`.

The records are one closed set for both dialects (CHANGE_KINDS): SQLite's planner turns them into ALTER or
the rebuild (migrate/plan.py), PostgreSQL's into ALTER, NOT VALID/VALIDATE and CONCURRENTLY (pg/plan.py). The
decisions taken once, here, for both: renames (renames, rename_conflicts), what goes (removals: declared
removals and --prune, with what a drop weakens, the parent keys --prune keeps, the indexes on removed
columns), what is kept (extras), and which foreign keys declare a repair (RepairForeignKey); what is lost is
counted once too (migrate/loss.py). A dialect that changes a column or adds a constraint in place
(PostgreSQL) plans the records of IN_PLACE_KINDS (AlterColumnType, SetNotNull, DropNotNull, SetDefault,
DropDefault, AddCheck, AddForeignKey, AddUnique, RecreateIndex, RebuildInvalidIndex, ReplaceView) and a
removed column as a
Remove of kind "column"; SQLite folds the same differences into one RebuildTable. Those in-place differences
are decided once too, by in_place_changes, which compares each side in the printing the dialect passes in
(PostgreSQL: its server's, pg/catalog.canonical_expected); the dialect adds only how, and the data checks
that need a connection. Whether a changed view is replaced in place or dropped and created again is
view_change's (view_changes: ReplaceView, else DropViewOrTrigger + CreateViewOrTrigger), and whether a
trigger differs is trigger_change's (trigger_changes), on the same terms.

Declared views and triggers are compared by their normalized SQL: a missing
one is created, a changed one dropped and recreated. A declared virtual table
that is missing is created, an unchanged one is never touched, and a changed
one is refused (VirtualTableChanged; the planner raises UnsafeMigrationError):
its rows live in the module's own shadow tables, which schemagen does not copy.
"""
from __future__ import annotations

from typing import Union

from attrs import field, frozen

from ..analysis.compare import index_structure, table_structure, virtual_table_structure
from ..model import Column, ForeignKey, Index, Table, VirtualTable, former_names, named
from ..analysis.sqltext import default_sql, is_constant_default
from ..sqlite.quote import quote_identifier
from ..sqlite import structure
from ..sqlite.ddl import matching_paren, join_tokens, tokenize, view_body


def _tuple(v):
    return tuple(v)


@frozen
class CreateTable:
    table: Table
    reason: str = "table is new"


@frozen
class RenameTable:
    """ALTER TABLE old RENAME TO the declared name: SQLite rewrites the views, triggers, indexes and other
    tables' foreign keys that name it. Renames run before every other change (see renames)."""

    table: Table
    old: str
    reason: str = "table was renamed in the declaration"


@frozen
class RenameColumn:
    table: Table
    old: str
    new: str
    reason: str = "column was renamed in the declaration"


@frozen
class AddColumn:
    table: Table
    column: Column
    reason: str = "column is new; ALTER TABLE ADD COLUMN keeps every row in place"


@frozen
class Backfill:
    table: Table
    column: str
    expr: str
    reason: str = "fill the new column for existing rows"


@frozen
class Reason:
    """Why a table needs the rebuild, as data: kind, the columns it concerns, and the sentence the plan prints.

    kinds: column-changed, autoincrement, table-option, foreign-key-new, unique-new, check-new, on-conflict,
    column-needs-rebuild (why it rebuilds); column-renamed, column-new, conversion (a type change copied with
    the column's using=) (carried by the same rebuild); dropped.
    """

    kind: str
    text: str
    columns: tuple = field(default=(), converter=_tuple)

    def __str__(self):
        return self.text


@frozen
class RebuildTable:
    """SQLite's 12-step rebuild: create the new table, copy, drop, rename."""

    table: Table                                   # the declared table
    copy: tuple = field(converter=_tuple)          # (declared column, SQL over the old row) pairs
    extra_columns: tuple = field(converter=_tuple)      # (name, definition) kept from the live table
    extra_constraints: tuple = field(converter=_tuple)  # constraint SQL kept from the live table
    keep_rowid: bool
    autoincrement_from: bool                       # the live table has a sqlite_sequence entry to keep
    user_indexes: tuple = field(converter=_tuple)  # (name, CREATE INDEX sql) of undeclared indexes
    reasons: tuple = field(converter=_tuple)
    not_null_checks: tuple = field(default=(), converter=_tuple)  # columns that become NOT NULL without a fill
    # (declared column, live column, using=, the copy's expression) of each type change copied with using=
    conversions: tuple = field(default=(), converter=_tuple)

    @property
    def reason(self):
        return "; ".join(r.text for r in self.reasons)


@frozen
class DropIndex:
    name: str
    reason: str


@frozen
class CreateIndex:
    index: Index
    reason: str = "index is new"


@frozen
class CreateIndexVerbatim:
    """Re-create a user's own index (or view, trigger) from its stored SQL."""

    name: str
    sql: str
    kind: str = "index"
    reason: str = "kept: recreated after the rebuild of its table"


@frozen
class DropViewOrTrigger:
    name: str
    kind: str  # "view" or "trigger"
    reason: str = "dropped for the duration of a table rebuild, recreated at the end"


@frozen
class CreateVirtualTable:
    table: VirtualTable
    reason: str = "virtual table is new"


@frozen
class CreateViewOrTrigger:
    """Create a declared view or trigger from its declared SQL."""

    name: str
    sql: str
    kind: str  # "view" or "trigger"
    reason: str


@frozen
class VirtualTableChanged:
    """A declared virtual table whose module or arguments differ from the live one: refused, never copied."""

    name: str
    reason: str


@frozen
class Remove:
    """Drop an index, view, trigger or table that the declaration removes (or that --prune drops).

    A removed column is no Remove in diff(): SQLite rebuilds its table without it (a "column-removed" Reason).
    A dialect that drops a column in place (PostgreSQL's ALTER TABLE DROP COLUMN) makes a Remove of kind
    "column" (table: its table) from the same decision (removals' columns). A table's rows and a column's
    values are counted before anything runs (loss.data_loss: Plan.data_loss).
    """

    kind: str                         # index, view, trigger, table; column (see above)
    name: str
    reason: str
    table: Union[str, None] = None    # the table an index or trigger stands on
    pruned: bool = False              # not declared at all: dropped by --prune
    weakens: Union[str, None] = None  # what the drop weakens although no row goes (a UNIQUE index, a trigger)


@frozen
class RepairForeignKey:
    """Before the rebuild that adds or changes a foreign key with a declared repair: set NULL (or delete) the
    existing rows that would break it. The planner finds the rows; none found, no step."""

    table: Table
    foreign_key: ForeignKey
    reason: str = "the declaration asks to repair rows that break the foreign key"


# --- changes made in place: a dialect whose ALTER TABLE changes a column or adds a constraint (PostgreSQL) makes
# these; SQLite's planner folds the same differences into one RebuildTable (its Reasons) and never sees them.


@frozen
class AlterColumnType:
    """ALTER COLUMN TYPE: each value converted, with the declared using= (None: the dialect's own cast)."""

    table: str
    column: str
    type: str
    using: Union[str, None] = None
    reason: str = "column type changed in the declaration"


@frozen
class SetNotNull:
    """SET NOT NULL, once every row holds a value (a Backfill before it fills the NULLs)."""

    table: str
    column: str
    reason: str = "the column becomes NOT NULL in the declaration"


@frozen
class DropNotNull:
    table: str
    column: str
    reason: str = "the column may hold NULL in the declaration"


@frozen
class SetDefault:
    table: str
    column: str
    default: str
    reason: str = "default changed in the declaration (existing rows keep their values)"


@frozen
class DropDefault:
    table: str
    column: str
    reason: str = "default removed in the declaration"


@frozen
class AddCheck:
    """A new CHECK, added without a scan under the strongest lock, then validated (NOT VALID, VALIDATE)."""

    table: str
    expr: str
    name: str
    reason: str = "CHECK is new"
    replaces: Union[str, None] = field(default=None, kw_only=True)  # the live one of its declared name, dropped first


@frozen
class AddForeignKey:
    """A new foreign key, or one whose actions change (replaces: the name of the one dropped for it)."""

    table: str
    columns: tuple = field(converter=_tuple)
    ref_table: str = ""
    name: str = ""
    replaces: Union[str, None] = None
    reason: str = "foreign key is new"
    foreign_key: Union[ForeignKey, None] = field(default=None, eq=False, kw_only=True)  # the declared one


@frozen
class AddUnique:
    """A new UNIQUE: its unique index built first, then taken over by the constraint."""

    table: str
    columns: tuple = field(converter=_tuple)
    name: str = ""
    reason: str = "UNIQUE is new"
    replaces: Union[str, None] = field(default=None, kw_only=True)  # the live one of its declared name, dropped first


@frozen
class RecreateIndex:
    """A declared index whose definition changed: dropped and built again in one step (SQLite: DropIndex, then
    CreateIndex)."""

    index: Index
    reason: str = "definition changed: dropped and recreated"


@frozen
class RebuildInvalidIndex:
    """A declared index that a failed concurrent build left INVALID: dropped and built again, both concurrently."""

    index: Index
    reason: str = ("the index is INVALID (pg_index.indisvalid = false: a CREATE INDEX CONCURRENTLY that failed); it is "
                   "dropped and built again, both CONCURRENTLY")


@frozen
class ReplaceView:
    """A declared view whose body changed while its columns stay: replaced in place (CREATE OR REPLACE VIEW)."""

    name: str
    sql: str
    reason: str


CHANGE_KINDS = (CreateTable, RenameTable, RenameColumn, RepairForeignKey, AddColumn, Backfill, RebuildTable, DropIndex,
                CreateIndex, CreateIndexVerbatim, DropViewOrTrigger, CreateVirtualTable, CreateViewOrTrigger,
                VirtualTableChanged, Remove)
# the changes made in place (above), beside CHANGE_KINDS: the closed set a dialect with a full ALTER TABLE plans
IN_PLACE_KINDS = (AlterColumnType, SetNotNull, DropNotNull, SetDefault, DropDefault, AddCheck, AddForeignKey, AddUnique,
                  RecreateIndex, RebuildInvalidIndex, ReplaceView)
PRUNE = (None, "objects", "all")  # diff's prune: nothing; undeclared indexes, views, triggers; and columns, tables
Change = Union[CHANGE_KINDS]


def add_column_blocker(table: Table, column: Column) -> Union[str, None]:
    """Why ALTER TABLE ADD COLUMN cannot add `column` to a table with rows, or None.

    SQLite (lang_altertable.html) refuses a PRIMARY KEY or UNIQUE column, NOT
    NULL without a non-NULL default, a non-constant default such as
    CURRENT_TIMESTAMP, and REFERENCES with a non-NULL default when foreign
    keys are on. A NOT NULL column filled by an expression also needs the
    rebuild, since the fill cannot run before the column exists.
    """
    pk = table.primary_key
    if pk is not None and column.name.lower() in (c.lower() for c in pk.columns):
        return "column '%s' is part of the PRIMARY KEY" % column.name
    if column.unique:
        return "column '%s' is UNIQUE" % column.name
    if not is_constant_default(column.default):
        return "column '%s' has the non-constant default %s" % (column.name, default_sql(column.default))
    if column.not_null and (column.default is None or default_sql(column.default).upper() == "NULL"):
        return "column '%s' is NOT NULL with no default" % column.name
    if column.not_null and column.backfill:
        return "column '%s' is NOT NULL and filled from %s" % (column.name, column.backfill)
    has_fk = any(column.name.lower() in (c.lower() for c in f.columns) for f in table.foreign_keys)
    if has_fk and column.default is not None and default_sql(column.default).upper() != "NULL":
        return "column '%s' has REFERENCES with a non-NULL default" % column.name
    if has_fk and any(len(f.columns) > 1 and column.name.lower() in (c.lower() for c in f.columns) for f in table.foreign_keys):
        return "column '%s' is part of a composite foreign key" % column.name
    return None


def _column_map(decl: Table, live: Table):
    """declared column name -> live column name it takes its values from (None: new); of several former
    names, the first the live table has."""
    mapping = {}
    for c in decl.columns:
        found = next((live.column(n) for n in (c.name, *former_names(c)) if live.column(n) is not None), None)
        mapping[c.name] = found.name if found is not None else None
    return mapping


def live_table(live, decl: Table):
    """The live table a declared one is found as: under its name, else under the first former name the file
    has (renamed_from); None: it is new."""
    return next((live.table(n) for n in (decl.name, *former_names(decl)) if live.table(n) is not None), None)


def renames(schema, live):
    """The renames that bring live's names to the declaration, in the order they run, before any other change:
    each table found under a former name (RenameTable), then each column found under a former name
    (RenameColumn, on the table's declared name). SQLite's own RENAME keeps views, triggers (UPDATE OF lists
    included), indexes and other tables' foreign keys working, which a rebuild's copy under the new name
    would not; the planner runs these first and plans the rest against the renamed file."""
    out = []
    for t in schema.ordered_tables():
        lt = live_table(live, t)
        if lt is None:
            continue
        if lt.name.lower() != t.name.lower():
            out.append(RenameTable(t, lt.name))
        mapping = _column_map(t, lt)
        for c in t.columns:
            source = mapping[c.name]
            if source is not None and source.lower() != c.name.lower():
                out.append(RenameColumn(t, source, c.name))
    return out


def in_place_changes(schema, live, printed):
    """The column, constraint and index differences between the declaration and the live database, as the change
    records a dialect that changes them in place plans (IN_PLACE_KINDS, with AddColumn and CreateIndex): pure,
    decided once here, while the dialect only says how (statements, locks, the data checks that need a connection).

    For each declared table the live one has (under its declared name: the renames have run), in `schema`'s
    table order: per declared column, in its order, AddColumn (missing), else AlterColumnType, SetDefault or
    DropDefault, SetNotNull or DropNotNull (in that order); then AddUnique (each declared UNIQUE column set the
    live table lacks, in sorted order), AddCheck (each declared CHECK whose printing no live CHECK has, in
    declared order), AddForeignKey (each declared foreign key the live table lacks, in declared order; replaces:
    the live one on the same columns and parent key, whose actions differ). A declared constraint with a name the
    live table holds on a constraint that differs replaces it (replaces: that name, dropped first; it would
    clash otherwise). Then per declared index, in order:
    CreateIndex (missing), RebuildInvalidIndex (live.invalid_indexes), RecreateIndex (its definition differs).
    What the database has beyond the declaration is kept (extras): it makes no record.

    printed: the dialect's printing of the declaration, so that each side is compared in the catalog's own text
    (PostgreSQL prints `CHECK ((x > 0))` for a declared `x > 0`, `bigint` for INTEGER). It answers:
    column(table, column): the Column as the catalog prints it (type, not_null, default);
    checks(table): [(declared name or None, the CHECK as the dialect writes it, as its catalog prints it, or a tuple of
    printings: _printings)],
    the CHECKs the dialect has (PostgreSQL drops json_valid on a jsonb column);
    foreign_key(table, fk): the ForeignKey as the catalog prints it (parent columns spelled out);
    index(ix): the Index as the catalog prints it.
    A record's name left "" is the dialect's to choose (its own naming pattern, free of clashes).
    """
    out = []
    for t in schema.ordered_tables():
        lt = live.table(t.name)
        if lt is not None:
            out += _table_in_place(t, lt, printed)
    for ix in schema.indexes:
        have = named(live.indexes.values(), ix.name)
        if have is None:
            out.append(CreateIndex(ix))
        elif have.name in live.invalid_indexes:
            out.append(RebuildInvalidIndex(ix))
        elif _index_key(printed.index(ix)) != _index_key(have):
            out.append(RecreateIndex(ix))
    return out


def view_change(want, have):
    """How a declared view the database has differs, compared in the dialect's printing: None (it does not),
    (True, why): replaced in place (CREATE OR REPLACE VIEW: the live columns, name and type, are the first of the
    declared ones), (False, why): dropped, and created again after the tables. want: the declared view's
    (definition, [(column, type)]) as the catalog prints it, or why it cannot be printed (its body does not run
    against the tables as they are before the migration); have: the live view's."""
    if isinstance(want, str):
        return False, "the declared body does not run against the tables as they are before this migration (%s)" % want
    if want == have:
        return None
    (_, want_cols), (_, live_cols) = want, have
    if want_cols[:len(live_cols)] == live_cols:
        return True, "its body differs from the declaration (as the server prints both)"
    return False, ("its body differs from the declaration (as the server prints both); its columns change (%s -> %s), "
                   "so CREATE OR REPLACE VIEW cannot replace it" % (", ".join(c for c, _ in live_cols),
                                                                   ", ".join(c for c, _ in want_cols)))


def view_changes(schema, live, printed):
    """The declared views the database has whose body differs (view_change), in declared order: ReplaceView, or
    DropViewOrTrigger and CreateViewOrTrigger. printed.view(view): (want, have) as view_change takes them, or
    None when the dialect cannot compare that view (it is left as it is)."""
    out = []
    for v in schema.views:
        if not any(n.lower() == v.name.lower() for n in live.views):
            continue
        shown = printed.view(v)
        change = view_change(*shown) if shown is not None else None
        if change is None:
            continue
        replace, why = change
        out += [ReplaceView(v.name, v.sql, why)] if replace else [DropViewOrTrigger(v.name, "view", why),
                                                                   CreateViewOrTrigger(v.name, v.sql, "view", why)]
    return out


def trigger_change(name, table, want, have):
    """Why a declared trigger the database has differs, compared in the dialect's printing, or None. want: the
    declared trigger's (definition, the function it runs) as the catalog prints them, None when its body
    creates no such trigger, or why it cannot be printed (its body does not run against the table as it is
    before the migration); have: the live trigger's."""
    if isinstance(want, str):
        return "the declared body does not run against the table as it is before this migration (%s)" % want
    if want is None:
        return "the declared body does not create trigger '%s' on '%s'" % (name, table)
    if want[0] != have[0]:
        return "its definition differs from the declaration (as the server prints both)"
    if want[1] != have[1]:
        return "the function it runs differs from the declaration's (as the server prints both)"
    return None


def trigger_changes(schema, live, printed):
    """A CreateViewOrTrigger (dropped and created again) for each declared trigger the database has whose
    definition differs (trigger_change), in declared order. printed.trigger(trigger): (want, have) as
    trigger_change takes them, or None when the dialect cannot compare that trigger (it is left as it is)."""
    out = []
    for t in schema.triggers:
        if not any(n.lower() == t.name.lower() for n in live.triggers):
            continue
        shown = printed.trigger(t)
        why = trigger_change(t.name, t.table, *shown) if shown is not None else None
        if why is not None:
            out.append(CreateViewOrTrigger(t.name, t.sql, "trigger", why + ": dropped and created again"))
    return out


def _table_in_place(decl, live, printed):
    out = []
    for c in decl.columns:
        got = live.column(c.name)
        if got is None:
            out.append(AddColumn(decl, c))
            continue
        want = printed.column(decl, c)
        if want.type != got.type:
            out.append(AlterColumnType(decl.name, c.name, want.type))
        if want.default != got.default:
            out.append(DropDefault(decl.name, c.name) if want.default is None else
                       SetDefault(decl.name, c.name, want.default.sql))
        if want.not_null and not got.not_null:
            out.append(SetNotNull(decl.name, c.name))
        elif got.not_null and not want.not_null:
            out.append(DropNotNull(decl.name, c.name))
    have = [[c.lower() for c in u.columns] for u in live.uniques]
    names = {tuple(c.lower() for c in u.columns): u.name for u in decl.uniques if u.name}
    for cols in sorted([c.lower() for c in u] for u in decl.all_uniques):
        if cols not in have:
            name = names.get(tuple(cols)) or ""
            out.append(AddUnique(decl.name, cols, name, replaces=_named(live.uniques, name)))
    live_checks = {k.expr for k in live.checks}
    for name, expr, shown in printed.checks(decl):
        if not live_checks.intersection(_printings(shown)):
            out.append(AddCheck(decl.name, expr, name or "", replaces=_named(live.checks, name)))
    have_fks = [_fk_key(f) for f in live.foreign_keys]
    for f in decl.foreign_keys:
        want = _fk_key(printed.foreign_key(decl, f))
        if want in have_fks:
            continue
        former = next((o.name for o in live.foreign_keys if _fk_key(o)[:3] == want[:3] and o.name), None) or \
            _named(live.foreign_keys, f.name)
        out.append(AddForeignKey(decl.name, want[0], want[1], f.name or "", former, foreign_key=f))
    return out


def _printings(shown):
    """A declared CHECK's printing, or its printings (a tuple: the declared column types', then the live ones' where
    a column's type changes, which the live CHECK keeps until that change reparses it)."""
    return shown if isinstance(shown, tuple) else (shown,)


def _named(constraints, name):
    """The live constraint that holds a declared constraint's name (its former version: the declaration names it,
    and it differs, or it would have matched), to be dropped before the declared one is added under that name;
    None for an unnamed declared constraint, or a name the table does not hold."""
    return next((k.name for k in constraints if name and k.name == name), None)


def kept_constraints(decl, live, printed):
    """The constraints the live table has beyond its declaration, which a dialect that changes a table in place
    keeps where they are (the user's own; SQLite's rebuild carries them instead): {"unique", "check",
    "foreign key": lines, each as extras writes one, in the live table's order}. A live foreign key that a
    declared one replaces (in_place_changes: same columns and parent key, other actions), and a live constraint
    of a declared constraint's name (in_place_changes' replaces), is not kept.
    printed: as in_place_changes takes it."""
    table = decl.name
    declared = [[c.lower() for c in u] for u in decl.all_uniques]
    shown = [p for _, _, one in printed.checks(decl) for p in _printings(one)]
    wanted = [_fk_key(printed.foreign_key(decl, f)) for f in decl.foreign_keys]
    have = [_fk_key(f) for f in live.foreign_keys]
    replaced = {w[:3] for w in wanted if w not in have and any(
        _fk_key(o)[:3] == w[:3] and o.name for o in live.foreign_keys)}
    named = {k.name for k in (*decl.uniques, *decl.checks, *decl.foreign_keys) if k.name}
    return {
        "unique": ["table '%s': UNIQUE (%s)" % (table, ", ".join(u.columns)) for u in live.uniques
                   if [c.lower() for c in u.columns] not in declared and u.name not in named],
        "check": ["table '%s': %s (constraint '%s')" % (table, k.expr, k.name) for k in live.checks
                  if k.expr not in shown and k.name not in named],
        "foreign key": ["table '%s': foreign key (%s) -> %s" % (table, ", ".join(f.columns), f.ref_table)
                        for f in live.foreign_keys if _fk_key(f) not in wanted and _fk_key(f)[:3] not in replaced
                        and (f.name is None or f.name not in named)],
    }


def _fk_key(f):
    """A foreign key as compared: columns, parent, parent columns, actions, deferrable (never its name)."""
    return (tuple(f.columns), f.ref_table, tuple(f.ref_columns), f.on_delete, f.on_update, f.deferrable)


def _index_key(ix):
    return (ix.table.lower(), bool(ix.unique), tuple((c.name, bool(c.desc), bool(c.expression)) for c in ix.columns),
            ix.where)


def rename_conflicts(schema, live):
    """The renames the file holds both ends of, as (kind, table, new, old) with the file's spelling: ("table",
    None, new, old) for a declared table found under its name whose former name is a table of the file too,
    ("column", table, new, old) likewise for a column. The rename cannot run and the old one is kept as the
    user's own: the planner refuses when it holds rows (loss.rename_problems, on both dialects)."""
    gone = {(r.kind, r.name.lower()) for r in schema.removed if r.kind == "table"}
    out = []
    for t in schema.ordered_tables():
        lt = live.table(t.name)
        if lt is not None:
            out += [("table", None, lt.name, live.table(n).name) for n in former_names(t)
                    if live.table(n) is not None and ("table", n.lower()) not in gone]
        lt = live_table(live, t)
        if lt is None:
            continue
        for c in t.columns:
            if lt.column(c.name) is not None:
                out += [("column", lt.name, lt.column(c.name).name, lt.column(n).name) for n in former_names(c)
                        if lt.column(n) is not None]
    return out


def _differing_columns(decl: Table, live: Table, mapping):
    """Declared columns present in the live table whose definition differs, with why."""
    exp = table_structure(decl)["columns"]
    act = table_structure(live)["columns"]
    out = []
    for name, source in mapping.items():
        if source is None:
            continue
        e, a = exp[name], act[source]
        if e["notnull"] != a["notnull"]:
            out.append((name, "column '%s' %s NOT NULL, which ALTER TABLE cannot change" % (
                name, "becomes" if e["notnull"] else "drops")))
        for key, label in (("type", "type"), ("default", "default"), ("pk", "primary key position"),
                           ("collate", "COLLATE")):
            if e.get(key) != a.get(key):
                out.append((name, "column '%s': %s %s -> %s, which ALTER TABLE cannot change" % (
                    name, label, a.get(key), e.get(key))))  # collate is absent for BINARY
    return out


def _constraint_sets(t: Table):
    s = table_structure(t)
    return s["autoincrement"], s["fks"], s["uniques"], s["checks"]


def table_changes(decl: Table, live: Table, live_info):
    """The changes that bring one existing live table to its declaration."""
    mapping = _column_map(decl, live)
    used = {v.lower() for v in mapping.values() if v}
    dropped = {n.lower(): why for n, why in live_info.get("dropped", {}).items()}
    extra_cols = [c for c in live.columns if c.name.lower() not in used and c.name.lower() not in dropped]
    reasons = [Reason("column-changed", why, (name,)) for name, why in _differing_columns(decl, live, mapping)]
    reasons += [Reason("column-removed", "column '%s' removed (%s)" % (c.name, dropped[c.name.lower()]), (c.name,))
                for c in live.columns if c.name.lower() in dropped and c.name.lower() not in used]
    d_auto, d_fks, d_uniq, d_checks = _constraint_sets(decl)
    l_auto, l_fks, l_uniq, l_checks = _constraint_sets(live)
    if d_auto != l_auto:
        reasons.append(Reason("autoincrement", "AUTOINCREMENT %s -> %s" % (l_auto, d_auto)))
    for key, label in (("without_rowid", "WITHOUT ROWID"), ("strict", "STRICT")):
        if getattr(decl, key) != getattr(live, key):
            reasons.append(Reason("table-option", "%s %s -> %s" % (label, getattr(live, key), getattr(decl, key))))
    new_cols = [c for c in decl.columns if mapping[c.name] is None]
    new_names = {c.name.lower() for c in new_cols}
    for f in d_fks:
        if f not in l_fks and not (len(f["columns"]) == 1 and f["columns"][0].lower() in new_names):
            reasons.append(Reason("foreign-key-new", "foreign key (%s) -> %s is new" % (", ".join(f["columns"]), f["table"]),
                                  f["columns"]))
    for u in d_uniq:
        if u not in l_uniq:
            reasons.append(Reason("unique-new", "UNIQUE (%s) is new" % ", ".join(u), u))
    for ch in d_checks:
        if ch not in l_checks:
            reasons.append(Reason("check-new", "CHECK (%s) is new" % ch))
    reasons += _conflict_changes(decl, live, mapping)
    reasons += [Reason("column-needs-rebuild", "new " + b, (c.name,))
                for c, b in ((c, add_column_blocker(decl, c)) for c in new_cols) if b]
    renames = [(mapping[c.name], c.name) for c in decl.columns
               if mapping[c.name] and mapping[c.name].lower() != c.name.lower()]
    if not reasons:
        changes = [RenameColumn(decl, old, new) for old, new in renames]
        for c in new_cols:
            changes.append(AddColumn(decl, c))
            if c.backfill:
                changes.append(Backfill(decl, c.name, c.backfill))
        return changes
    # The rebuild also carries what alone would have been an ALTER: say all of it, not only why it rebuilds.
    blocked = {c for r in reasons if r.kind == "column-needs-rebuild" for c in r.columns}
    reasons += [Reason("column-renamed", "column '%s' renamed to '%s'" % (old, new), (new,)) for old, new in renames]
    reasons += [Reason("column-new", "new column '%s'%s" % (c.name, " filled from %s" % c.backfill if c.backfill else ""),
                       (c.name,)) for c in new_cols if c.name not in blocked]
    repairs = [RepairForeignKey(decl, f) for f in decl.foreign_keys
               if f.repair and table_structure(Table(decl.name, decl.columns, foreign_keys=[f]))["fks"][0] not in l_fks]
    return repairs + [_rebuild(decl, live, live_info, mapping, extra_cols, reasons)]


def _conflict_changes(decl: Table, live: Table, mapping):
    """A changed ON CONFLICT clause of a constraint both tables have (only a rebuild changes one), live column
    names read as the declared ones they are renamed to."""
    to_decl = {source.lower(): name.lower() for name, source in mapping.items() if source}
    d, l = table_structure(decl), table_structure(live)
    d_map = structure.conflict_map(d)
    l_map = {(kind, tuple(to_decl.get(c, c) for c in cols)): r for (kind, cols), r in structure.conflict_map(l).items()}
    l_keys = {(kind, tuple(to_decl.get(c, c) for c in cols)) for kind, cols in structure.conflict_keys(l)}
    out = []
    for key in sorted((set(d_map) | set(l_map)) & structure.conflict_keys(d) & l_keys):
        was, now = l_map.get(key, "ABORT"), d_map.get(key, "ABORT")
        if was != now:
            kind, cols = key
            names = [next((c.name for c in decl.columns if c.name.lower() == x), x) for x in cols]
            out.append(Reason("on-conflict", "%s: ON CONFLICT %s -> %s" % (structure.conflict_label(kind, names), was, now),
                              names))
    return out


def _rebuild(decl, live, live_info, mapping, extra_cols, reasons):
    exp_cols = table_structure(decl)["columns"]
    act_cols = table_structure(live)["columns"]
    copy, not_null_checks, conversions = [], [], []
    for c in decl.columns:
        source = mapping[c.name]
        fill = c.backfill or (default_sql(c.default) if c.default is not None and is_constant_default(c.default) else None)
        if source is None:
            if c.backfill:
                copy.append((c.name, c.backfill))
            continue  # omitted from the copy: its DEFAULT applies
        expr = quote_identifier(source)
        if c.using and exp_cols[c.name]["type"] != act_cols[source]["type"]:  # a conversion: copy with using=
            expr = "(%s)" % c.using
            reasons = list(reasons) + [Reason("conversion", "column '%s' converted from %s with %s" % (
                c.name, act_cols[source]["type"] or "(no type)", c.using), (c.name,))]
        if exp_cols[c.name]["notnull"] and not (act_cols[source]["notnull"] and expr == quote_identifier(source)):
            if fill:
                expr = "COALESCE(%s, %s)" % (expr, fill)
            elif expr == quote_identifier(source):  # a conversion's NULLs are counted by the planner (check_data)
                not_null_checks.append((c.name, source))
        if expr != quote_identifier(source) and c.using:
            conversions.append((c.name, source, c.using, expr))
        copy.append((c.name, expr))
    _, d_fks, d_uniq, d_checks = _constraint_sets(decl)
    _, l_fks, l_uniq, l_checks = _constraint_sets(live)
    extra_names = {c.name.lower() for c in extra_cols}
    extra_constraints, dropped = [], []
    for ch in l_checks:
        if ch not in d_checks:
            if _mentions(ch, extra_names):
                extra_constraints.append("CHECK (%s)" % ch)
            else:
                dropped.append(Reason("dropped", "CHECK (%s) is not in the declaration: not carried" % ch))
    l_conflicts = structure.conflict_map(table_structure(live))
    for u in l_uniq:
        if u not in d_uniq and {x.lower() for x in u} & extra_names:
            resolution = l_conflicts.get(("UNIQUE", tuple(x.lower() for x in u)))
            extra_constraints.append("UNIQUE (%s)%s" % (", ".join(quote_identifier(x) for x in u),
                                                        " ON CONFLICT " + resolution if resolution else ""))
    for f in l_fks:
        if f not in d_fks and {x.lower() for x in f["columns"]} & extra_names:
            to = [quote_identifier(x) for x in f["to"] if x]
            extra_constraints.append("FOREIGN KEY (%s) REFERENCES %s%s ON DELETE %s ON UPDATE %s%s" % (
                ", ".join(quote_identifier(x) for x in f["columns"]), quote_identifier(f["table"]),
                " (%s)" % ", ".join(to) if to else "", f["on_delete"], f["on_update"],
                " DEFERRABLE " + f["deferrable"] if f.get("deferrable") else ""))
    extra_columns = []
    for c in extra_cols:
        definition = _strip_constraints(live_info["column_sql"].get(c.name, c.type))
        extra_columns.append((c.name, definition))
        if not is_generated(definition):  # a generated column is computed again by the new table, never copied
            copy.append((c.name, quote_identifier(c.name)))
    pk = decl.primary_key
    integer_pk = pk is not None and len(pk.columns) == 1 and decl.column(pk.columns[0]).type.upper() == "INTEGER"
    return RebuildTable(
        table=decl, copy=copy, extra_columns=extra_columns, extra_constraints=extra_constraints,
        keep_rowid=not (integer_pk or decl.without_rowid or live.without_rowid), autoincrement_from=bool(live.primary_key and live.primary_key.autoincrement),
        user_indexes=live_info["user_indexes"], reasons=list(reasons) + dropped, not_null_checks=not_null_checks,
        conversions=conversions)


def is_generated(definition):
    """True for the definition of a generated column (`... [GENERATED ALWAYS] AS (expr) [VIRTUAL|STORED]`)."""
    tokens = [(kind, text.lower()) for kind, text in tokenize(definition or "")]
    return any(tokens[k] == ("word", "as") and tokens[k + 1] == ("op", "(") for k in range(len(tokens) - 1))


def _mentions(expr, names):
    return any(kind in ("word", "ident") and text.lower() in names for kind, text in tokenize(expr))


def _strip_constraints(definition):
    """A kept column's definition without CHECK and REFERENCES clauses.

    Those come back as table constraints (the live table's CHECK and foreign
    key sets are carried whole), so they are not written twice.
    """
    tokens = tokenize(definition)
    out, k = [], 0
    while k < len(tokens):
        kind, text = tokens[k]
        low = text.lower() if kind == "word" else None
        if low == "constraint" and k + 2 < len(tokens) and tokens[k + 2][0] == "word" and tokens[k + 2][1].lower() in ("check", "references"):
            k += 2
            continue
        if low == "check" and k + 1 < len(tokens) and tokens[k + 1] == ("op", "("):
            k = matching_paren(tokens, k + 1) + 1
            continue
        if low == "references":
            k += 2
            if k < len(tokens) and tokens[k] == ("op", "("):
                k = matching_paren(tokens, k) + 1
            while k < len(tokens) and tokens[k][0] == "word" and tokens[k][1].lower() in (
                    "on", "delete", "update", "set", "null", "default", "cascade", "restrict", "no", "action",
                    "match", "simple", "partial", "full", "deferrable", "not", "initially", "deferred", "immediate"):
                if tokens[k][1].lower() == "not" and not (k + 1 < len(tokens) and tokens[k + 1][1].lower() == "deferrable"):
                    break
                k += 1
            continue
        out.append(tokens[k])
        k += 1
    return join_tokens(out)


def removals(schema, live, prune=None):
    """What goes: {(kind, name lowercased): Remove} for indexes, views, triggers and tables, and
    {table lowercased: {column: reason}} for columns. Declared removals of what the file no longer has are
    nothing to do; prune adds what the declaration does not have ("objects": indexes, views, triggers;
    "all": columns and tables too). Never sqlite_* objects, automatic indexes or virtual-table shadow
    tables: the introspection leaves those out."""
    if prune not in PRUNE:
        raise ValueError("prune must be one of %r" % (PRUNE,))
    objects, columns = {}, {}
    present = {"index": lambda n: named(live.indexes.values(), n),
               "view": lambda n: next((k for k in live.views if k.lower() == n.lower()), None),
               "trigger": lambda n: next((k for k in live.triggers if k.lower() == n.lower()), None),
               "table": lambda n: live.table(n) or named(live.virtual_tables.values(), n)}
    for r in schema.removed:
        if r.kind == "column":
            lt = live.table(r.table)
            if lt is not None and lt.column(r.name) is not None:
                columns.setdefault(lt.name.lower(), {})[lt.column(r.name).name] = "removed: " + r.reason
            continue
        found = present[r.kind](r.name)
        if found is not None:
            name = found if isinstance(found, str) else found.name
            objects[(r.kind, name.lower())] = Remove(r.kind, name, "removed: " + r.reason, table=_on(live, r.kind, name))
    if prune is None:
        return _indexes_on_removed_columns(schema, live, objects, columns), columns
    vtables = [v.lower() for v in live.virtual_tables]
    for name, ix in live.indexes.items():
        if schema.index(name) is None and ("index", name.lower()) not in objects and not parent_key_of(schema, live, ix):
            objects[("index", name.lower())] = Remove(
                "index", name, "not in the declaration (--prune)", table=ix.table, pruned=True,
                weakens="a UNIQUE index: nothing will keep its columns unique" if ix.unique else None)
    for name in live.views:
        if schema.view(name) is None and ("view", name.lower()) not in objects:
            objects[("view", name.lower())] = Remove("view", name, "not in the declaration (--prune)", pruned=True)
    for name, info in live.triggers.items():
        if schema.trigger(name) is None and ("trigger", name.lower()) not in objects:
            objects[("trigger", name.lower())] = Remove("trigger", name, "not in the declaration (--prune)",
                                                        table=info["table"], pruned=True,
                                                        weakens=_trigger_role(info["sql"], info["table"], vtables))
    if prune == "all":
        for name, lt in live.tables.items():
            decl = _declared_as(schema, live, name)
            if decl is None:
                if ("table", name.lower()) not in objects:
                    objects[("table", name.lower())] = Remove("table", name, "not in the declaration (--prune)",
                                                              pruned=True)
                continue
            used = {v.lower() for v in _column_map(decl, lt).values() if v}
            for c in lt.columns:
                if c.name.lower() not in used:
                    columns.setdefault(lt.name.lower(), {}).setdefault(c.name, "not in the declaration (--prune)")
        for name in live.virtual_tables:
            if schema.virtual_table(name) is None and ("table", name.lower()) not in objects:
                objects[("table", name.lower())] = Remove("table", name, "not in the declaration (--prune)", pruned=True)
    return _indexes_on_removed_columns(schema, live, objects, columns), columns


def _indexes_on_removed_columns(schema, live, objects, columns):
    """objects, plus a Remove for each undeclared index that names a column that goes: the rebuild without the
    column cannot keep it, so the plan drops it as a step of its own (and says so) rather than silently."""
    for name, ix in live.indexes.items():
        gone = columns.get(ix.table.lower(), {})
        if not gone or schema.index(name) is not None or ("index", name.lower()) in objects:
            continue
        hit = [c for c in gone if _mentions(live.index_sql.get(name) or "", {c.lower()})]
        if hit:
            objects[("index", name.lower())] = Remove(
                "index", name, "it indexes the removed column '%s'.'%s': it cannot stay once the column goes" % (
                    ix.table, hit[0]), table=ix.table,
                weakens="a UNIQUE index: nothing will keep its columns unique" if ix.unique else None)
    return objects


def parent_key_of(schema, live, ix):
    """The foreign keys (as "'child' (columns)") that use the UNIQUE index ix as their parent key: the live
    tables' and the declared ones'. --prune keeps such an index: without it every write to the child fails
    with "foreign key mismatch"."""
    if not ix.unique or ix.where or any(c.expression for c in ix.columns):
        return []
    wanted = sorted(c.name.lower() for c in ix.columns)
    out = []
    for tables in (live.tables.values(), schema.tables):
        for t in tables:
            for f in t.foreign_keys:
                if f.ref_table.lower() == ix.table.lower() and f.ref_columns \
                        and sorted(c.lower() for c in f.ref_columns) == wanted:
                    text = "'%s' (%s)" % (t.name, ", ".join(f.columns))
                    if text.lower() not in (o.lower() for o in out):
                        out.append(text)
    return out


def _declared_as(schema, live, name):
    """The declared table a live one is: by its name, or the one renamed from it (see live_table)."""
    decl = schema.table(name)
    if decl is None:
        decl = next((t for t in schema.tables if live_table(live, t) is not None
                     and live_table(live, t).name.lower() == name.lower()), None)
    return decl


def _on(live, kind, name):
    if kind == "index":
        return named(live.indexes.values(), name).table
    if kind == "trigger":
        return next(v["table"] for k, v in live.triggers.items() if k.lower() == name.lower())
    return None


def _trigger_role(sql, table, vtables):
    """What a trigger keeps up, in words, when its drop would weaken it: a full-text index, an audit trail."""
    words = [(k, t.lower()) for k, t in tokenize(sql)]
    targets = [words[i + 2][1] for i in range(len(words) - 2)
               if words[i][1] in ("insert", "replace") and words[i + 1][1] == "into" and words[i + 2][0] in ("word", "ident")]
    targets += [words[i + 1][1] for i in range(len(words) - 1)
                if words[i][1] in ("update", "delete") and words[i][0] == "word" and words[i + 1][0] in ("word", "ident")
                and words[i + 1][1] not in ("of", "on", "from", "set")]
    fts = sorted({t for t in targets if t in vtables})
    if fts:
        return "it maintains the full-text index '%s': searches will miss later changes" % fts[0]
    other = sorted({t for t in targets if t != table.lower() and t not in ("from",)})
    if other:
        return "it writes to '%s' (an audit trail or a derived table): those rows stop being kept" % other[0]
    return None


def diff(schema, live, prune=None, fragile=()):
    """Every change, in execution order, that brings `live` to `schema`.

    prune: None, "objects" (also drop undeclared indexes, views, triggers) or "all" (and undeclared columns
    and tables); see removals. fragile: {(kind, name lowercased): what SQLite says} of the views and triggers
    that do not hold already (dependents.unresolved): the RENAME of any rebuild would stop at them, so a
    rebuild drops and recreates them as it does its own dependents.
    """
    changes = []
    rebuilt = set()
    table_changes_list = []
    gone, gone_columns = removals(schema, live, prune)
    gone_indexes = {name for kind, name in gone if kind == "index"}
    for t in schema.ordered_tables():
        lt = live_table(live, t)
        if lt is None:
            changes.append(CreateTable(t))
            continue
        if lt.name.lower() != t.name.lower():  # the planner runs renames first and diffs the renamed file
            table_changes_list.append(RenameTable(t, lt.name))
        dropped = gone_columns.get(lt.name.lower(), {})
        info = {
            "column_sql": live.column_sql.get(lt.name, {}),
            "user_indexes": tuple((n, live.index_sql[n]) for n, ix in live.indexes.items()
                                  if ix.table.lower() == lt.name.lower() and schema.index(n) is None
                                  and n.lower() not in gone_indexes
                                  and not _mentions(live.index_sql[n], {c.lower() for c in dropped})),
            "dropped": dropped,
        }
        tc = table_changes(t, lt, info)
        table_changes_list += tc
        if any(isinstance(c, RebuildTable) for c in tc):
            rebuilt |= {t.name.lower(), lt.name.lower()}
    declared = {"view": {v.name.lower(): v for v in schema.views}, "trigger": {t.name.lower(): t for t in schema.triggers}}
    live_sql = {"view": {n.lower(): (n, sql) for n, sql in live.views.items()},
                "trigger": {n.lower(): (n, t["sql"]) for n, t in live.triggers.items()}}
    changed = {kind: {key for key, obj in declared[kind].items()
                      if key in live_sql[kind] and view_body(live_sql[kind][key][1]) != view_body(obj.sql)}
               for kind in declared}
    # undeclared tables that are dropped take their own undeclared views and triggers with them below
    removed_vt = [gone[k] for k in sorted(gone) if k[0] in ("view", "trigger")]
    # The views and triggers that name a rebuilt table are re-checked by the RENAME of its rebuild (and its
    # triggers go with its DROP): drop them for its duration and recreate them at the end (the declared ones
    # from the declaration, a user's own unchanged, the removed ones not). Every other one is left alone.
    through = rebuild_dependents(live, rebuilt, fragile)
    changes = removed_vt + [
        DropViewOrTrigger(live_sql[kind][key][0], kind, through[(kind, key)] if (kind, key) in through
                          else "definition changed: dropped and recreated")
        for kind in ("trigger", "view") for key in live_sql[kind]
        if ((kind, key) in through or key in changed[kind]) and (kind, key) not in gone] + changes
    changes += [gone[k] for k in sorted(gone) if k[0] == "index"]
    changes += [gone[k] for k in sorted(gone) if k[0] == "table"]
    changes += table_changes_list
    for ix in schema.indexes:
        live_ix = named(live.indexes.values(), ix.name)
        if ix.table.lower() in rebuilt:
            changes.append(CreateIndex(ix, "recreated after the rebuild of its table"))
        elif live_ix is None:
            changes.append(CreateIndex(ix))
        elif index_structure(ix, schema.table(ix.table)) != index_structure(live_ix, live.table(live_ix.table)):
            changes.append(DropIndex(live_ix.name, "definition changed"))
            changes.append(CreateIndex(ix, "definition changed: dropped and recreated"))
    for c in list(changes):
        if isinstance(c, RebuildTable):
            changes += [CreateIndexVerbatim(n, sql) for n, sql in c.user_indexes]
    for vt in schema.virtual_tables:
        live_vt = named(live.virtual_tables.values(), vt.name)
        if live_vt is None:
            if live.table(vt.name) is None:
                changes.append(CreateVirtualTable(vt))
            else:
                changes.append(VirtualTableChanged(vt.name, "virtual table '%s': the database has an ordinary table "
                                                            "of that name" % vt.name))
        elif virtual_table_structure(live_vt) != virtual_table_structure(vt):
            changes.append(VirtualTableChanged(vt.name, (
                "virtual table '%s' changed (USING %s(%s) in the database, %s(%s) declared): its rows live in the "
                "module's shadow tables, which schemagen does not copy; drop it in the database and apply again "
                "(then fill it anew), or declare it as it is" % (
                    vt.name, live_vt.module, live_vt.args, vt.module, vt.args))))
    for kind in ("view", "trigger"):
        changes += [CreateIndexVerbatim(name, sql, kind=kind, reason="recreated after the rebuild")
                    for key, (name, sql) in live_sql[kind].items()
                    if (kind, key) in through and key not in declared[kind] and (kind, key) not in gone
                    and not _stands_on_dropped(live, kind, name, gone)]
        for key, obj in declared[kind].items():
            if key not in live_sql[kind]:
                changes.append(CreateViewOrTrigger(obj.name, obj.sql, kind, "%s is new" % kind))
            elif (kind, key) in through or key in changed[kind]:
                changes.append(CreateViewOrTrigger(obj.name, obj.sql, kind, "recreated after the rebuild" if (
                    key not in changed[kind]) else "definition changed: dropped and recreated"))
    return changes


def rebuild_dependents(live, tables, fragile=()):
    """{(kind, name lowercased): why} of the views and triggers a rebuild of `tables` (lowercased names) touches:
    the triggers on a rebuilt table (its DROP takes them), and every view or trigger whose SQL names a rebuilt
    table or such a view (the RENAME of the rebuild re-checks them, and a view of a dropped view breaks too),
    and with any rebuild the fragile ones (see diff)."""
    names = set(tables)
    out = {}
    if tables:
        for key, what in dict(fragile).items():
            out[key] = ("dropped for the duration of the rebuild (its RENAME re-checks every view and trigger, and "
                        "this one does not hold already: %s), recreated at the end as it was" % what)
            if key[0] == "view":
                names.add(key[1])
    objects = [("view", n, sql, None) for n, sql in live.views.items()] + \
              [("trigger", n, t["sql"], t["table"]) for n, t in live.triggers.items()]
    grown = bool(names)
    while grown:
        grown = False
        for kind, name, sql, on in objects:
            key = (kind, name.lower())
            if key in out:
                continue
            via = on if on is not None and on.lower() in names else next(
                (text for k, text in tokenize(sql) if k in ("word", "ident") and text.lower() in names
                 and text.lower() != name.lower()), None)
            if via is None:
                continue
            out[key] = "dropped for the duration of the rebuild of '%s'%s, recreated at the end" % (
                via, "" if on is not None and via == on else " (it names it)") if via.lower() in tables else \
                "dropped with the view '%s' it names, recreated at the end" % via
            if kind == "view":
                names.add(name.lower())
            grown = True
    return out


def kept_views_on_dropped(schema, live, removes):
    """One sentence for each view the plan keeps (not declared, not removed) that reads a table the plan drops,
    directly or through another such view: the DROP cannot run while it stands (SQLite's rebuild RENAME re-checks
    every view, PostgreSQL's DROP TABLE refuses a dependent view), so the planner refuses before anything runs.
    removes: the plan's Remove records (removals)."""
    dropped = {r.name.lower(): r for r in removes if r.kind == "table"}
    goes = {r.name.lower() for r in removes if r.kind == "view"}
    kept = {n: sql for n, sql in live.views.items() if schema.view(n) is None and n.lower() not in goes}
    problems, names, grown = [], dict(dropped), bool(dropped)
    while grown:
        grown = False
        for name, sql in kept.items():
            if name.lower() in names:
                continue
            via = next((text for k, text in tokenize(sql) if k in ("word", "ident") and text.lower() in names
                        and text.lower() != name.lower()), None)
            if via is None:
                continue
            what = names[via.lower()]
            reads = ("table '%s', which the plan drops (%s)" % (what.name, what.reason) if isinstance(what, Remove)
                     else "view '%s', which reads it" % what)
            problems.append("view '%s' is not in the declaration and kept, but reads %s: the drop cannot run while "
                            "the view stands; declare removed(\"view\", \"%s\", \"why\") too, or apply --prune" % (
                                name, reads, name))
            names[name.lower()] = name
            grown = True
    return problems


def _stands_on_dropped(live, kind, name, gone):
    """A user's trigger on a table that is dropped goes with it (SQLite drops it too)."""
    if kind != "trigger":
        return False
    table = next(v["table"] for k, v in live.triggers.items() if k == name)
    return ("table", table.lower()) in gone


def extras(schema, live, prune=None):
    """What the database has beyond the declaration and keeps, one line each (what prune drops is not kept)."""
    gone, gone_columns = removals(schema, live, prune)
    return [line for line in _extras(schema, live) if not _is_gone(line, gone, gone_columns)]


def _is_gone(line, gone, gone_columns):
    for (kind, name) in gone:
        if line.startswith("%s '%s'" % ("virtual table" if kind == "table" and line.startswith("virtual") else kind, name)) \
                or line.lower().startswith("%s '%s'" % (kind, name)):
            return True
    for table, cols in gone_columns.items():
        if any(line.lower() == ("table '%s': column '%s'" % (table, c)).lower() for c in cols):
            return True
    return False


def _extras(schema, live):
    out = []
    for name, t in live.tables.items():
        decl = _declared_as(schema, live, name)
        if decl is None:
            out.append("table '%s' (%d column%s)" % (name, len(t.columns), "" if len(t.columns) == 1 else "s"))
            continue
        mapping = _column_map(decl, t)
        used = {v.lower() for v in mapping.values() if v}
        out += ["table '%s': column '%s'" % (name, c.name) for c in t.columns if c.name.lower() not in used]
    out += ["index '%s' on '%s'%s" % (n, ix.table, "".join(
                " (the parent key of the foreign key of %s: --prune keeps it)" % k for k in parent_key_of(schema, live, ix)[:1]))
            for n, ix in live.indexes.items() if schema.index(n) is None]
    out += ["virtual table '%s'" % n for n in live.virtual_tables if schema.virtual_table(n) is None]
    out += ["view '%s'" % n for n in live.views if schema.view(n) is None]
    out += ["trigger '%s' on '%s'" % (n, v["table"]) for n, v in live.triggers.items() if schema.trigger(n) is None]
    return out
