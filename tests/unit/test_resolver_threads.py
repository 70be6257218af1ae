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


def test_a_request_reads_its_own_event_while_another_thread_resolves() -> None:
    # Powertools keeps the event being resolved on a class attribute (a Lambda environment resolves one
    # request at a time); here one request's handler waits while another thread resolves a second
    # request, then reads its event, as a handler reads its actor after a database call.
    from localdev.lambda_events import LocalLambdaContext, http_api_event

    app = create_app()
    first_waiting, second_done = threading.Event(), threading.Event()
    seen: dict[str, str] = {}

    @app.get("/who")
    def who() -> dict[str, str]:
        me = app.current_event.query_string_parameters["name"]
        if me == "first":
            first_waiting.set()
            assert second_done.wait(10)
        seen[me] = app.current_event.query_string_parameters["name"]
        return {"name": seen[me]}

    def request(name: str) -> dict[str, object]:
        event = http_api_event("GET", "/who", query=f"name={name}", route_key="GET /who")
        return app.resolve(event, LocalLambdaContext(function_name="test"))

    first = threading.Thread(target=request, args=("first",))
    first.start()
    assert first_waiting.wait(10)
    request("second")
    second_done.set()
    first.join()
    assert seen == {"first": "first", "second": "second"}
