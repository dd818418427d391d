"""The TechEmpower database: ``hello_world`` with World (10,000 rows) and Fortune (12 rows).

``load(cluster)`` creates it in a ``bench.pgcluster.Cluster``; ``FORTUNES`` is the table's text
(the verifier compares the fortunes page with it). World.randomnumber is 1..10,000, as the
benchmark's schema has it; ids are 1..10,000.
"""

from __future__ import annotations

from typing import Any

DATABASE = "hello_world"
WORLD_ROWS = 10_000

FORTUNES = [
    (1, "fortune: No such file or directory"),
    (2, "A computer scientist is someone who fixes things that aren't broken."),
    (3, "After enough decimal places, nobody gives a damn."),
    (4, "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1"),
    (5, "A computer program does what you tell it to do, not what you want it to do."),
    (6, "Emacs is a nice operating system, but I prefer UNIX. \u2014 Tom Christaensen"),
    (7, "Any program that runs right is obsolete."),
    (8, "A list is only as strong as its weakest link. \u2014 Donald Knuth"),
    (9, "Feature: A bug with seniority."),
    (10, "Computers make very fast, very accurate mistakes."),
    (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
    (12, "\u30d5\u30ec\u30fc\u30e0\u30ef\u30fc\u30af\u306e\u30d9\u30f3\u30c1\u30de\u30fc\u30af"),
]
ADDITIONAL = (0, "Additional fortune added at request time.")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql() -> str:
    fortunes = ",\n".join(f"({i}, {_literal(m)})" for i, m in FORTUNES)
    return f"""
CREATE TABLE world (id integer NOT NULL PRIMARY KEY, randomnumber integer NOT NULL DEFAULT 0);
INSERT INTO world (id, randomnumber)
  SELECT x, least(floor(random() * 10000 + 1), 10000) FROM generate_series(1, {WORLD_ROWS}) AS x;
CREATE TABLE fortune (id integer NOT NULL PRIMARY KEY, message varchar(2048) NOT NULL);
INSERT INTO fortune (id, message) VALUES
{fortunes};
ANALYZE world;
ANALYZE fortune;
"""


def load(cluster: Any) -> str:
    """Create the database in ``cluster``; its conninfo."""
    cluster.psql(f"CREATE DATABASE {DATABASE} ENCODING 'UTF8'")
    cluster.psql(sql(), db=DATABASE)
    return f"host={cluster.socket_dir} user=postgres dbname={DATABASE}"
