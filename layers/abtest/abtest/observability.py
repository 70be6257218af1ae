"""Powertools logger, metrics and tracer shared by every function.

Service name, metric namespace, log level and the switches that turn tracing and metrics off locally
come from the standard POWERTOOLS_* environment variables.

The tracer is a `LazyTracer`: Powertools' `Tracer()` imports the X-Ray SDK, and the SDK's recorder
builds two botocore clients for its sampling rules, about 250 ms per cold start (bench/README.md),
even when tracing is disabled. The proxy asks Powertools' own rule whether tracing is disabled
(POWERTOOLS_TRACE_DISABLED, or not running in Lambda, or under SAM local) and creates the real Tracer
on first use only when it is not; disabled, the decorated functions run undecorated and the SDK is
never imported.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

F = TypeVar("F", bound=Callable[..., Any])


class LazyTracer:
    """The part of Powertools' Tracer the service uses, creating the Tracer only if tracing is on
    (`tracer.tracer` is the Tracer itself, for annotations and the rest).

    `capture_lambda_handler` and `capture_method` take the same arguments as Powertools' and, with
    tracing enabled, decorate with the real Tracer (so subsegments, the ColdStart and Service
    annotations and the capture_response/capture_error switches are Powertools' own). Whether tracing
    is enabled is decided once per process, at the first use, by Powertools' own rule.
    """

    def __init__(self) -> None:
        self._enabled: bool | None = None
        self._tracer: Tracer | None = None

    @property
    def enabled(self) -> bool:
        """Whether traces are recorded in this process (Powertools' rule, read once)."""
        if self._enabled is None:
            # The Tracer class itself is cheap: only creating one imports the X-Ray SDK. Its own
            # (private) rule, so the proxy can never disagree with the Tracer it would create.
            from aws_lambda_powertools.tracing.tracer import Tracer as PowertoolsTracer

            self._enabled = not PowertoolsTracer._is_tracer_disabled()
        return self._enabled

    @property
    def tracer(self) -> Tracer:
        """The Powertools Tracer, created on first use (it imports the X-Ray SDK and patches the
        modules it supports, psycopg and botocore among them, before the first connection)."""
        if self._tracer is None:
            from aws_lambda_powertools import Tracer as PowertoolsTracer

            self._tracer = PowertoolsTracer()
        return self._tracer

    @overload
    def capture_lambda_handler(self, lambda_handler: F) -> F: ...

    @overload
    def capture_lambda_handler(
        self,
        lambda_handler: None = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Callable[[F], F]: ...

    def capture_lambda_handler(
        self,
        lambda_handler: F | None = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> F | Callable[[F], F]:
        """Powertools' `capture_lambda_handler`, applied only when tracing is enabled."""

        def decorate(handler: F) -> F:
            if not self.enabled:
                return handler
            traced = self.tracer.capture_lambda_handler(
                handler, capture_response=capture_response, capture_error=capture_error
            )
            return cast(F, traced)

        return decorate if lambda_handler is None else decorate(lambda_handler)

    @overload
    def capture_method(self, method: F) -> F: ...

    @overload
    def capture_method(
        self,
        method: None = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> Callable[[F], F]: ...

    def capture_method(
        self,
        method: F | None = None,
        capture_response: bool | None = None,
        capture_error: bool | None = None,
    ) -> F | Callable[[F], F]:
        """Powertools' `capture_method`, applied only when tracing is enabled."""

        def decorate(function: F) -> F:
            if not self.enabled:
                return function
            return self.tracer.capture_method(capture_response=capture_response, capture_error=capture_error)(
                function
            )

        return decorate if method is None else decorate(method)


class ThreadMetrics:
    """Powertools Metrics with one metric set per thread (the part of Metrics the service uses).

    Powertools keeps one metric set per process, shared by every Metrics instance. Lambda runs one
    request at a time per process, but the local server runs requests on a pool of threads: one
    request's flush then serialised and cleared another's metrics, and a flush that found metrics,
    had them cleared by another thread, then serialised an empty set, failed with Powertools' "Must
    contain at least one metric". Each thread here has its own provider and sets, so a request flushes
    exactly what it added; in Lambda (one thread) it behaves as the shared Metrics did.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def provider(self) -> AmazonCloudWatchEMFProvider:
        """This thread's provider (namespace and service from the POWERTOOLS_* variables)."""
        provider: AmazonCloudWatchEMFProvider | None = getattr(self._local, "provider", None)
        if provider is None:
            provider = AmazonCloudWatchEMFProvider(
                metric_set={}, dimension_set={}, metadata_set={}, default_dimensions={}
            )
            self._local.provider = provider
        return provider

    def add_metric(self, name: str, unit: MetricUnit | str, value: float) -> None:
        """Add to this thread's metrics (published when its handler returns)."""
        self.provider.add_metric(name=name, unit=unit, value=value)

    def clear_metrics(self) -> None:
        """Forget this thread's unpublished metrics."""
        self.provider.clear_metrics()

    def log_metrics(self, handler: F) -> F:
        """Powertools' log_metrics, on the metric set of the thread that runs the handler."""

        @functools.wraps(handler)
        def publishing(*args: Any, **kwargs: Any) -> Any:
            return self.provider.log_metrics(handler)(*args, **kwargs)

        return cast(F, publishing)


logger = Logger()
cloudwatch = ThreadMetrics()  # EMF counts (AssignmentServed, ...); "metrics" is the API resource
tracer = LazyTracer()

# Most requests emit no business metric (reads, edits); that is normal, not worth a warning each time.
warnings.filterwarnings("ignore", message="No application metrics to publish")
