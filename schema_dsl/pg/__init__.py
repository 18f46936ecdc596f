"""PostgreSQL: the connection, the catalog reader and the fresh apply (psycopg is imported only in here).

url.py needs only the standard library (the CLI uses it to recognize and mask a URL); catalog.py reads a live
database's structure from pg_catalog; apply.py connects, applies the rendered statements and validates.
"""
