"""The declaration API and Database can be learned from their own help: docstrings with examples, fk() with
every ForeignKey option, and Database's real keyword parameters."""
import doctest
import inspect

import attrs
import pytest

from schema_dsl import Database, model
from schema_dsl import database as database_mod
from schema_dsl.model import Column, ForeignKey, PrimaryKey, Schema, Table, fk


def _public_model_names():
    """Every public class and function model.py defines (not the ones it imports), with their public members."""
    out = []
    for name, obj in sorted(vars(model).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != model.__name__:
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        out.append((name, obj))
        if inspect.isclass(obj):
            for member, value in vars(obj).items():
                if not member.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
                    out.append(("%s.%s" % (name, member), value))
    return out


def _public_database_names():
    """Database and what Database("postgresql://...") returns (PgDatabase), with their public members."""
    try:
        from schema_dsl.pg.database import PgDatabase   # needs psycopg (the postgresql extra)
    except ImportError:  # pragma: no cover - installed without the postgresql extra
        PgDatabase = None
    out = []
    for cls in (Database, PgDatabase) if PgDatabase else (Database,):
        out.append((cls.__name__, cls))
        for member, value in vars(cls).items():
            if (not member.startswith("_") or member.startswith("_create_")) and \
                    (inspect.isfunction(value) or isinstance(value, property)):
                out.append(("%s.%s" % (cls.__name__, member), value))
    return out


def _has_example(doc):
    return bool(doc) and (">>>" in doc or "Example" in doc)


def test_the_public_names_are_found():
    names = {n for n, _ in _public_model_names()}
    assert {"Table", "Column", "ForeignKey", "PrimaryKey", "Unique", "Check", "fk", "Schema", "removed",
            "Table.column", "Schema.table"} <= names
    assert {"Database.initialize", "Database.connect", "Database.explain_query_plan"} <= {n for n, _ in _public_database_names()}


@pytest.mark.parametrize("name,obj", _public_model_names() + _public_database_names(), ids=[n for n, _ in _public_model_names() + _public_database_names()])
def test_every_public_name_has_a_docstring_with_an_example(name, obj):
    doc = obj.__doc__
    assert _has_example(doc), "%s: expected a docstring with an example ('>>>' or 'Example'), got %r" % (name, doc)


def test_the_examples_in_model_run():
    """The >>> examples are doctests: they run, and they show what really comes back."""
    result = doctest.testmod(model, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 30
    assert result.failed == 0


def test_fk_takes_every_option_foreign_key_takes():
    fk_params = set(inspect.signature(fk).parameters)
    renamed = {"columns": "column", "ref_columns": "ref_column"}  # fk() is the single-column form
    for f in attrs.fields(ForeignKey):
        assert renamed.get(f.name, f.name) in fk_params, "fk() has no %s=" % f.name


def test_fk_passes_repair_and_name_on():
    f = fk("parent_id", "folders", "id", on_delete="SET NULL", repair="set null", name="fk_parent")
    assert f.repair == "set null" and f.name == "fk_parent"
    assert f == ForeignKey(["parent_id"], "folders", ["id"], on_delete="SET NULL", name="fk_parent")
    with pytest.raises(ValueError, match="repair"):
        fk("parent_id", "folders", "id", repair="drop")


def test_fk_keeps_its_positional_form():
    f = fk("task_id", "tasks", "id", "CASCADE", "NO ACTION", "INITIALLY DEFERRED")
    assert (f.on_delete, f.on_update, f.deferrable) == ("CASCADE", "NO ACTION", "INITIALLY DEFERRED")


def test_database_has_real_keyword_parameters():
    sig = inspect.signature(Database)
    kinds = {p.kind for p in sig.parameters.values()}
    assert inspect.Parameter.VAR_POSITIONAL not in kinds and inspect.Parameter.VAR_KEYWORD not in kinds
    assert list(sig.parameters) == ["db_path", "schema", "backup", "lock_timeout", "statement_timeout", "settings"]
    assert sig.parameters["lock_timeout"].default == database_mod.DEFAULT_LOCK_TIMEOUT_S
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for n, p in sig.parameters.items() if n != "db_path")


def test_database_calls_as_before(tmp_path):
    schema = Schema("s", tables=[Table("t", [Column("id", "INTEGER")], primary_key=PrimaryKey(["id"]))])
    db = Database(tmp_path / "a.db", schema=schema, backup=False, lock_timeout=5)
    assert (db.backup, db.lock_timeout, db.schema) == (False, 5.0, schema)
    assert Database(str(tmp_path / "b.db")).db_path == tmp_path / "b.db"   # positional path, shipped schema
    with pytest.raises(TypeError):
        Database(tmp_path / "a.db", schema)   # schema is keyword-only, as it always was


def test_an_sqlite_database_refuses_postgresql_settings_by_name(tmp_path):
    with pytest.raises(TypeError, match=r"statement_timeout: PostgreSQL session settings"):
        Database(tmp_path / "a.db", statement_timeout="30s")
    with pytest.raises(TypeError, match=r"statement_timeout and settings"):
        Database(tmp_path / "a.db", statement_timeout="30s", settings={"work_mem": "64MB"})
    assert not (tmp_path / "a.db").exists()
