"""schemagen: an SQLite schema kept as code.

`from schema_dsl import Database` gives the async integration class (imported
lazily, so that the CLI's apply path does not pay for asyncio and aiosqlite).
"""
from .version import __version__  # noqa: F401  (handed on: `schema_dsl.__version__`)


def __getattr__(name):
    if name == "Database":
        from .database import Database  # lazily: the CLI's apply path does not pay for asyncio and aiosqlite
        return Database
    raise AttributeError("module 'schema_dsl' has no attribute %r" % name)
