"""Telemetry: a job's spans, log records and metrics carry its id, and its spans form one trace.

Each test records into OpenTelemetry SDK providers of its own (in-memory span and log exporters,
an in-memory metric reader), handed to shared/telemetry.py with `telemetry.use`: the global
providers stay unset, so no other test records anything, and no exporter reaches the network.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared import telemetry
from shared.adapters.services import Services, build_services
from shared.adapters.storage import INPUTS
from shared.config import Settings
from shared.functions.blob_trigger import handle_blob
from shared.functions.http_api import post_variation
from shared.local.cli import make_runtime
from shared.local.server import VariaServer
from tests.fake_ai import FakeAzureAI
from tests.images import scene_png
from tests.support import REPO, NoCredential, azure_env, multipart, offline_env, run_job, upload_request

ACTIVITIES = {"prepare", "caption", "compose", "reserve", "generate", "persist"}


@dataclass
class Recorded:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    logs: InMemoryLogRecordExporter

    def job_spans(self, job_id: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if (s.attributes or {}).get(telemetry.JOB_ID) == job_id]

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """(attributes, data point) of every point of metric `name`."""
        data = self.metrics.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += [(dict(p.attributes or {}), p) for p in metric.data.data_points]
        return found

    def total(self, name: str, **attributes: str) -> float:
        wanted = {f"varia.{k}": v for k, v in attributes.items()}
        return sum(p.value for attrs, p in self.points(name) if wanted.items() <= attrs.items())


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    spans, reader, logs = InMemorySpanExporter(), InMemoryMetricReader(), InMemoryLogRecordExporter()
    tracer_provider = TracerProvider()
    for processor in telemetry.span_processors():
        tracer_provider.add_span_processor(processor)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[reader])
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    # As configure() does on Azure Monitor's handler: the job id on every record the handler sends.
    handler = LoggingHandler(logger_provider=logger_provider)
    handler.addFilter(telemetry.JobIdOnLogRecords())
    varia_logger = logging.getLogger("varia")
    level = varia_logger.level
    varia_logger.setLevel(logging.INFO)
    varia_logger.addHandler(handler)
    try:
        with telemetry.use(tracer_provider, meter_provider):
            yield Recorded(spans, reader, logs)
    finally:
        varia_logger.removeHandler(handler)
        varia_logger.setLevel(level)
        tracer_provider.shutdown()
        meter_provider.shutdown()
        logger_provider.shutdown()


def _one_trace(spans: Sequence[ReadableSpan]) -> int:
    """The trace id all these spans share, each one's parent among them but the root's."""
    traces = {s.context.trace_id for s in spans}
    assert len(traces) == 1, f"{len(traces)} traces: {sorted(s.name for s in spans)}"
    ids = {s.context.span_id for s in spans}
    roots = [s for s in spans if s.parent is None or s.parent.span_id not in ids]
    assert len(roots) == 1, [s.name for s in roots]
    return traces.pop()


def test_an_offline_job_records_one_trace_whose_spans_and_logs_carry_its_id(
    recorded: Recorded, offline_services: Services
) -> None:
    request = upload_request(offline_services, scene_png(), n=2)
    instance = run_job(offline_services, request)
    assert instance.output["status"] == "succeeded"

    spans = recorded.spans.get_finished_spans()
    assert spans and all(s.attributes and s.attributes[telemetry.JOB_ID] == request.job_id for s in spans)
    names = [s.name for s in spans]
    assert {f"activity {a}" for a in ACTIVITIES} <= set(names)
    assert names.count("activity generate") == 2  # one image request per variation, offline
    _one_trace(spans)
    (orchestration,) = [s for s in spans if s.name == "orchestration"]
    assert all(
        s.parent is not None and s.parent.span_id == orchestration.context.span_id
        for s in spans
        if s.name != "orchestration"
    )
    stages = {
        s.attributes[telemetry.ACTIVITY]: s.attributes[telemetry.STAGE]
        for s in spans
        if s.attributes and telemetry.ACTIVITY in s.attributes
    }
    assert stages == {
        "prepare": "preparing",
        "caption": "captioning",
        "compose": "composing",
        "reserve": "generating",
        "generate": "generating",
        "persist": "saving",
    }
    persist = next(s for s in spans if s.name == "activity persist")
    assert persist.attributes and persist.attributes[telemetry.STATUS] == "succeeded"

    records = [r.log_record for r in recorded.logs.get_finished_logs()]
    assert any(f"Job {request.job_id} ended succeeded" in str(r.body) for r in records)
    assert all(r.attributes and r.attributes[telemetry.JOB_ID] == request.job_id for r in records)

    assert recorded.total("varia.jobs", status="succeeded", code="", origin="cli") == 1
    assert recorded.points("varia.paid_calls") == []  # the offline providers cost nothing


def test_paid_calls_429s_cost_and_queue_wait_are_counted_when_the_job_ends(
    recorded: Recorded, fake: FakeAzureAI, tmp_path: Path
) -> None:
    services = build_services(Settings.from_env({**azure_env(fake), **offline_env(tmp_path)}), NoCredential)
    fake.fail_next("images.edit", "429-ms", retry_after_ms=300)
    request = upload_request(services, scene_png(320, 240), n=1)
    manifest = run_job(services, request).output
    assert manifest["status"] == "succeeded", manifest["message"]
    assert manifest["paid_calls"]["image"] == {"attempted": 2, "delivered": 1, "rejected": 1}

    assert recorded.total("varia.jobs", status="succeeded") == 1
    for kind in ("caption", "compose", "image"):
        assert recorded.total("varia.paid_calls", kind=kind) == 1, kind  # the 429 was not billed
    assert recorded.total("varia.rejected_calls", kind="image") == 1
    assert recorded.total("varia.rejected_calls") == 1
    assert recorded.total("varia.estimated_cost") == pytest.approx(manifest["estimated_cost_usd"])
    prices = services.settings.prices_usd
    assert recorded.total("varia.estimated_cost", kind="image") == pytest.approx(prices["image"])
    waits = recorded.points("varia.queue_wait")
    # One request, one slot: a 429 asking for 0.3 s is tried again at once, in the same round.
    assert sum(p.count for _, p in waits) == 1
    assert all(attrs[telemetry.DEPLOYMENT] for attrs, _ in waits)
    assert all(
        s.attributes and s.attributes[telemetry.JOB_ID] == request.job_id for s in recorded.spans.get_finished_spans()
    )


def _post(server: VariaServer, prompt: str) -> str:
    body, content_type = multipart({"prompt": prompt, "n": "1"}, scene_png())
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/api/variations", body=body, headers={"Content-Type": content_type})
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    assert response.status == 202, answer
    return str(answer["job_id"])


def _wait_done(server: VariaServer, recorded: Recorded, job_id: str) -> None:
    instance = server.runtime.get(job_id)
    assert instance is not None
    assert instance.done.wait(30), f"job {job_id} did not finish"
    deadline = time.monotonic() + 5  # the orchestration span ends just after the instance is done
    while time.monotonic() < deadline and not any(s.name == "orchestration" for s in recorded.job_spans(job_id)):
        time.sleep(0.01)


def test_jobs_started_over_http_each_have_their_own_trace_under_the_triggers_span(
    recorded: Recorded, offline_services: Services
) -> None:
    server = VariaServer(
        offline_services, make_runtime(offline_services, retry_scale=0.001), port=0, poll_interval=None
    )
    server.start()
    try:
        first = _post(server, "as a watercolour")
        _wait_done(server, recorded, first)
        second = _post(server, "as pixel art")
        _wait_done(server, recorded, second)
    finally:
        server.close()

    traces = set()
    for job_id in (first, second):
        spans = recorded.job_spans(job_id)
        trace_id = _one_trace(spans)
        traces.add(trace_id)
        (start,) = [s for s in spans if s.name == "start job"]
        assert start.parent is None  # the local server is the edge: nothing passed a trace context
        assert start.attributes and start.attributes[telemetry.ORIGIN] == "http" and start.attributes["varia.created"]
        (orchestration,) = [s for s in spans if s.name == "orchestration"]
        assert orchestration.parent is not None and orchestration.parent.span_id == start.context.span_id
        assert {s.name for s in spans} >= {f"activity {a}" for a in ACTIVITIES}
    assert len(traces) == 2
    # Every span is one job's: none of the second job carries the first's id, or the other way round.
    everything = recorded.spans.get_finished_spans()
    assert len(everything) == len(recorded.job_spans(first)) + len(recorded.job_spans(second))


def test_a_job_from_a_dropped_blob_has_the_blob_triggers_span_over_its_own_trace(
    recorded: Recorded, offline_services: Services
) -> None:
    offline_services.storage.put(INPUTS, "watercolor/cat.png", scene_png(), "image/png")
    runtime = make_runtime(offline_services, retry_scale=0.001)
    job_id = asyncio.run(handle_blob(INPUTS, "watercolor/cat.png", None, None, runtime, offline_services))
    assert job_id is not None
    instance = runtime.get(job_id)
    assert instance is not None and instance.done.wait(30)
    runtime.shutdown()

    spans = recorded.job_spans(job_id)
    _one_trace(spans)
    (start,) = [s for s in spans if s.name == "start job"]
    assert start.parent is None and start.attributes and start.attributes[telemetry.ORIGIN] == "blob"
    assert {f"activity {a}" for a in ACTIVITIES} <= {s.name for s in spans}
    assert recorded.total("varia.jobs", status="succeeded", origin="blob") == 1


def test_the_trigger_span_is_the_child_of_the_trace_context_the_host_passes(
    recorded: Recorded, offline_services: Services
) -> None:
    """What the Python worker does with the host's trace context (PYTHON_ENABLE_OPENTELEMETRY): makes it current."""
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    carrier = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
    body, content_type = multipart({"prompt": "as a watercolour", "n": "1"}, scene_png())
    req = func.HttpRequest("POST", "/api/variations", headers={"Content-Type": content_type}, body=body)
    runtime = make_runtime(offline_services, retry_scale=0.001)
    token = otel_context.attach(TraceContextTextMapPropagator().extract(carrier))
    try:
        response = asyncio.run(post_variation(req, runtime, offline_services))
    finally:
        otel_context.detach(token)
    job_id = json.loads(response.get_body())["job_id"]
    instance = runtime.get(job_id)
    assert instance is not None and instance.done.wait(30)
    runtime.shutdown()

    spans = recorded.job_spans(job_id)
    assert {format(s.context.trace_id, "032x") for s in spans} == {trace_id}
    (start,) = [s for s in spans if s.name == "start job"]
    assert start.parent is not None and format(start.parent.span_id, "016x") == parent_id


