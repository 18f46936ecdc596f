"""The migration planner on PostgreSQL: PostgreSQL's own ALTERs, never a table rebuild.

What changes, and how (README, "PostgreSQL"):

- a new table: CREATE TABLE as rendered; a new column: ADD COLUMN (a NOT NULL one that needs a fill is added
  nullable, filled with UPDATE ... WHERE col IS NULL, then SET NOT NULL);
- a changed column: ALTER COLUMN TYPE, SET / DROP NOT NULL, SET / DROP DEFAULT;
- a new CHECK or FOREIGN KEY: ADD CONSTRAINT ... NOT VALID (a short lock, no scan), then VALIDATE CONSTRAINT
  (which scans under SHARE UPDATE EXCLUSIVE: writes go on); a foreign key whose actions change is dropped and
  added so;
- a new UNIQUE: CREATE UNIQUE INDEX, then ADD CONSTRAINT ... UNIQUE USING INDEX (UNIQUE cannot be NOT VALID);
- a renamed table or column (renamed_from, one former name or several): RENAME TO / RENAME COLUMN, first;
- removals (Schema.removed, --prune): DROP INDEX / VIEW / TRIGGER / TABLE, ALTER TABLE DROP COLUMN; what goes
  is counted (data_loss) before anything runs;
- with concurrently=True an index on a table that has rows is built CREATE INDEX CONCURRENTLY after COMMIT;
  an INVALID index (a failed concurrent build, pg_index.indisvalid = false) is rebuilt DROP INDEX CONCURRENTLY
  + CREATE INDEX CONCURRENTLY.

Every step that rewrites its table, or scans it, under ACCESS EXCLUSIVE (ALTER COLUMN TYPE, SET NOT NULL, ADD
COLUMN with a volatile default) says so in `lock`. A change that would lose or invent data is refused
(UnsafeMigrationError, nothing changed): rows that break a new CHECK, FOREIGN KEY or UNIQUE, NULLs in a column
that becomes NOT NULL without a fill.

The plan is computed on an open connection inside the caller's transaction, after the renames have run in it
(pg/migration.py): the rest is planned against the renamed tables, as the server itself prints them.

What is decided once for both dialects comes from migrate/, on the catalog read as a neutral Live
(introspect.neutral): the renames (diff.renames, and the refusal of one that cannot run: loss.rename_problems),
what goes (diff.removals: declared removals and --prune, what a drop weakens, the parent keys --prune keeps,
the indexes on removed columns), what is kept (diff.extras; the user's own constraints, which PostgreSQL keeps
in place, are added after them), what is lost (loss.data_loss, loss.repair_loss, loss.conversion_loss) and
which foreign keys declare a repair (RepairForeignKey), and what differs column by column, constraint by
constraint and index by index (diff.in_place_changes, handed this server's printing of the declaration by
_Printing, so that `(x > 0)` as printed meets the declared `x > 0`). This planner only says how: statements,
locks, NOT VALID + VALIDATE, CONCURRENTLY, USING, and the data checks that need the connection (rows that
break a new NOT NULL, CHECK, FOREIGN KEY or UNIQUE; values a conversion cannot convert). Each step carries the
change record it serves (Step.change, migrate/diff.py's closed set) and is kind-named after it; the Step and Plan are SQLite's
too (migrate/steps.py).
"""
from __future__ import annotations

from attrs import evolve

from ..compile.postgresql import Translator, Untranslatable, alter_statement
from ..errors import UnsafeMigrationError
from ..migrate import diff as d
from ..migrate import loss
from ..migrate.steps import Plan, Step
from ..model import Column, Expr, ForeignKey, Index, IndexColumn, Table
from . import bodies, catalog
from .introspect import canonical_checks, count, has_rows, neutral, on_postgresql, quote, volatile_functions
from ..words import plural

REPAIR_ROWS_SHOWN = 50  # rows a repair step names in its why
REWRITES = "rewrites the table under ACCESS EXCLUSIVE (reads and writes wait until it ends)"
SCANS = "scans the whole table under ACCESS EXCLUSIVE (reads and writes wait until it ends)"


def change_step(change, title, why, statements, **kw):
    """The Step (migrate/steps.py, both engines') that serves a neutral change record: its kind is the record's
    class name."""
    return Step(title, why, statements, change=change, **kw)


def _why(remove):
    return remove.reason + ("; weakens: " + remove.weakens if remove.weakens else "")


# --- renames: first, each on its own ---------------------------------------------------

def rename_steps(schema, live):
    """RENAME TO for each declared table found under a former name, then RENAME COLUMN for each column found
    under a former name: diff.renames, the one decision both dialects take."""
    steps = []
    for ch in d.renames(schema, neutral(live, schema)):
        if isinstance(ch, d.RenameTable):
            steps.append(change_step(ch, "rename table '%s' to '%s'" % (ch.old, ch.table.name),
                               ch.reason + " (renamed_from); RENAME TO keeps every row, index, constraint and view in "
                               "place", [alter_statement("rename_table", ch.old, ch.table.name)], table=ch.table.name))
        else:
            steps.append(change_step(ch, "rename column '%s'.'%s' to '%s'" % (ch.table.name, ch.old, ch.new),
                               ch.reason + " (renamed_from); RENAME COLUMN keeps every value in place",
                               [alter_statement("rename_column", ch.table.name, ch.old, ch.new)], table=ch.table.name))
    return steps


def check_renames(conn, schema, live, database):
    """UnsafeMigrationError for a declared rename whose old and new names both exist while the old one holds rows
    (a table) or non-NULL values (a column): the rename cannot run, and they would stay behind under the old
    name (loss.rename_problems, as on SQLite)."""
    problems = loss.rename_problems(lambda sql: count(conn, sql), schema, neutral(live, schema))
    if problems:
        raise UnsafeMigrationError("refusing to migrate %s, nothing was changed: %s" % (database, "; ".join(problems)))


# --- the rest --------------------------------------------------------------------------

