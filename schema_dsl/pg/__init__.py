"""PostgreSQL: the connection, the catalog reader and the fresh apply (psycopg is imported only in here).

url.py needs only the standard library (the dialect registry uses it to mask a URL); catalog.py reads a live
database's structure from pg_catalog; apply.py connects, applies the rendered statements and validates;
introspect.py reads what a migration needs beyond that (constraint names, validity, the declared CHECKs as the
server prints them); plan.py plans a migration with PostgreSQL's own ALTERs; migration.py plans, applies (one
transaction, then the CONCURRENTLY builds after COMMIT) and exports `plan --sql`.
"""
