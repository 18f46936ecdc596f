"""Where the templates and the rendered files live.

In an installed wheel they are the subpackages schema_dsl/templates and
schema_dsl/generated (see pyproject.toml); in a source checkout (and an
editable install) they are the repository's top-level templates/ and
generated/ folders. file_sha256 is the hash declaration.json records of each rendered file.
"""
from pathlib import Path

try:  # the builtin sha256: hashlib loads OpenSSL first, 2 ms of apply's start-up for the same digest
    from _sha256 import sha256
except ImportError:  # pragma: no cover - an interpreter without it
    from hashlib import sha256

_HERE = Path(__file__).resolve().parent.parent  # the schema_dsl package


def resource_dir(name):
    installed = _HERE / name
    return installed if installed.is_dir() else _HERE.parent / name


def file_sha256(text):
    """The sha256 declaration.json records of a rendered file (of its text, as UTF-8)."""
    return sha256(text.encode("utf-8")).hexdigest()