class _Planner:
    def __init__(self, conn, schema, compiled, live, prune, concurrently):
        self.conn, self.schema, self.comp, self.live = conn, schema, compiled, live
        self.prune, self.concurrently = prune, concurrently
        self.expected = catalog.canonical_expected(conn, compiled.structure)
        self.checks = canonical_checks(conn, compiled.structure, compiled.parts, live)
        self.steps, self.problems, self.kept_constraints, self.loss, self.notes = [], [], [], [], []
        self._rows = {}
        self.taken = set(live["relations"]) | set(live["indexes"]) | set(live["constraint_indexes"])
        self.taken |= {k["name"] for ks in live["constraints"].values() for k in ks}
        # the neutral decisions, as on SQLite: what goes (declared removals, --prune) and what is kept
        self.declared = declared = on_postgresql(schema)
        self.neutral = neutral(live, declared, hidden=self._planned_unique_indexes())
        self.gone, self.gone_columns = d.removals(declared, self.neutral, prune)
        self.extras = d.extras(declared, self.neutral, prune)
        # and what differs column by column, constraint by constraint, index by index (in_place_changes), compared
        # in this server's printing; planned below table by table, in the order the statements run
        printing = _Printing(self.expected, self.checks, compiled.parts)
        self.changes = {}
        for ch in d.in_place_changes(declared, self.neutral, printing):
            self.changes.setdefault(_on(ch), []).append(ch)
        # the user's own constraints, kept in place (listed after extras, as each kind is planned)
        self.kept = {t.name: d.kept_constraints(t, self.neutral.table(t.name), printing) for t in declared.tables
                     if self.neutral.table(t.name) is not None}

    # helpers
    def rows(self, table):
        if table not in self._rows:
            self._rows[table] = count(self.conn, "SELECT count(*) FROM %s" % quote(table))
        return self._rows[table]

    def nonempty(self, table):
        return table in self.live["tables"] and (self._rows.get(table) or has_rows(self.conn, table))

    def add(self, change, title, why, statements, **kw):
        """A step that serves the change record `change` (its kind: the record's class name)."""
        self.steps.append(change_step(change, title, why, statements, **kw))

    def name(self, wanted):
        """A constraint or index name not yet taken in this schema (PostgreSQL's own pattern, numbered on clash)."""
        base, n = wanted[:63], 0
        while wanted in self.taken:
            n += 1
            wanted = "%s%d" % (base[:63 - len(str(n))], n)
        self.taken.add(wanted)
        return wanted

    def count(self, sql):
        return count(self.conn, sql)

    def removes(self, kind):
        """The neutral Remove records of one kind (diff.removals), in name order."""
        return [r for (k, _), r in sorted(self.gone.items()) if k == kind]

    def changed(self, table, *kinds):
        """The change records of in_place_changes on `table` (None: the indexes), of the given kinds, in order."""
        return [ch for ch in self.changes.get(table, []) if isinstance(ch, kinds)]

    def translate(self, table, sql):
        types = {c: info["type"] for c, info in self.expected["tables"][table]["columns"].items()}
        return Translator(types).translate(sql)

    # the plan
    def run(self):
        self.removals_first()
        for table in self.expected["tables"]:
            if table not in self.live["tables"]:
                ch = d.CreateTable(self.schema.table(table))
                self.add(ch, "create table '%s'" % table, ch.reason,
                         [s for k, n, s in self.comp.statements if k == "table" and n == table], table=table)
            else:
                self.table(table)
        for kind, table, sql in self.comp.statements:  # a new table's key to a table created after it (a cycle)
            if kind == "foreign key" and table not in self.live["tables"]:
                ch = d.CreateTable(self.schema.table(table), "its parent is created after it")
                self.add(ch, "add a foreign key to new table '%s'" % table, ch.reason, [sql], table=table)
        self.indexes()
        for table in self.expected["tables"]:
            self.uniques(table)
            self.checks_of(table)
        for table in self.expected["tables"]:
            self.fks(table)
        self.later_objects()
        self.dropped_tables()
        return self

    def changed_bodies(self):
        """The declared views and triggers whose live body differs: printed by the server (pg/bodies.py), decided
        by diff.view_changes and diff.trigger_changes."""
        views, triggers = bodies.declared_bodies(self.comp.statements, self.expected)
        ns = catalog.current_namespace(self.conn)
        self.view_bodies = views
        printings = bodies.view_printings(self.conn, ns, {n: b for n, b in views.items() if n in self.live["views"]})
        changes = d.view_changes(self.declared, self.neutral, _ViewPrinting(printings))
        self.view_drops = {ch.name: ch for ch in changes if isinstance(ch, d.DropViewOrTrigger)}
        self.view_drop_titles = {}
        self.changed_views = {ch.name: ch for ch in changes if not isinstance(ch, d.DropViewOrTrigger)}
        printings = bodies.trigger_printings(self.conn, ns, {n: v for n, v in triggers.items()
                                                             if n in self.live["triggers"]})
        changes = d.trigger_changes(self.declared, self.neutral, _TriggerPrinting(printings))
        self.changed_triggers = {ch.name: ch for ch in changes}

    def column_dependents(self):
        """The views and triggers PostgreSQL refuses to keep across this plan's ALTER COLUMN TYPE or DROP COLUMN
        ("cannot alter type of a column used by a view or rule", "other objects depend on it"), found in pg_depend,
        with the views that read those views: dropped first and created again after the tables, as SQLite's rebuild
        drops and recreates them (a declared one from the declaration, a user's own from the catalog's printing).
        A user's own view or trigger that reads a column the plan drops is refused, as on SQLite (its body would
        not run afterwards); so is a materialized view (DROP VIEW cannot drop it, and its rows would go)."""
        declared = on_postgresql(self.schema)
        columns = [(ch.table, ch.column, "changes type") for t in self.changes for ch in self.changes[t]
                   if isinstance(ch, d.AlterColumnType)]
        for table in self.expected["tables"]:
            gone = {c.lower() for c in self.gone_columns.get(table.lower(), {})}
            columns += [(table, c, "is dropped") for c in self.live["tables"].get(table, {}).get("columns", {})
                        if c not in self.expected["tables"][table]["columns"] and c.lower() in gone]
        self.user_objects, self.triggers_dropped = [], {}
        for table, column, what in columns:
            why = "reads column '%s'.'%s', which %s (PostgreSQL refuses while it stands): dropped first, created " \
                  "again after the tables" % (table, column, what)
            views = self.conn.execute(
                "SELECT DISTINCT v.oid, v.relname, v.relkind, pg_get_viewdef(v.oid) FROM pg_depend d "
                "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
                "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
                "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s::regclass AND a.attname = %s "
                "AND v.oid <> d.refobjid ORDER BY 2", (quote(table), column)).fetchall()
            seen = {oid for oid, _, _, _ in views}
            found = list(views)
            while found:  # the views that read those views
                found = [r for r in self.conn.execute(
                    "SELECT DISTINCT v.oid, v.relname, v.relkind, pg_get_viewdef(v.oid) FROM pg_depend d "
                    "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
                    "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = ANY(%s) AND v.oid <> d.refobjid "
                    "ORDER BY 2", ([oid for oid, _, _, _ in found],)).fetchall() if r[0] not in seen]
                seen |= {oid for oid, _, _, _ in found}
                views += found
            for _, name, relkind, query in views:
                mine = declared.view(name) is not None
                if ("view", name.lower()) in self.gone or name in self.view_drops:
                    continue
                if relkind != "v" or (not mine and what == "is dropped"):
                    self.problems.append(
                        "%sview '%s' reads column '%s'.'%s', which the plan %s: PostgreSQL refuses that while the "
                        "view stands%s; declare removed(\"view\", \"%s\", \"why\"), or drop it by hand first" % (
                            "materialized " if relkind != "v" else "", name, table, column,
                            "drops" if what == "is dropped" else "changes the type of",
                            " (and its rows would go)" if relkind != "v" else "", name))
                    continue
                self.view_drops[name] = d.DropViewOrTrigger(name, "view", why)
                self.view_drop_titles[name] = "drop view '%s' (created again below)" % name
                if mine:
                    self.changed_views[name] = d.CreateViewOrTrigger(
                        name, declared.view(name).postgresql or declared.view(name).sql, "view", why)
                else:
                    self.user_objects.append(d.CreateIndexVerbatim(
                        name, alter_statement("create_view_as", name, query), "view", "kept: " + why))
            for name, on, sql in self.conn.execute(
                    "SELECT DISTINCT t.tgname, c.relname, pg_get_triggerdef(t.oid) FROM pg_depend d "
                    "JOIN pg_trigger t ON t.oid = d.objid JOIN pg_class c ON c.oid = t.tgrelid "
                    "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
                    "WHERE d.classid = 'pg_trigger'::regclass AND d.refobjid = %s::regclass AND a.attname = %s "
                    "AND NOT t.tgisinternal ORDER BY 1", (quote(table), column)).fetchall():
                mine = declared.trigger(name) is not None
                if ("trigger", name.lower()) in self.gone or name in self.triggers_dropped:
                    continue
                if not mine and what == "is dropped":
                    self.problems.append(
                        "trigger '%s' on '%s' names column '%s'.'%s', which the plan drops: PostgreSQL refuses that "
                        "while the trigger stands; declare removed(\"trigger\", \"%s\", \"why\"), or drop it by "
                        "hand first" % (name, on, table, column, name))
                    continue
                self.triggers_dropped[name] = (on, why)
                if not mine:
                    self.user_objects.append(d.CreateIndexVerbatim(name, sql + ";", "trigger", "kept: " + why))

    def removals_first(self):
        self.changed_bodies()
        self.column_dependents()
        for r in self.removes("trigger"):
            self.add(r, "drop trigger '%s' on '%s'" % (r.name, r.table), _why(r),
                     [alter_statement("drop_trigger", r.name, r.table)], table=r.table)
        for name, (on, why) in sorted(self.triggers_dropped.items()):
            self.add(d.DropViewOrTrigger(name, "trigger", why), "drop trigger '%s' on '%s' (created again below)" % (
                name, on), why, [alter_statement("drop_trigger", name, on)], table=on)
        # the views that go and those dropped to be created again after the tables, together: a view before the
        # views it reads (a pruned view of a view dropped for a column change went after it, and apply failed)
        for ch in _readers_first(sorted([*self.view_drops.values(), *self.removes("view")], key=lambda c: c.name),
                                 self.neutral.views):
            if isinstance(ch, d.Remove):
                self.add(ch, "drop view '%s'" % ch.name, _why(ch), [alter_statement("drop_view", ch.name)])
            else:
                self.add(ch, self.view_drop_titles.get(ch.name, "drop view '%s' (its body changed; created again "
                                                                "below)" % ch.name),
                         ch.reason, [alter_statement("drop_view", ch.name)])
        for r in self.removes("index"):
            self.add(r, "drop index '%s' on '%s'" % (r.name, r.table), _why(r), [alter_statement("drop_index", r.name)],
                     table=r.table)

    def _planned_unique_indexes(self):
        out = set()
        for table, t in self.expected["tables"].items():
            for name, cols in self.comp.parts.get(table, {}).get("uniques", []):
                if name:
                    out.add(name)
            for cols in t["uniques"]:
                out.add(_unique_name(table, cols))
        return out

    def table(self, table):
        want, have = self.expected["tables"][table], self.live["tables"][table]
        parts = self.comp.parts[table]
        decl = self.schema.table(table)
        if want["primary_key"] != have["primary_key"]:
            self.problems.append("table '%s': PRIMARY KEY (%s) declared, the database has (%s); changing a primary key "
                                 "is not planned on PostgreSQL" % (table, ", ".join(want["primary_key"]),
                                                                    ", ".join(have["primary_key"])))
        for c, info in want["columns"].items():
            got = have["columns"].get(c)
            dc = decl.column(c)
            fill = None
            if dc is not None and dc.backfill:
                try:
                    fill = self.translate(table, dc.backfill)
                except Untranslatable as exc:
                    self.problems.append("table '%s', column '%s': backfill %s cannot be translated for PostgreSQL (%s)"
                                         % (table, c, dc.backfill, exc))
            changes = [ch for ch in self.changed(table, *COLUMN_KINDS) if _column(ch).lower() == c.lower()]
            if changes and isinstance(changes[0], d.AddColumn):
                self.add_column(changes[0], table, c, info, parts["columns"][_declared_name(parts, c)], fill)
            elif got is not None:
                self.change_column(table, c, info, got, fill, changes)
        gone = {c.lower(): why for c, why in self.gone_columns.get(table.lower(), {}).items()}
        for c in have["columns"]:  # a removed column is dropped in place (a Remove "column"), its values counted
            if c in want["columns"] or c.lower() not in gone:
                continue
            r = d.Remove("column", c, gone[c.lower()], table=table)
            lost = loss.data_loss(self.count, self.neutral, [r], self.rows)
            self.loss += lost
            self.add(r, "drop column '%s'.'%s' (%s)" % (table, c, plural(lost[0]["rows"], "non-NULL value")), r.reason,
                     [alter_statement("drop_column", table, c)], table=table, rows=lost[0]["rows"])

    def add_column(self, change, table, c, info, ctx, fill):
        ctx = dict(ctx, pk=None, unique=False, fk=None)
        if info["identity"]:
            self.problems.append("table '%s', column '%s': a new identity column is not planned on PostgreSQL" % (table, c))
            return
        rows = self.nonempty(table)
        later_not_null = info["notnull"] and rows and (fill is not None or info["default"] is None)
        if info["notnull"] and rows and fill is None and info["default"] is None:
            self.problems.append("table '%s', column '%s': new NOT NULL column with no default or backfill, and the "
                                 "table has %d rows; declare a default or a backfill" % (table, c, self.rows(table)))
            return
        if later_not_null:
            ctx["not_null"] = False
        volatile = volatile_functions(self.conn, info["default"]) if info["default"] and rows else []
        decl = self.schema.table(table)
        self.add(evolve(change, reason="column is new"), "add column '%s'.'%s'" % (table, c),
                 "column is new" + ("; its default calls %s, which is volatile: every row gets its own value" %
                                    ", ".join(volatile) if volatile else ""),
                 [alter_statement("add_column", table, ctx)], table=table, lock=REWRITES if volatile else None)
        if rows and fill is not None:
            ch = d.Backfill(decl, c, fill)
            self.add(ch, "fill column '%s'.'%s' (%d rows)" % (table, c, self.rows(table)), "%s with %s" % (ch.reason, fill),
                     [alter_statement("fill_column", table, c, fill)], table=table, rows=self.rows(table))
        if later_not_null:
            self.set_not_null(table, c, "the new column is NOT NULL, once filled")

    def set_not_null(self, table, c, why=None, change=None):
        ch = change if change is not None else d.SetNotNull(table, c) if why is None else d.SetNotNull(table, c, why)
        self.add(ch, "set column '%s'.'%s' NOT NULL" % (table, c), ch.reason, [alter_statement("set_not_null", table, c)],
                 table=table, lock=SCANS, rows=self.rows(table))

    def change_column(self, table, c, info, got, fill, changes):
        """The steps of one column's change records (AlterColumnType, Set/DropDefault, Set/DropNotNull), each with
        the data check it needs; a refused one (a problem recorded) ends the column's steps."""
        if info["identity"] != got["identity"]:
            self.problems.append("table '%s', column '%s': identity %s declared, %s in the database; not planned on "
                                 "PostgreSQL" % (table, c, info["identity"], got["identity"]))
            return
        default_dropped = False
        for ch in changes:
            if isinstance(ch, d.AlterColumnType):
                if not self.change_type(ch, table, c, info, got):
                    return
                # the old default went first (PostgreSQL cannot always cast it: "default for column cannot be cast
                # automatically"); the declared one is set again after the type
                default_dropped = got["default"] is not None
                if default_dropped and info["default"] is not None and not any(
                        isinstance(k, (d.SetDefault, d.DropDefault)) for k in changes):
                    self.set_default(d.SetDefault(table, c, info["default"]))
            elif isinstance(ch, d.SetDefault):
                self.set_default(ch)
            elif isinstance(ch, d.DropDefault):
                if not default_dropped:
                    self.add(ch, "drop the default of '%s'.'%s'" % (table, c), ch.reason,
                             [alter_statement("drop_default", table, c)], table=table)
            elif isinstance(ch, d.SetNotNull):
                nulls = count(self.conn, "SELECT count(*) FROM %s WHERE %s IS NULL" % (quote(table), quote(c)))
                fill = fill if fill is not None else info["default"]
                if nulls and fill is None:
                    self.problems.append("table '%s', column '%s': must become NOT NULL but %d rows hold NULL and no "
                                         "backfill or default is declared" % (table, c, nulls))
                    return
                if nulls:
                    bf = d.Backfill(self.schema.table(table), c, fill, "the column becomes NOT NULL: its NULLs are filled")
                    self.add(bf, "fill column '%s'.'%s' (%d NULLs)" % (table, c, nulls), "%s with %s" % (bf.reason, fill),
                             [alter_statement("fill_column", table, c, fill)], table=table, rows=nulls)
                self.set_not_null(table, c, change=ch)
            elif isinstance(ch, d.DropNotNull):
                self.add(ch, "drop NOT NULL of '%s'.'%s'" % (table, c), ch.reason,
                         [alter_statement("drop_not_null", table, c)], table=table)

    def set_default(self, ch):
        self.add(ch, "set the default of '%s'.'%s' to %s" % (ch.table, ch.column, ch.default), ch.reason,
                 [alter_statement("set_default", ch.table, ch.column, ch.default)], table=ch.table)

    def change_type(self, ch, table, c, info, got):
        """The ALTER COLUMN TYPE step of an AlterColumnType, with the declared conversion in PostgreSQL's text;
        False when it is refused (untranslatable, or values it cannot convert: a problem is recorded)."""
        using = self.using(table, c)
        if using is False:
            return False
        failed, keys = self.unconvertible(table, using or "%s::%s" % (quote(c), ch.type))
        if failed:
            self.problems.append("table '%s', column '%s': %d value%s PostgreSQL cannot convert to %s with USING %s "
                                 "(rows (%s) %s%s); declare using= or using_postgresql= that converts them (to "
                                 "NULL, say), or fix them in a data step" % (
                                     table, c, failed, "" if failed == 1 else "s", ch.type,
                                     using or "%s::%s" % (quote(c), ch.type),
                                     ", ".join(self.live["tables"][table]["primary_key"]) or "ctid",
                                     ", ".join(keys), ", ..." if failed > len(keys) else ""))
            return False
        if using is not None:
            self.conversion_loss(table, c, using, info)
        first = [alter_statement("drop_default", table, c)] if got["default"] is not None else []
        ch = evolve(ch, using=using)
        self.add(ch, "change the type of '%s'.'%s' from %s to %s" % (table, c, got["type"], ch.type),
                 "%s; each value is converted (USING %s), a value that cannot convert fails the apply, nothing "
                 "changed" % (ch.reason, using or "column::type"),
                 first + [alter_statement("alter_type", table, c, ch.type, using)],
                 table=table, lock=REWRITES, rows=self.rows(table),
                 detail={"column": c, "type": ch.type, "using": using or "%s::%s" % (quote(c), ch.type),
                         "default": info["default"], "notnull": info["notnull"]})
        return True

    def using(self, table, c):
        """A declared conversion's PostgreSQL text: using_postgresql=, else using= translated over the old row's
        columns; None: none declared (USING column::type); False: untranslatable (a problem is recorded)."""
        dc = self.schema.table(table).column(c)
        if dc is None or not (dc.using or dc.using_postgresql):
            return None
        if dc.using_postgresql:
            return dc.using_postgresql
        types = {name: info["type"] for name, info in self.live["tables"][table]["columns"].items()}
        try:
            return Translator(types).translate(dc.using)
        except Untranslatable as exc:
            self.problems.append("table '%s', column '%s': using=%s cannot be translated for PostgreSQL (%s); give "
                                 "using_postgresql=" % (table, c, dc.using, exc))
            return False

    def unconvertible(self, table, using):
        """(how many rows the conversion fails on, the keys of the first few): one scan when none fails (the usual
        case), else each row tried on its own, in a savepoint that is rolled back."""
        import psycopg  # the PostgreSQL path has it loaded already
        try:
            with self.conn.transaction(force_rollback=True):
                self.conn.execute("SELECT count(%s) FROM %s" % (using, quote(table)))
            return 0, []
        except psycopg.Error:
            pass
        pk = self.live["tables"][table]["primary_key"]
        key = " || ', ' || ".join("%s::text" % quote(k) for k in pk) if pk else "ctid::text"
        with self.conn.transaction(force_rollback=True):
            self.conn.execute("CREATE TEMP TABLE schemagen_unconvertible (k text) ON COMMIT DROP")
            self.conn.execute(
                "DO $schemagen$ DECLARE r record; BEGIN FOR r IN SELECT ctid AS t, %s AS k FROM %s LOOP BEGIN "
                "PERFORM %s FROM %s WHERE ctid = r.t; EXCEPTION WHEN others THEN "
                "INSERT INTO schemagen_unconvertible VALUES (r.k); END; END LOOP; END $schemagen$" % (
                    key, quote(table), using, quote(table)))
            n = self.conn.execute("SELECT count(*) FROM schemagen_unconvertible").fetchone()[0]
            keys = [r[0] for r in self.conn.execute("SELECT k FROM schemagen_unconvertible ORDER BY k LIMIT 5")]
        return n, keys

    def conversion_loss(self, table, c, using, info):
        """The non-NULL values the conversion turns into NULL (data loss), and NULLs under a NOT NULL (refused)."""
        lost = count(self.conn, "SELECT count(*) FROM %s WHERE %s IS NOT NULL AND (%s) IS NULL" % (
            quote(table), quote(c), using))
        if info["notnull"]:
            key = self.live["tables"][table]["primary_key"] or ["ctid"]
            found = self.conn.execute("SELECT %s FROM %s WHERE (%s) IS NULL ORDER BY 1 LIMIT 6" % (
                ", ".join(quote(k) if k != "ctid" else k for k in key), quote(table), using)).fetchall()
            if found:
                self.problems.append("table '%s', column '%s': NOT NULL, but the conversion USING %s gives NULL in rows "
                                     "(%s) %s%s; fix those rows in a data step, or give a using= that never gives NULL"
                                     % (table, c, using, ", ".join(key), ", ".join(
                                         str(r[0]) if len(r) == 1 else str(tuple(r)) for r in found[:5]),
                                        ", ..." if len(found) > 5 else ""))
        if lost:
            self.loss.append(loss.conversion_loss(table, c, lost, using))

    def indexes(self):
        for ch in self.changed(None, d.CreateIndex, d.RebuildInvalidIndex, d.RecreateIndex):
            name = ch.index.name
            table = self.expected["indexes"][name]["table"]
            ctx = self.comp.index_contexts[name]
            concurrent = bool(self.concurrently and self.nonempty(table))
            if isinstance(ch, d.CreateIndex):
                self.add(ch, "create index '%s' on '%s'%s" % (name, table, " CONCURRENTLY, after COMMIT" if concurrent else ""),
                         ch.reason, [alter_statement("create_index_pg", ctx, concurrently=concurrent)],
                         table=table, concurrent=concurrent)
            elif isinstance(ch, d.RebuildInvalidIndex):
                self.add(ch, "rebuild INVALID index '%s' on '%s' CONCURRENTLY, after COMMIT" % (name, table), ch.reason,
                         [alter_statement("drop_index", name, concurrently=True),
                          alter_statement("create_index_pg", ctx, concurrently=True)], table=table, concurrent=True)
            else:
                self.add(ch, "recreate index '%s' on '%s'%s" % (name, table, " CONCURRENTLY, after COMMIT" if concurrent else ""),
                         ch.reason, [alter_statement("drop_index", name, concurrently=concurrent),
                                     alter_statement("create_index_pg", ctx, concurrently=concurrent)],
                         table=table, concurrent=concurrent)

    def uniques(self, table):
        if table not in self.live["tables"]:
            return
        for ch in self.changed(table, d.AddUnique):
            cols = list(ch.columns)
            name = ch.name or _unique_name(table, cols)
            dupes = count(self.conn, "SELECT count(*) FROM (SELECT 1 FROM %s WHERE %s GROUP BY %s HAVING count(*) > 1) s"
                          % (quote(table), " AND ".join("%s IS NOT NULL" % quote(c) for c in cols),
                             ", ".join(quote(c) for c in cols))) if all(
                c in self.live["tables"][table]["columns"] for c in cols) else 0
            if dupes:
                self.problems.append("table '%s': new UNIQUE (%s) but %s of existing rows %s a value"
                                     % (table, ", ".join(cols), plural(dupes, "group"), "shares" if dupes == 1 else "share"))
                continue
            existing = self.live["indexes"].get(name)
            concurrent = bool(self.concurrently and self.nonempty(table))
            ctx = {"name": name, "table": table, "unique": True, "where": None, "serves": [], "comment": "",
                   "columns": [{"name": c, "desc": False, "expression": False, "collate": None} for c in cols]}
            statements = [alter_statement("drop_constraint", table, ch.replaces)] if ch.replaces else []
            if existing is not None and (not existing["valid"] or existing["columns"] != [[c, False] for c in cols]
                                         or not existing["unique"] or existing["where"]):
                concurrent = concurrent or not existing["valid"]
                statements.append(alter_statement("drop_index", name, concurrently=concurrent))
                existing = None
            if existing is None:
                statements.append(alter_statement("create_index_pg", ctx, concurrently=concurrent))
            statements.append(alter_statement("add_unique_using_index", table, name, name))
            self.taken.add(name)
            ch = evolve(ch, name=name)
            self.add(ch, "add UNIQUE (%s) to '%s' by index '%s'%s" % (", ".join(cols), table, name,
                                                                      " CONCURRENTLY, after COMMIT" if concurrent else ""),
                     "%s%s; UNIQUE cannot be NOT VALID, so the unique index is built first and the constraint takes "
                     "it over (ADD CONSTRAINT ... UNIQUE USING INDEX)" % (
                         ch.reason, " (the one of its name differs: it is dropped)" if ch.replaces else ""),
                     statements, table=table, concurrent=concurrent)
        self.kept_constraints += self.kept.get(table, {}).get("unique", [])

    def checks_of(self, table):
        if table not in self.live["tables"]:
            return
        for ch in self.changed(table, d.AddCheck):
            expr = ch.expr
            broken = count(self.conn, "SELECT count(*) FROM %s WHERE NOT (%s)" % (quote(table), expr)) if all(
                c in self.live["tables"][table]["columns"] for c in self.expected["tables"][table]["columns"]) else 0
            if broken:
                self.problems.append("table '%s': new CHECK (%s) but %d existing rows break it" % (table, expr, broken))
                continue
            name = ch.name or self.name("%s_check" % table)
            ch = evolve(ch, name=name)
            first = [alter_statement("drop_constraint", table, ch.replaces)] if ch.replaces else []
            self.add(ch, "add CHECK (%s) to '%s' NOT VALID, then VALIDATE" % (expr, table),
                     "%s%s: added NOT VALID (no scan under ACCESS EXCLUSIVE), then validated (a scan that lets writes "
                     "go on)" % (ch.reason, " (the one of its name differs: it is dropped)" if ch.replaces else ""),
                     first + [alter_statement("add_constraint_not_valid", table,
                                              {"kind": "check", "expr": expr, "name": name}),
                              alter_statement("validate_constraint", table, name)], table=table)
        self.kept_constraints += self.kept.get(table, {}).get("check", [])

    def fks(self, table):
        if table not in self.live["tables"]:
            return
        want = self.comp.parts[table]["fks"]
        decl = self.schema.table(table)
        for ch in self.changed(table, d.AddForeignKey):
            _, fk, ctx = want[next(n for n, f in enumerate(decl.foreign_keys) if f is ch.foreign_key)]
            statements, former = [], ch.replaces
            if former is not None:  # its actions (or, under its declared name, its keys) changed: dropped first
                statements.append(alter_statement("drop_constraint", table, former))
            orphans = self.orphans(table, fk)
            repair = self.declared_repair(table, fk)
            if orphans and repair is not None:
                self.repair(table, fk, repair, orphans)
                orphans = 0
            if orphans:
                shown = [("%s %s" % (label, key), values)
                         for label, key, values in self.orphan_rows(table, fk, loss.ORPHANS_SHOWN)]
                self.problems.append(loss.orphans_refused(table, fk["columns"], fk["table"], orphans, shown))
                continue
            # the one it replaces is dropped first, in the same transaction: its name is free again
            name = ch.name or former or self.name("%s_%s_fkey" % (table, "_".join(fk["columns"])))
            statements += [alter_statement("add_constraint_not_valid", table, dict(ctx, name=name)),
                           alter_statement("validate_constraint", table, name)]
            ch = evolve(ch, name=name)
            self.add(ch, "add foreign key (%s) -> %s to '%s' NOT VALID, then VALIDATE" % (
                ", ".join(fk["columns"]), fk["table"], table),
                "%s%s: added NOT VALID (no scan under a lock that stops writes), then validated" % (
                    ch.reason, " (its actions changed: the old one is dropped)" if len(statements) > 2 else ""),
                statements, table=table)
        self.kept_constraints += self.kept.get(table, {}).get("foreign key", [])

    def declared_repair(self, table, fk):
        """The RepairForeignKey record (migrate/diff.py) of the declared foreign key that the new fk stands for when
        it declares a repair ("set null" / "delete"), else None: the existing rows that break it are then refused."""
        decl = self.schema.table(table)
        for f in (decl.foreign_keys if decl is not None else ()):
            if [c.lower() for c in f.columns] == fk["columns"] and f.ref_table.lower() == fk["table"] and f.repair:
                return d.RepairForeignKey(decl, f)
        return None

    def orphan_rows(self, table, fk, limit):
        """The first `limit` rows of table that break fk, ordered by their PRIMARY KEY (else the key's columns),
        as (the key's columns, the key's values, "column = value" of the foreign key's columns) text triples."""
        cols = fk["columns"]
        keys = self.live["tables"][table]["primary_key"] or cols
        present = " AND ".join("c.%s IS NOT NULL" % quote(c) for c in cols)
        missing = "true" if fk["table"] not in self.live["tables"] else "NOT EXISTS (SELECT 1 FROM %s p WHERE %s)" % (
            quote(fk["table"]), " AND ".join("p.%s = c.%s" % (quote(p), quote(c)) for c, p in zip(cols, fk["to"])))
        found = self.conn.execute("SELECT %s, %s FROM %s c WHERE %s AND %s ORDER BY %s LIMIT %d" % (
            ", ".join("c.%s" % quote(k) for k in keys), ", ".join("c.%s" % quote(c) for c in cols), quote(table),
            present, missing, ", ".join("c.%s" % quote(k) for k in keys), limit)).fetchall()
        return [(", ".join(keys), ", ".join(repr(v) for v in r[:len(keys)]),
                 ", ".join("%s = %r" % (c, v) for c, v in zip(cols, r[len(keys):]))) for r in found]

    def repair(self, table, fk, change, n):
        """The step that sets NULL (or deletes) exactly the rows that would break fk, before it is added, naming
        their keys; a delete is data loss (loss.repair_loss, as on SQLite)."""
        repair = change.foreign_key.repair
        cols = fk["columns"]  # (repair='set null' on a NOT NULL column is a declaration error)
        shown = self.orphan_rows(table, fk, REPAIR_ROWS_SHOWN)
        label = shown[0][0] if shown else ", ".join(self.live["tables"][table]["primary_key"] or cols)
        rows = "; ".join("%s %s (%s)" % row for row in shown) + (
            "; ... (%d more)" % (n - len(shown)) if n > len(shown) else "")
        what = "set %s NULL in" % ", ".join(cols) if repair == "set null" else "delete"
        self.add(change, "%s %s of '%s' (%s %s%s): no parent in '%s'" % (
            what, plural(n, "row"), table, label, (", " if "," not in label else "; ").join(k for _, k, _ in shown[:10]),
            " ..." if n > 10 else "", fk["table"]),
            "%s (declared repair=%r on %s): the rows that would break it: %s" % (
                change.reason, repair, loss.fk_text(change.foreign_key), rows),
            [alter_statement("repair_rows", repair, table, cols, fk["table"], fk["to"])], table=table, rows=n)
        lost = loss.repair_loss(table, change, n)
        if lost is not None:
            self.loss.append(lost)

    def orphans(self, table, fk):
        live_cols = self.live["tables"][table]["columns"]
        if any(c not in live_cols for c in fk["columns"]):
            return 0  # a new column: NULL in every row
        present = " AND ".join("c.%s IS NOT NULL" % quote(c) for c in fk["columns"])
        if fk["table"] not in self.live["tables"]:
            return count(self.conn, "SELECT count(*) FROM %s c WHERE %s" % (quote(table), present))
        match = " AND ".join("p.%s = c.%s" % (quote(p), quote(c)) for c, p in zip(fk["columns"], fk["to"]))
        return count(self.conn, "SELECT count(*) FROM %s c WHERE %s AND NOT EXISTS (SELECT 1 FROM %s p WHERE %s)" % (
            quote(table), present, quote(fk["table"]), match))

    def later_objects(self):
        for kind, key in (("virtual table", "virtual_tables"), ("view", "views"), ("trigger", "triggers")):
            for name in self.expected.get(key, {}):
                there = name in self.live["relations"] if kind != "trigger" else name in self.live["triggers"]
                body = [s for k, n, s in self.comp.statements if k == kind and n == name]
                if kind == "view" and name in self.changed_views:
                    change = self.changed_views[name]
                    if isinstance(change, d.ReplaceView):
                        why = change.reason + ("; its columns stay as they are (new ones at the end), so it is "
                                               "replaced in place")
                        sql = bodies.replace_view_sql(self.view_bodies[name])
                        self.add(evolve(change, sql=sql, reason=why),
                                 "replace view '%s' (CREATE OR REPLACE VIEW)" % name, why, [sql])
                    else:
                        self.add(evolve(change, sql="\n".join(body)), "create view '%s' again" % name, change.reason,
                                 body)
                    continue
                if kind == "trigger" and name in self.triggers_dropped:  # dropped first (column_dependents)
                    table = self.expected["triggers"][name]
                    why = self.triggers_dropped[name][1]
                    self.add(d.CreateViewOrTrigger(name, "\n".join(body), "trigger", why),
                             "create trigger '%s' on '%s' again" % (name, table), why, body, table=table)
                    continue
                if kind == "trigger" and name in self.changed_triggers:  # dropped and created in one step
                    table = self.expected["triggers"][name]
                    ch = self.changed_triggers[name]
                    self.add(evolve(ch, sql="\n".join(body)), "recreate trigger '%s' on '%s'" % (name, table),
                             ch.reason, [alter_statement("drop_trigger", name, table)] + body, table=table)
                    continue
                if not there:
                    ch = (d.CreateVirtualTable(self.schema.virtual_table(name)) if kind == "virtual table" else
                          d.CreateViewOrTrigger(name, "\n".join(body), kind, "%s is new" % kind))
                    self.add(ch, "create %s '%s'" % (kind, name), "%s is new" % kind, body)
        for ch in self.user_objects:  # the user's own, dropped for a column change (column_dependents), as they were
            self.add(ch, "recreate %s '%s'" % (ch.kind, ch.name), ch.reason, [ch.sql])

    def dropped_tables(self):
        for r in self.removes("table"):
            if self.neutral.table(r.name) is None:  # a declared virtual table's counterpart stands only when declared
                continue
            lost = loss.data_loss(self.count, self.neutral, [r], self.rows)
            self.loss += lost
            self.steps.append(change_step(r, "drop table '%s' (%s)" % (r.name, plural(lost[0]["rows"], "row")), r.reason,
                                    [alter_statement("drop_table", r.name)], table=r.name, rows=lost[0]["rows"]))


