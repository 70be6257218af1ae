"""Unit tests are pure: each runs with sockets disabled (pytest-socket), so one that reaches for the
database, AWS or the network fails at once ("A test tried to use socket.socket") instead of passing
while a server happens to be up. libpq opens its sockets in C, out of pytest-socket's sight, so
psycopg's connect is refused here too. Integration and e2e tests keep their sockets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_socket import SocketBlockedError

UNIT_TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Called once with every collected item, whichever folder it is in: mark only this folder's.
    for item in items:
        if UNIT_TESTS not in item.path.resolve().parents:
            continue
        if item.get_closest_marker("enable_socket") or "socket_enabled" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(
                f"{item.nodeid}: unit tests may not enable sockets; make it an integration test"
            )
        item.add_marker(pytest.mark.disable_socket)


@pytest.fixture(autouse=True)
def _no_database_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise SocketBlockedError("A unit test tried to connect to PostgreSQL (psycopg.connect)")

    for owner in (psycopg, psycopg.Connection, psycopg.AsyncConnection):
        monkeypatch.setattr(owner, "connect", refuse)
