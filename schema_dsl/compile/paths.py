"""Where the templates and the rendered files live.

In an installed wheel they are the subpackages schema_dsl/templates and
schema_dsl/generated (see pyproject.toml); in a source checkout (and an
editable install) they are the repository's top-level templates/ and
generated/ folders.
"""
from pathlib import Path

_HERE = Path(__file__).resolve().parent.parent  # the schema_dsl package


def resource_dir(name):
    installed = _HERE / name
    return installed if installed.is_dir() else _HERE.parent / name