def _readers_first(removes, views):
    """The view removals ordered so that a view is dropped before the views it reads: PostgreSQL refuses to drop
    a view another one reads (name order dropped a pruned view before a pruned view on it, and apply failed).
    views: {name: the live view's SQL}."""
    from ..sqlite.ddl import tokenize  # only when views are dropped
    sql = {n.lower(): s for n, s in views.items()}
    reads = {r.name.lower(): {t.lower() for k, t in tokenize(sql.get(r.name.lower(), "")) if k in ("word", "ident")}
             for r in removes}
    left, out = list(removes), []
    while left:
        free = [r for r in left if not any(o is not r and r.name.lower() in reads[o.name.lower()] for o in left)]
        free = free or left[:1]  # a cycle cannot be among views; keep name order if one were read
        out.append(free[0])
        left.remove(free[0])
    return out


COLUMN_KINDS = (d.AddColumn, d.AlterColumnType, d.SetDefault, d.DropDefault, d.SetNotNull, d.DropNotNull)


def _on(change):
    """The table name an in-place change record concerns (None: an index record, planned after the tables)."""
    table = getattr(change, "table", None)
    return table.name if isinstance(table, Table) else table


def _column(change):
    return change.column.name if isinstance(change, d.AddColumn) else change.column


class _Printing:
    """The declaration as this server prints it, which diff.in_place_changes compares the live tables with: the
    types and defaults of catalog.canonical_expected, the CHECKs of introspect.canonical_checks (with the text
    each is added with), the compiled foreign keys (parent columns spelled out) and index keys."""

    def __init__(self, expected, checks, parts):
        self.expected, self._checks, self.parts = expected, checks, parts

    def column(self, table, column):
        info = self.expected["tables"][table.name]["columns"][column.name]
        return Column(column.name, info["type"], not_null=info["notnull"],
                      default=Expr(info["default"]) if info["default"] is not None else None)

    def checks(self, table):
        return [(name, expr, printed) for (name, printed), (_, expr) in zip(self._checks.get(table.name, []),
                                                                           self.parts[table.name]["checks"])]

    def foreign_key(self, table, fk):
        _, f, _ = self.parts[table.name]["fks"][next(n for n, k in enumerate(table.foreign_keys) if k is fk)]
        return ForeignKey(f["columns"], f["table"], f["to"], on_delete=f["on_delete"], on_update=f["on_update"],
                          deferrable=f["deferrable"])

    def index(self, ix):
        e = self.expected["indexes"][ix.name]
        return Index(ix.name, e["table"], [IndexColumn(k["expr"], desc, expression=True) if isinstance(k, dict)
                                           else IndexColumn(k, desc) for k, desc in e["columns"]],
                     unique=e["unique"], where=e["where"])


