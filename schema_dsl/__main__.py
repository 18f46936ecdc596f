"""`python -m schema_dsl` is the same as the `schemagen` command."""
from .cli import main

if __name__ == "__main__":
    main(prog_name="schemagen")
