"""Varia's telemetry: spans, metrics and log records that carry the job id, for Application Insights.

Nothing is recorded, and nothing beyond OpenTelemetry's API is imported, unless telemetry is on:
`configure()` turns it on when APPLICATIONINSIGHTS_CONNECTION_STRING is set, with the Azure Monitor
distro's `configure_azure_monitor()` as Microsoft documents it for Python function apps. It runs
once per process, on the first invocation that records something, not when the host indexes the
app: the distro's import and set-up cost a cold start a few hundred milliseconds, paid only by apps
that send telemetry. Keyless: in Azure the exporter signs in with the managed identity that
APPLICATIONINSIGHTS_AUTHENTICATION_STRING names (`Authorization=AAD;ClientId=<client id>`),
elsewhere with DefaultAzureCredential (a developer's `az login`).

One job, one trace. In Azure the host passes each invocation its trace context and the Python
worker makes it current (app setting PYTHON_ENABLE_OPENTELEMETRY=true), so "start job" is a child
of the host's request or blob trigger, and the Durable client hands that context to the
orchestration and from there to every activity. The local runtime does the same with an
"orchestration" span of its own. The orchestrator itself records nothing: it is replayed.

Every span started and every log record written while a job is current (`job(job_id)`) carries
`varia.job_id`, the spans of the SDKs' own calls included (storage, Azure OpenAI, Vision).

Metrics (meter `varia`), recorded when a job ends (persist) and when a job reserves quota:
  varia.jobs             jobs, by varia.status, varia.code and varia.origin
  varia.paid_calls       calls that may have been billed, by varia.kind (caption, compose, image, moderation)
  varia.rejected_calls   calls a 429 (quota_exhausted) turned away, not billed, by varia.kind
  varia.estimated_cost   USD, by varia.kind: the manifest's estimated_cost_usd split by kind
  varia.queue_wait       seconds an image request waits for its quota slot, by varia.deployment
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from opentelemetry import trace

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, MeterProvider
    from opentelemetry.sdk.trace import SpanProcessor

CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
# Set in Azure (`Authorization=AAD;ClientId=...`): the exporter signs in with that managed identity.
AUTHENTICATION_SETTING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
SCOPE = "varia"  # the tracer's and the meter's name

# Attribute names (README, Monitoring): spans, log records and metrics use the same ones.
JOB_ID = "varia.job_id"
STAGE = "varia.stage"
ACTIVITY = "varia.activity"
ORIGIN = "varia.origin"
STATUS = "varia.status"
CODE = "varia.code"
KIND = "varia.kind"
DEPLOYMENT = "varia.deployment"
INDICES = "varia.indices"
ATTEMPT = "varia.attempt"

PAID_KINDS = ("caption", "compose", "image", "moderation")
# Seconds: a slot comes at once, within the minute a quota window spans, or later when many jobs queue.
QUEUE_WAIT_BUCKETS = (0.0, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

log = logging.getLogger("varia.telemetry")
_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("varia_job_id", default=None)
_lock = threading.Lock()
_configured: bool | None = None  # None until configure() has looked at the environment


@dataclass(frozen=True)
class _Providers:
    """Where spans and metrics go instead of the global providers (tests: see `use`)."""

    tracer_provider: trace.TracerProvider
    meter_provider: MeterProvider


@dataclass(frozen=True)
class _Instruments:
    jobs: Counter
    paid_calls: Counter
    rejected_calls: Counter
    estimated_cost: Counter
    queue_wait: Histogram


_override: _Providers | None = None
_instruments_cache: _Instruments | None = None


# --- turning it on ----------------------------------------------------------------------------


def configure() -> bool:
    """Send telemetry to Application Insights if APPLICATIONINSIGHTS_CONNECTION_STRING is set; once per process.

    True when telemetry goes to Azure Monitor. A failure to set it up is logged and leaves
    telemetry off: a job never fails for its telemetry.
    """
    global _configured
    if _configured is None:
        with _lock:
            if _configured is None:
                _configured = _configure_azure_monitor()
    return _configured


def _configure_azure_monitor() -> bool:
    connection_string = os.environ.get(CONNECTION_SETTING, "").strip()
    if not connection_string or _override is not None:
        return False
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
        from opentelemetry.instrumentation.logging.handler import LoggingHandler

        options: dict[str, Any] = {}
        if AUTHENTICATION_SETTING not in os.environ:
            # Outside Azure: the developer's sign-in (az login). Application Insights refuses
            # telemetry sent with the connection string's key alone (local auth is off).
            from azure.identity import DefaultAzureCredential

            options["credential"] = DefaultAzureCredential()
        # The root logger, as the Python worker's own set-up does: the worker sends its logs this
        # way instead of through the host (PYTHON_ENABLE_OPENTELEMETRY), so nothing is left out.
        configure_azure_monitor(connection_string=connection_string, span_processors=span_processors(), **options)
    except Exception:  # noqa: BLE001 - telemetry stays off; the job goes on
        log.warning("Application Insights could not be set up; Varia runs without telemetry", exc_info=True)
        return False
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LoggingHandler):
            handler.addFilter(JobIdOnLogRecords())
    # The storage SDK logs every request and response at INFO: its failures still come as warnings.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    log.info("Telemetry goes to Application Insights")
    return True


def _enabled() -> bool:
    """Whether anything is recorded: Azure Monitor configured, providers given (tests), or an SDK set up elsewhere."""
    if _override is not None or configure():
        return True
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@contextlib.contextmanager
def use(tracer_provider: trace.TracerProvider, meter_provider: MeterProvider) -> Iterator[None]:
    """Record into these providers instead of the global ones while the block runs (tests).

    The global providers can be set once per process; the tests give each test its own and
    leave the rest of the suite untouched.
    """
    global _override, _instruments_cache
    previous = _override
    _override, _instruments_cache = _Providers(tracer_provider, meter_provider), None
    try:
        yield
    finally:
        _override, _instruments_cache = previous, None


def span_processors() -> list[SpanProcessor]:
    """What every tracer provider of Varia's needs: the job id put on each span started during a job."""
    from opentelemetry.sdk.trace import SpanProcessor

    class JobIdOnSpans(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            job_id = _job_id.get()
            if job_id is not None and not (span.attributes or {}).get(JOB_ID):
                span.set_attribute(JOB_ID, job_id)

    return [JobIdOnSpans()]


class JobIdOnLogRecords(logging.Filter):
    """Put the current job's id on each record, as `varia.job_id`, for the OpenTelemetry log handler.

    On Python 3.12 and later the handler gets a copy without the extras OpenTelemetry cannot carry
    (persist's `varia_manifest`, a model), which it would otherwise warn about and send as text.
    """

    def filter(self, record: logging.LogRecord) -> bool | logging.LogRecord:  # type: ignore[override]
        job_id = _job_id.get()
        objects = [k for k, v in vars(record).items() if k not in _STANDARD_RECORD and not _carried(v)]
        if sys.version_info < (3, 12) or not objects:  # before 3.12 a filter cannot hand over a copy
            if job_id is not None:
                setattr(record, JOB_ID, job_id)
            return True
        copy = logging.makeLogRecord({k: v for k, v in vars(record).items() if k not in objects})
        if job_id is not None:
            setattr(copy, JOB_ID, job_id)
        return copy


_STANDARD_RECORD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _carried(value: Any) -> bool:
    """Whether OpenTelemetry carries the value as an attribute (a primitive, or a sequence of them)."""
    if isinstance(value, list | tuple):
        return all(isinstance(v, bool | str | bytes | int | float) for v in value)
    return value is None or isinstance(value, bool | str | bytes | int | float)


# --- the job id and spans ---------------------------------------------------------------------


def current_job() -> str | None:
    return _job_id.get()


@contextlib.contextmanager
def job(job_id: str | None) -> Iterator[None]:
    """Make `job_id` the current job for the spans and log records of this block (None: keep the current one)."""
    token = _job_id.set(job_id if job_id is not None else _job_id.get())
    try:
        yield
    finally:
        _job_id.reset(token)


def _tracer() -> trace.Tracer:
    provider = _override.tracer_provider if _override is not None else None
    return trace.get_tracer(SCOPE, tracer_provider=provider)


@contextlib.contextmanager
def job_span(name: str, job_id: str | None, **attributes: Any) -> Iterator[trace.Span | None]:
    """A span for one piece of a job's work, current while the block runs, with the job current too."""
    with job(job_id):
        if not _enabled():
            yield None
            return
        attributes = {JOB_ID: job_id, **attributes} if job_id else attributes
        with _tracer().start_as_current_span(name, attributes=_clean(attributes)) as span:
            yield span


def start_span(name: str, job_id: str | None) -> trace.Span | None:
    """A span that outlives the block that starts it (the local runtime's orchestration); end it yourself."""
    if not _enabled():
        return None
    return _tracer().start_span(name, attributes=_clean({JOB_ID: job_id}))


@contextlib.contextmanager
def within(span: trace.Span | None) -> Iterator[None]:
    """Make a span started with `start_span` the parent of what this block records (another thread, say)."""
    if span is None:
        yield
        return
    with trace.use_span(span, end_on_exit=False):
        yield


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes OpenTelemetry can carry: no None, sequences as lists."""
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in attributes.items()
        if value is not None and value != ""
    }


S = TypeVar("S")
JSON = dict[str, Any]


def traced_step(
    name: str, stage: str, step: Callable[[S, JSON], JSON], job_id_of: Callable[[JSON], str | None]
) -> Callable[[S, JSON], JSON]:
    """The step in a span `activity <name>`, with its job current, as Durable and the local runtime run it."""

    @functools.wraps(step)
    def run(services: S, payload: JSON) -> JSON:
        details = {
            ACTIVITY: name,
            STAGE: stage,
            INDICES: payload.get("indices") if isinstance(payload.get("indices"), list) else None,
            ATTEMPT: payload.get("attempt") if isinstance(payload.get("attempt"), int) else None,
            DEPLOYMENT: payload.get("deployment") if isinstance(payload.get("deployment"), str) else None,
        }
        with job_span(f"activity {name}", job_id_of(payload), **details) as span:
            result = step(services, payload)
            if span is not None and isinstance(result, dict):  # a Problem, or persist's manifest
                outcome = {STATUS: result.get("status"), CODE: result.get("code")}
                span.set_attributes(_clean({k: v for k, v in outcome.items() if isinstance(v, str)}))
            return result

    return run


def trace_carrier() -> dict[str, str]:
    """The current trace context as W3C headers (`traceparent`), for what runs it elsewhere."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


# --- metrics --------------------------------------------------------------------------------


def _instruments() -> _Instruments | None:
    global _instruments_cache
    if not _enabled():
        return None
    with _lock:
        if _instruments_cache is None:
            from opentelemetry import metrics

            provider = _override.meter_provider if _override is not None else None
            meter = metrics.get_meter(SCOPE, meter_provider=provider)
            _instruments_cache = _Instruments(
                jobs=meter.create_counter("varia.jobs", unit="{job}", description="Jobs ended, by status and code"),
                paid_calls=meter.create_counter(
                    "varia.paid_calls", unit="{call}", description="Paid calls that may have been billed, by kind"
                ),
                rejected_calls=meter.create_counter(
                    "varia.rejected_calls", unit="{call}", description="Calls a 429 turned away (not billed), by kind"
                ),
                estimated_cost=meter.create_counter(
                    "varia.estimated_cost", unit="USD", description="Estimated cost of the jobs' paid calls, by kind"
                ),
                queue_wait=meter.create_histogram(
                    "varia.queue_wait",
                    unit="s",
                    description="Time an image request waits for its slot in the quota",
                    explicit_bucket_boundaries_advisory=QUEUE_WAIT_BUCKETS,
                ),
            )
        return _instruments_cache


class CallCount(Protocol):
    """What the manifest's paid_calls holds for one kind of call (shared.core.models.CallCount)."""

    @property
    def billed(self) -> int: ...

    @property
    def rejected(self) -> int: ...


def record_job(
    status: str, code: str | None, origin: str, paid_calls: Mapping[str, CallCount], prices: Mapping[str, float]
) -> None:
    """Count a job that ended (its manifest): its status, its paid and rejected calls, its estimated cost."""
    instruments = _instruments()
    if instruments is None:
        return
    instruments.jobs.add(1, {STATUS: status, CODE: code or "", ORIGIN: origin})
    for kind, count in paid_calls.items():
        if count.billed:
            instruments.paid_calls.add(count.billed, {KIND: kind})
            instruments.estimated_cost.add(count.billed * prices.get(kind, 0.0), {KIND: kind})
        if count.rejected:
            instruments.rejected_calls.add(count.rejected, {KIND: kind})


def record_queue_wait(waits: Sequence[tuple[str, float]]) -> None:
    """How long each of a job's image requests waits for its quota slot: (deployment, seconds)."""
    instruments = _instruments()
    if instruments is None:
        return
    for deployment, seconds in waits:
        instruments.queue_wait.record(max(0.0, seconds), _clean({DEPLOYMENT: deployment}))