class _ViewPrinting:
    """The declared and live views as this server prints them (bodies.view_printings), for diff.view_changes."""

    def __init__(self, printings):
        self.printings = printings

    def view(self, view):
        return self.printings.get(view.name)


class _TriggerPrinting:
    """The declared and live triggers as this server prints them (bodies.trigger_printings), for
    diff.trigger_changes."""

    def __init__(self, printings):
        self.printings = printings

    def trigger(self, trigger):
        return self.printings.get(trigger.name)


def _declared_name(parts, column):
    return next(n for n in parts["columns"] if n.lower() == column)


def _unique_name(table, cols):
    return ("%s_%s_key" % (table, "_".join(cols)))[:63]


def plan_rest(conn, schema, compiled, live, database, prune=None, concurrently=False):
    """The steps after the renames, against the live structure as read in the caller's transaction."""
    p = _Planner(conn, schema, compiled, live, prune, concurrently).run()
    p.problems += d.kept_views_on_dropped(on_postgresql(schema), p.neutral, p.gone.values())
    if p.problems:
        raise UnsafeMigrationError("refusing to migrate %s, nothing was changed: %s" % (database, "; ".join(p.problems)))
    for ref in p.live["not_valid"]:
        p.notes.append("constraint %s: NOT VALID (existing rows are not checked; kept so)" % ref)
    steps = [s for s in p.steps if not s.concurrent] + [s for s in p.steps if s.concurrent]  # in the order they run
    return Plan(steps, database=database, extras=p.extras + p.kept_constraints, data_loss=p.loss, notes=p.notes)


