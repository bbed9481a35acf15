"""Injected faults, from the fake AI server and around Azurite: every job ends, none is paid twice.

Each test runs a whole job with the Azure providers (real SDKs over HTTP to the fake server)
and real Blob Storage, injects one kind of fault, and checks the outcome, the calls made and
that the manifest exists. "Paid twice" means more successful (billable) answers than the job
delivered: one caption, one composition and one image per variation at most.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shared.adapters.services import Services, build_services
from shared.adapters.storage import OUTPUTS
from shared.config import Settings
from shared.core.steps import manifest_name
from shared.local.cli import bind_activities
from shared.local.runtime import Activity
from tests.conftest import Azurite
from tests.fake_ai import FakeAzureAI
from tests.reliability import LEDGER
from tests.support import NoCredential, azure_env, run_job, upload_request

pytestmark = pytest.mark.azurite

BILLABLE = ("vision.analyze", "chat", "images.edit")


@pytest.fixture
def services(fake: FakeAzureAI, azurite: Azurite) -> Services:
    azurite.clear()
    env = azure_env(fake, azurite.connection_string, VARIA_SERVICE_TIMEOUT_SECONDS="5")
    return build_services(Settings.from_env(env), NoCredential)


@pytest.fixture
def sample(sample_png: bytes) -> bytes:
    return sample_png


def _billable_answers(fake: FakeAzureAI, route: str) -> int:
    """Answers a real service would bill: 2xx and well formed (a malformed or empty 200 is a fault)."""
    return sum(1 for c in fake.calls if c.route == route and 200 <= c.status < 300 and c.fault is None)


@dataclass
class FaultRun:
    """One job run with a fault in place: its manifest, and whether it was lost or paid twice."""

    fault: str
    manifest: dict[str, Any]
    lost: str | None  # why the job has no manifest, if it has none
    billed: dict[str, int]  # billable answers by route
    answered: int  # variations that ended succeeded or refused: each paid at most once

    @property
    def ended_with_manifest(self) -> bool:
        return self.lost is None

    @property
    def paid_twice(self) -> bool:
        b = self.billed
        return b["vision.analyze"] > 1 or b["chat"] > 1 or b["images.edit"] > self.answered

    def __str__(self) -> str:
        return f"{self.fault}: lost={self.lost!r}, billed={self.billed}, answered={self.answered}"


def run(
    services: Services,
    fake: FakeAzureAI,
    sample: bytes,
    fault: str,
    wrap: Callable[[dict[str, Activity]], None] | None = None,
    retry_scale: float = 0.001,
    **request_options: Any,
) -> FaultRun:
    """One job with the fault in place, counted in the reliability ledger (fault, job, loss, double payment)."""
    activities = bind_activities(services)
    if wrap:
        wrap(activities)
    request = upload_request(services, sample, **{"n": 2, **request_options})
    instance = run_job(services, request, retry_scale, activities)
    lost = None
    if instance.runtime_status != "Completed" or services.storage.info(OUTPUTS, manifest_name(request.job_id)) is None:
        lost = f"the job ended {instance.runtime_status} without a manifest ({instance.error})"
    manifest: dict[str, Any] = instance.output or {}
    answered = sum(1 for v in manifest.get("variations", []) if v["status"] in ("succeeded", "refused"))
    result = FaultRun(fault, manifest, lost, {route: _billable_answers(fake, route) for route in BILLABLE}, answered)
    LEDGER.faults.add(fault)
    LEDGER.jobs += 1
    if not result.ended_with_manifest:
        LEDGER.lost.append(f"fault:{fault}")
    if result.paid_twice:
        LEDGER.double_paid.append(f"fault:{fault}")
    return result


def test_429_with_retry_after(services: Services, fake: FakeAzureAI, sample: bytes) -> None:
    fake.fail_next("images.edit", "429", retry_after=1)
    job = run(services, fake, sample, "429 retry-after")
    assert job.ended_with_manifest and not job.paid_twice, str(job)
    manifest = job.manifest
    assert manifest["status"] == "succeeded" and fake.count("images.edit") == 3


def test_429_with_retry_after_ms(services: Services, fake: FakeAzureAI, sample: bytes) -> None:
    fake.fail_next("chat", "429-ms", retry_after_ms=150)
    job = run(services, fake, sample, "429 retry-after-ms")
    assert job.ended_with_manifest and not job.paid_twice, str(job)
    manifest = job.manifest
    assert manifest["status"] == "succeeded" and fake.count("chat") == 2


def test_500_from_vision(services: Services, fake: FakeAzureAI, sample: bytes) -> None:
    fake.fail_next("vision.analyze", "500")
    job = run(services, fake, sample, "500")
    assert job.ended_with_manifest and not job.paid_twice, str(job)
    manifest = job.manifest
    assert manifest["status"] == "succeeded" and fake.count("vision.analyze") == 2


def test_a_503_that_outlasts_the_budget_fails_after_two_attempts_with_what_to_do(
    services: Services, fake: FakeAzureAI, sample: bytes
) -> None:
    fake.fail_next("images.edit", "503", times=3)  # more than the 2 attempts a paid call gets
    job = run(services, fake, sample, "503", n=1)
    assert job.ended_with_manifest and not job.paid_twice, str(job)
    manifest = job.manifest
    assert fake.count("images.edit") == 2
    assert (manifest["status"], manifest["code"]) == ("failed", "service_unavailable")
    assert manifest["message"].endswith("Try again later.")


def test_read_timeout(services: Services, fake: FakeAzureAI, sample: bytes) -> None:
    fake.fail_next("chat", "timeout", seconds=7)
    job = run(services, fake, sample, "read timeout")
    assert job.ended_with_manifest and not job.paid_twice, str(job)
    manifest = job.manifest
    assert manifest["status"] == "succeeded" and fake.count("chat") == 2


def test_connection_reset(services: Services, fake: FakeAzureAI, sample: bytes) -> None:
    fake.fail_next("images.edit", "reset")
    job = run(services, fake, sample, "connection reset")
    assert job.ended_with_manifest and not job.paid_twice, str(job)
    manifest = job.manifest
    assert manifest["status"] == "succeeded"


def test_malformed_json_body(services: Services, fake: FakeAzureAI, sample: bytes) -> None:
    fake.fail_next("chat", "malformed")
    job = run(services, fake, sample, "malformed JSON")
    assert job.ended_with_manifest and not job.paid_twice, str(job)
    manifest = job.manifest
    assert manifest["status"] == "succeeded" and fake.count("chat") == 2


def test_200_with_no_image(services: Services, fake: FakeAzureAI, sample: bytes) -> None:
    fake.fail_next("images.edit", "no-image")
    job = run(services, fake, sample, "200 with no image")
    assert job.ended_with_manifest and not job.paid_twice, str(job)
    manifest = job.manifest
    assert manifest["status"] == "succeeded" and fake.count("images.edit") == 3


@pytest.mark.parametrize("shape", ["content_policy_violation", "contentFilter"])
def test_content_filter_is_a_refusal_never_retried(
    services: Services, fake: FakeAzureAI, sample: bytes, shape: str
) -> None:
    fake.fail_next("images.edit", shape, times=2)
    job = run(services, fake, sample, f"content filter ({shape})")
    assert job.ended_with_manifest and not job.paid_twice, str(job)
    manifest = job.manifest
    assert manifest["status"] == "refused" and fake.count("images.edit") == 2
    assert all(v["status"] == "refused" for v in manifest["variations"])


def test_401_fails_fast_with_a_clear_message(services: Services, fake: FakeAzureAI, sample: bytes) -> None:
    fake.fail_next("chat", "401", times=10)
    job = run(services, fake, sample, "401")
    assert job.ended_with_manifest and not job.paid_twice, str(job)
    manifest = job.manifest
    assert manifest["status"] == "failed" and fake.count("chat") == 1
    assert "credentials" in manifest["message"] and "AZURE_OPENAI" in manifest["message"]
    assert fake.count("images.edit") == 0


def test_storage_down_during_persist_then_back(
    services: Services, fake: FakeAzureAI, sample: bytes, azurite: Azurite
) -> None:
    outage: dict[str, Any] = {}

    def wrap(activities: dict[str, Activity]) -> None:
        persist = activities["persist"]

        def persist_during_outage(payload: Any) -> Any:
            if not outage:
                azurite.stop()
                outage["restart"] = threading.Timer(1.0, azurite.start)
                outage["restart"].start()
            return persist(payload)

        activities["persist"] = persist_during_outage

    job = run(services, fake, sample, "storage down during persist", wrap=wrap, retry_scale=0.4)
    assert job.ended_with_manifest and not job.paid_twice, str(job)
    manifest = job.manifest
    outage["restart"].join()
    assert manifest["status"] == "succeeded"
    assert services.storage.info(OUTPUTS, manifest_name(manifest["job_id"])) is not None


def test_crash_between_two_generations(services: Services, fake: FakeAzureAI, sample: bytes) -> None:
    crashed: set[int] = set()

    def wrap(activities: dict[str, Activity]) -> None:
        generate = activities["generate"]

        def generate_then_crash(payload: Any) -> Any:
            result = generate(payload)  # the image is paid for and stored...
            if payload["index"] == 1 and 1 not in crashed:
                crashed.add(1)
                raise RuntimeError("worker recycled before reporting")  # ...but the result is lost
            return result

        activities["generate"] = generate_then_crash

    job = run(services, fake, sample, "crash between generations", wrap=wrap, n=3)
    assert job.ended_with_manifest and not job.paid_twice, str(job)
    manifest = job.manifest
    assert manifest["status"] == "succeeded"
    assert fake.paid("images.edit") == 3  # the re-run found index 1 stored and did not pay again
    assert [v["reused"] for v in manifest["variations"]] == [False, True, False]
    stored = services.storage.list(OUTPUTS, f"{manifest['job_id']}/variation-")
    assert len(stored) == 3


@pytest.fixture(autouse=True)
def _azurite_back_up(azurite: Azurite) -> Iterator[None]:
    yield
    if azurite.process is None or azurite.process.poll() is not None:
        azurite.start()
