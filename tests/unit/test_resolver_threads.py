"""The resolver's per-request context is per thread: the local server runs one function's requests on
several threads, and one request clearing its context must not remove another's matched route (a
KeyError '_route' and a 500 under load before)."""

from __future__ import annotations

import threading

from abtest.http.app import create_app


def test_one_threads_clear_context_leaves_another_threads_route() -> None:
    app = create_app()
    app.append_context(_route="mine", _route_args={"id": "1"})
    other: dict[str, object] = {}

    def another_request() -> None:
        assert app.context == {}  # a thread starts with no request context
        app.append_context(_route="theirs")
        other.update(app.context)
        app.clear_context()

    thread = threading.Thread(target=another_request)
    thread.start()
    thread.join()
    assert other == {"_route": "theirs"}
    assert app.context == {"_route": "mine", "_route_args": {"id": "1"}}
    app.clear_context()
    assert app.context == {}