def combine(database, renames, rest):
    return Plan(list(renames) + list(rest.steps), database=database, extras=rest.extras, data_loss=rest.data_loss,
                notes=rest.notes)


# --- text ------------------------------------------------------------------------------

def format_plan(plan):
    """The plan for a person: the steps, which hold ACCESS EXCLUSIVE while they rewrite or scan, what runs after
    COMMIT, then each step with why and its statements."""
    if plan.up_to_date:
        lines = ["up to date: nothing to do (%s, PostgreSQL)" % plan.database]
    else:
        after = plan.concurrent
        lines = ["%s (PostgreSQL): %s, %s, in one transaction%s:" % (
            plan.database, plural(len(plan.steps), "step"), plural(len(plan.statements), "statement"),
            "; then %d built CONCURRENTLY after COMMIT" % len(after) if after else "")]
        for n, s in enumerate(plan.steps, start=1):
            lines.append("  %d. %s%s" % (n, s.title, "  [ACCESS EXCLUSIVE]" if s.lock else ""))
        if plan.access_exclusive:
            lines += ["", "holds ACCESS EXCLUSIVE on its table while it rewrites or scans every row:"]
            lines += ["  - step %d, %s: %s" % (plan.steps.index(s) + 1, s.title, s.lock) for s in plan.access_exclusive]
        lines += ["", "Each step, why, and its statements:"]
        for n, s in enumerate(plan.steps, start=1):
            lines += ["", "%d. %s" % (n, s.title), "   why: %s" % s.why]
            if s.lock:
                lines.append("   lock: %s" % s.lock)
            if s.concurrent:
                lines.append("   runs after COMMIT, outside the transaction")
            lines += ["   " + line for st in s.statements for line in st.splitlines()]
    if plan.data_loss:
        lines += ["", "loses data (PostgreSQL has no file backup: apply needs --allow-data-loss, and --yes off a "
                      "terminal):"]
        lines += ["  - %s" % d["text"] for d in plan.data_loss]
    if plan.extras:
        lines += ["", "kept, not in the declaration (--prune drops indexes, views and triggers):"]
        lines += ["  - %s" % e for e in plan.extras]
    lines += ["  note: %s" % n for n in plan.notes]
    return "\n".join(lines)
