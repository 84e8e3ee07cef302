"""What SQL the code runs, and how the database plans it: for tests of what a statement reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine


@contextmanager
def statements_run(engine: Engine, keep: Callable[[str], bool]) -> Iterator[list[tuple[str, Any]]]:
    """Collect each statement `engine` runs inside the block that `keep` selects, with its
    parameters (as the driver receives them, for `query_plan`)."""
    statements: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if keep(statement):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def query_plan(connection: Connection, statement: str, parameters: Any) -> list[str]:
    """The database's plan of `statement`, one step per item: SQLite's EXPLAIN QUERY PLAN
    details ("SEARCH v USING INDEX …", tables named by their aliases), PostgreSQL's EXPLAIN
    lines ("Index Scan using … on …")."""
    if connection.dialect.name == "sqlite":
        steps = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        return [str(row[-1]) for row in steps]
    return [str(row[0]) for row in connection.exec_driver_sql("EXPLAIN " + statement, parameters)]
