"""The one Jinja2 environment (StrictUndefined, no autoescape, the quoting filters)."""
import functools
import json

import jinja2

from ..sqlite.quote import quote_identifier, quote_literal
from .paths import resource_dir


@functools.lru_cache(maxsize=1)
def environment():
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["ident"] = quote_identifier
    env.filters["literal"] = quote_literal
    env.filters["tojson"] = lambda v: json.dumps(v, sort_keys=True)
    return env


def default_origin(schema):
    """What a declaration compiled without a project says of its source (no hash: nothing to keep in step)."""
    return {"declaration": schema.source or "an unnamed declaration", "files": [], "sha256": None,
            "command": "schemagen render"}
