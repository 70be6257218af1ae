"""The service's metrics are per thread: the local server runs requests on a thread pool, and
Powertools' one shared metric set let one request flush (and clear) another's metrics."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from abtest.observability import ThreadMetrics


def test_concurrent_handlers_each_publish_exactly_their_own_metrics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = ThreadMetrics()
    added = threading.Event()
    flushed = threading.Event()
    errors: list[BaseException] = []

    @metrics.log_metrics
    def slow(event: dict[str, Any], context: Any) -> None:
        metrics.add_metric(name="SlowServed", unit="Count", value=1)
        added.set()
        assert flushed.wait(10)  # the quick request publishes while this one still holds its metric

    @metrics.log_metrics
    def quick(event: dict[str, Any], context: Any) -> None:
        return None  # adds nothing: with one shared set, it published (and cleared) SlowServed

    def run_slow() -> None:
        try:
            slow({}, None)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=run_slow)
    thread.start()
    assert added.wait(10)
    with pytest.warns(UserWarning, match="No application metrics"):
        quick({}, None)
    printed_by_quick = capsys.readouterr().out
    flushed.set()
    thread.join(10)
    assert errors == []
    assert "SlowServed" not in printed_by_quick
    published = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [list(p.keys() & {"SlowServed"}) for p in published] == [["SlowServed"]]
    assert published[0]["SlowServed"] == [1.0]
