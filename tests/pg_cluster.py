"""A throwaway PostgreSQL cluster for the tests: initdb, start on a unix socket, stop and remove at the end.

The binaries are found with `pg_config --bindir`, else under /usr/lib/postgresql/*/bin (Debian's
postgresql-15 package). The cluster runs as an unprivileged user: the system's `postgres` user when the tests
run as root (initdb refuses root). Its folder is made under the system's temporary folder, where that user can
reach it, and owned by it; the server listens on no TCP address (listen_addresses=''), only on a socket in that
folder, on a port found free. Without the binaries the tests that use it are skipped, saying how to install them.

Fixtures: `pg_cluster` (session-scoped: the cluster's base URL) and `pg_url` (a new, empty database per test,
dropped afterwards).
"""
from __future__ import annotations

import glob
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile

import pytest

INSTALL_HINT = "PostgreSQL's server binaries were not found: apt-get install postgresql-15 (or put pg_config on PATH)"


def find_bindir():
    """The folder holding initdb and pg_ctl, or None."""
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(out.stdout.strip())

    def version(path):
        m = re.search(r"/postgresql/(\d+)/", path)
        return int(m.group(1)) if m else 0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    for folder in candidates:
        if all(os.access(os.path.join(folder, exe), os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, bindir):
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.folder = tempfile.mkdtemp(prefix="schemagen-pg-")
        self.data = os.path.join(self.folder, "data")
        self.port = _free_port()
        self.started = False

    def _run(self, *args, timeout=120):
        cmd = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError("%s failed (%d): %s %s" % (args[0], out.returncode, out.stdout[-2000:], out.stderr[-2000:]))
        return out

    def start(self):
        if self.as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        os.chmod(self.folder, 0o700)
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
        options = "-k %s -p %d -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off" % (
            self.folder, self.port)
        self.started = True  # from here on stop() tries pg_ctl stop
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.folder, "server.log"), "-o", options, "-w",
                  "-t", "60", "start")

    def stop(self):
        try:
            if self.started and os.path.isdir(self.data):
                try:
                    self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", timeout=60)
                except (RuntimeError, subprocess.TimeoutExpired):
                    pass  # removing the folder is still worth doing
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, dbname="postgres"):
        return "postgresql:///%s?host=%s&port=%d&user=postgres" % (dbname, self.folder, self.port)


@pytest.fixture(scope="session")
def pg_cluster():
    """The base URL of a running throwaway cluster (its `postgres` database); skipped without the binaries."""
    pytest.importorskip("psycopg", reason="psycopg is missing: pip install '.[test,postgresql]'")
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(INSTALL_HINT)
    cluster = Cluster(bindir)
    try:
        cluster.start()
        cluster.base = cluster.url()
        yield cluster
    finally:
        cluster.stop()


_numbers = itertools.count(1)


@pytest.fixture
def pg_url(pg_cluster):
    """The URL of a new, empty database, dropped after the test."""
    import psycopg

    name = "t%d_%d" % (os.getpid(), next(_numbers))
    with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "%s"' % name)
    try:
        yield pg_cluster.url(name)
    finally:
        with psycopg.connect(pg_cluster.base, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