def test_without_a_connection_string_nothing_is_recorded_or_imported() -> None:
    """A job's steps with telemetry off: no span, no SDK, no distro (cold start), the job id still current."""
    probe = (
        "import sys; from shared import telemetry; from shared.core import steps; "
        "assert telemetry.configure() is False; "
        "ctx = telemetry.job_span('activity prepare', 'cli-' + '0' * 32); span = ctx.__enter__(); "
        "assert span is None and telemetry.current_job() == 'cli-' + '0' * 32; ctx.__exit__(None, None, None); "
        "telemetry.record_job('succeeded', None, 'cli', {}, {}); telemetry.record_queue_wait([('d', 1.0)]); "
        "print(sorted(m for m in ('azure.monitor.opentelemetry', 'opentelemetry.sdk', 'opentelemetry.metrics') "
        "if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if k != telemetry.CONNECTION_SETTING}
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class _FakeDistro:
    """Stands in for `configure_azure_monitor` (the distro's entry point): what Varia asks of it, no exporter."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **options: Any) -> None:
        self.calls.append(options)


@pytest.fixture
def distro(monkeypatch: pytest.MonkeyPatch) -> Iterator[_FakeDistro]:
    import azure.monitor.opentelemetry

    fake = _FakeDistro()
    monkeypatch.setattr(azure.monitor.opentelemetry, "configure_azure_monitor", fake)
    monkeypatch.setattr(telemetry, "_configured", None)
    yield fake
    telemetry._configured = None
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.NOTSET)


CONNECTION_STRING = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"


def test_a_connection_string_configures_azure_monitor_once_with_the_job_id_processor(
    distro: _FakeDistro, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(telemetry.CONNECTION_SETTING, CONNECTION_STRING)
    monkeypatch.setenv(
        telemetry.AUTHENTICATION_SETTING, "Authorization=AAD;ClientId=11111111-2222-3333-4444-555555555555"
    )
    assert telemetry.configure() is True
    assert telemetry.configure() is True
    (options,) = distro.calls
    assert options["connection_string"] == CONNECTION_STRING
    assert "credential" not in options  # the exporter reads the authentication string: the app's identity
    assert [type(p).__name__ for p in options["span_processors"]] == ["JobIdOnSpans"]


def test_outside_azure_the_exporter_signs_in_as_the_developer(
    distro: _FakeDistro, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.identity import DefaultAzureCredential

    monkeypatch.setenv(telemetry.CONNECTION_SETTING, CONNECTION_STRING)
    monkeypatch.delenv(telemetry.AUTHENTICATION_SETTING, raising=False)
    assert telemetry.configure() is True
    assert isinstance(distro.calls[0]["credential"], DefaultAzureCredential)


def test_telemetry_that_cannot_be_set_up_leaves_the_jobs_running(
    distro: _FakeDistro, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**options: Any) -> None:
        raise ValueError("Invalid instrumentation key")

    import azure.monitor.opentelemetry

    monkeypatch.setattr(azure.monitor.opentelemetry, "configure_azure_monitor", broken)
    monkeypatch.setenv(telemetry.CONNECTION_SETTING, "not a connection string")
    assert telemetry.configure() is False
    assert "runs without telemetry" in caplog.text


def test_azure_sends_telemetry_keyless_through_the_workers_opentelemetry() -> None:
    """host.json in OpenTelemetry mode, the worker given the host's trace context, Entra ID only."""
    host = json.loads((REPO / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"
    # Durable carries the trigger's trace context to the orchestration and its activities.
    assert host["extensions"]["durableTask"]["tracing"] == {"DistributedTracingEnabled": True, "Version": "V2"}
    app = (REPO / "infra" / "modules" / "functionapp.bicep").read_text()
    assert "PYTHON_ENABLE_OPENTELEMETRY: 'true'" in app
    # The worker's other mode sets the distro up itself, without Varia's job-id processors.
    assert "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY" not in app
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString" in app
    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'" in app
    monitoring = (REPO / "infra" / "modules" / "monitoring.bicep").read_text()
    assert "DisableLocalAuth: true" in monitoring
    rbac = (REPO / "infra" / "modules" / "rbac.bicep").read_text()
    assert "3913510d-42f4-4e42-8a64-420c390055eb" in rbac  # Monitoring Metrics Publisher
