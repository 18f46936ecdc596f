"""`python -m schema_dsl` is the same as the `schemagen` command (whose entry point is run())."""
import sys


def run():
    """The `schemagen` command. A Ctrl-C while the CLI's modules are still loading (before its own handler is
    installed) is answered like any other interrupt before a change: one line and exit 130, not a traceback."""
    try:
        from .cli import main  # inside the try: a Ctrl-C while it loads is answered below
    except KeyboardInterrupt:
        from .errors import EXIT_INTERRUPTED  # the documented code; errors.py is stdlib-only and small
        sys.stderr.write("error: interrupted; nothing was changed\n")
        raise SystemExit(EXIT_INTERRUPTED)
    main(prog_name="schemagen")


if __name__ == "__main__":
    run()
