"""One image quota for every instance: slots from a schedule in storage, batches when quota-bound, spill-over on 429.

The schedule is exercised on a local folder and on Azurite; whole jobs run through the real
orchestrator on the SDK's replay engine, with the Azure providers against the fake server, which
enforces each deployment's quota as Azure does (counted when a call arrives, per deployment).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from shared.adapters.quota import LATE_MARGIN_STEP, SCHEDULE, ImageQuota, interval_s
from shared.adapters.services import Services, build_services
from shared.adapters.storage import WORK, Storage
from shared.config import ImageDeployment, Settings
from shared.local.cli import make_runtime
from tests.fake_ai import IMAGE_ROUTES, FakeAzureAI
from tests.support import NoCredential, azure_env, run_job, upload_request

SWEDEN = ImageDeployment("https://sweden.openai.azure.com", "gpt-image-2", 6)
POLAND = ImageDeployment("https://poland.openai.azure.com", "gpt-image-2", 12)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_quota_bound_job_takes_one_slot_for_its_n_images(storage: Storage) -> None:
    """At 6 requests a minute, four single requests would span 30 s: counted by request, they go as one."""
    clock = Clock()
    quota = ImageQuota(storage, [SWEDEN], clock=clock)
    (request,) = quota.plan([0, 1, 2, 3])
    assert request.indices == (0, 1, 2, 3) and request.at == clock.now
    (second_job,) = quota.plan([0, 1])
    assert second_job.at == pytest.approx(
        clock.now + interval_s(SWEDEN), abs=1e-6
    )  # the next job waits one slot, not four


def test_counted_by_image_each_image_is_its_own_slot(storage: Storage) -> None:
    clock = Clock()
    quota = ImageQuota(storage, [SWEDEN], unit="image", clock=clock)
    planned = quota.plan([0, 1, 2])
    assert [p.indices for p in planned] == [(0,), (1,), (2,)]
    assert [p.at - clock.now for p in planned] == pytest.approx([0, 10.2, 20.4])


def test_with_room_in_the_quota_the_images_go_out_one_per_request_at_once(storage: Storage) -> None:
    """6,000 a minute: four singles fit within a second, so one refused image costs no other."""
    clock = Clock()
    fast = ImageDeployment("https://fast.openai.azure.com", "gpt-image-2", 6000)
    planned = ImageQuota(storage, [fast], clock=clock).plan([0, 1, 2, 3])
    assert [p.indices for p in planned] == [(0,), (1,), (2,), (3,)]
    assert max(p.at for p in planned) - clock.now < 0.1


def test_slots_go_to_the_deployment_free_soonest_and_a_429_moves_them_elsewhere(storage: Storage) -> None:
    clock = Clock()
    quota = ImageQuota(storage, [SWEDEN, POLAND], unit="image", clock=clock)
    planned = quota.plan([0, 1, 2, 3, 4])
    # Sweden every 10.2 s, Poland every 5.1 s: the five slots are the five earliest of both schedules.
    assert [(p.deployment.split(".")[0], round(p.at - clock.now, 1)) for p in planned] == [
        ("sweden", 0.0), ("poland", 0.0), ("poland", 5.1), ("sweden", 10.2), ("poland", 10.2)
    ]  # fmt: skip
    clock.now += 60  # both free again
    quota.hold_off(POLAND.key, 30)  # Poland answered 429 "retry after 30 s"
    again = quota.plan([0, 1], avoid=[POLAND.key])
    assert [p.deployment for p in again] == [SWEDEN.key, SWEDEN.key]
    assert quota.send_turn(POLAND.key) >= clock.now + 30  # and nothing leaves for Poland before then


def test_the_gate_spaces_calls_as_they_leave_even_when_one_starts_late(storage: Storage) -> None:
    """Job A's call starts 0.5 s after its slot (its instance was busy), job B's on time: B waits for A's spacing."""
    clock = Clock()
    quota = ImageQuota(storage, [SWEDEN], clock=clock)
    (a,) = quota.plan([0])
    (b,) = quota.plan([0])
    clock.now = a.at + 0.5
    assert quota.send_turn(SWEDEN.key) == clock.now  # A leaves now, late
    clock.now = b.at
    assert quota.send_turn(SWEDEN.key) == pytest.approx(
        a.at + 0.5 + interval_s(SWEDEN), abs=1e-6
    )  # B: a spacing after A
    (c,) = quota.plan([0])  # and the slots still to hand out follow the calls
    assert c.at == pytest.approx(a.at + 0.5 + 2 * interval_s(SWEDEN), abs=1e-6)
    quota.hold_off(SWEDEN.key, 30)  # a 429: nothing leaves for 30 s (and the margin widens: 5% of a slot)
    assert quota.send_turn(SWEDEN.key) == pytest.approx(clock.now + 30 + 0.05 * interval_s(SWEDEN), abs=1e-6)


def test_a_request_that_leaves_late_moves_the_next_turn_after_it(storage: Storage) -> None:
    """The schedule spaces the next request from when one really left, unless another has taken a turn since;
    either way a late departure widens the margin (half a 429's step): the load that made it late delays
    the next ones too."""
    clock = Clock()
    quota = ImageQuota(storage, [SWEDEN], clock=clock)
    spacing = interval_s(SWEDEN)
    step = LATE_MARGIN_STEP * spacing
    first = quota.send_turn(SWEDEN.key)
    quota.left_late(SWEDEN.key, first, first + 0.4)  # its instance was busy: it left 0.4 s after its turn
    second = quota.send_turn(SWEDEN.key)
    assert second - first == pytest.approx(0.4 + spacing + step, abs=1e-6)
    (planned,) = quota.plan([0])  # the slots still to hand out follow it too
    assert planned.at - second == pytest.approx(spacing, abs=1e-6)
    third = quota.send_turn(SWEDEN.key)
    quota.left_late(SWEDEN.key, second, second + 0.4)  # too late to move: the third has its turn already
    assert quota.send_turn(SWEDEN.key) - third == pytest.approx(spacing + 2 * step, abs=1e-6)


def test_the_gate_records_a_departure_later_than_its_turn(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """The schedule's update took 0.3 s (a busy instance): the request left that late, and the next turn knows it."""
    from shared.core.steps import _Gate

    quota = ImageQuota(storage, [SWEDEN])
    spacing = interval_s(SWEDEN)
    taking = quota.send_turn

    def slow_turn(deployment: str) -> float:
        turn = taking(deployment)
        time.sleep(0.3)
        return turn

    monkeypatch.setattr(quota, "send_turn", slow_turn)
    gate = _Gate(quota, SWEDEN.key)
    gate()
    assert gate.turn is not None
    left = time.time()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the correction is written beside the request, not before it
        if json.loads(storage.get(WORK, SCHEDULE))[f"sent:{SWEDEN.key}"] != gate.turn:
            break
        time.sleep(0.02)
    monkeypatch.undo()
    expected = left + spacing + LATE_MARGIN_STEP * spacing  # not gate.turn + spacing
    assert quota.send_turn(SWEDEN.key) == pytest.approx(expected, abs=0.1)


def test_a_request_answered_429_at_a_window_edge_leaves_again_in_its_own_turn(storage: Storage) -> None:
    """A rejected request used no quota: its retry goes when the window has room, not one spacing later."""
    clock = Clock()
    quota = ImageQuota(storage, [SWEDEN], clock=clock)
    rejected = quota.send_turn(SWEDEN.key)
    clock.now += 0.3  # the 429 came back, asking for 0.5 s
    retry = quota.retry_turn(SWEDEN.key, 0.5, rejected)
    spacing, margin = interval_s(SWEDEN), 0.05 * interval_s(SWEDEN)  # the 429 widened the margin
    assert retry == pytest.approx(clock.now + 0.5 + 0.02 * spacing + margin, abs=1e-6)
    assert quota.send_turn(SWEDEN.key) == pytest.approx(retry + spacing + margin, abs=1e-6)  # the next one follows it
    # Had another request left meanwhile, the retry would follow that one instead.
    other = quota.send_turn(SWEDEN.key)
    assert quota.retry_turn(SWEDEN.key, 0.5, retry) == pytest.approx(other + spacing + 2 * margin, abs=1e-6)


def test_a_request_that_left_late_and_got_a_429_retries_in_its_own_place(storage: Storage) -> None:
    """The schedule recorded the rejected request's late departure (left_late): that departure, not its turn,
    is the place its retry takes; the retry does not wait a whole spacing behind its own first attempt."""
    from shared.core.steps import _Gate

    deployment = ImageDeployment("https://one.openai.azure.com", "gpt-image-2", 60)
    quota = ImageQuota(storage, [deployment])
    spacing = interval_s(deployment)
    gate = _Gate(quota, deployment.key)
    gate()
    assert gate.turn is not None and gate.left_at is not None
    gate.left_at = gate.turn + 0.3  # it left 0.3 s after its turn (a busy instance) ...
    quota.left_late(deployment.key, gate.turn, gate.left_at)  # ... as the gate's thread records
    gate.retry_after = 0.05  # the 429 at the window's edge asked for 50 ms
    asked = time.time()
    gate()
    assert gate.turn < asked + 0.05 + 0.5 * spacing  # soon after the window has room, not a spacing later


def test_429s_widen_the_gates_margin_and_delivered_calls_narrow_it(storage: Storage) -> None:
    clock = Clock()
    quota = ImageQuota(storage, [SWEDEN], clock=clock)
    spacing = interval_s(SWEDEN)

    def gap_after(holds: int) -> float:
        """The gap the gate keeps between two calls after `holds` more 429s (each held off for no time)."""
        clock.now += 100  # a quiet moment: nothing waiting
        for _ in range(holds):
            quota.hold_off(SWEDEN.key, 0)
        first = quota.send_turn(SWEDEN.key)
        return quota.send_turn(SWEDEN.key) - first

    assert gap_after(0) == pytest.approx(spacing)
    assert gap_after(2) == pytest.approx(1.1 * spacing)
    assert gap_after(10) == pytest.approx(1.25 * spacing)  # never more than a quarter slot
    for _ in range(30):
        quota.record_latency(SWEDEN.key, 20.0)
    assert gap_after(0) < 1.02 * spacing


def test_instances_sharing_storage_never_hand_out_one_slot_twice(storage: Storage) -> None:
    """Eight instances (each its own ImageQuota over the same store) take 80 slots at once: all spaced by the quota."""
    deployment = ImageDeployment("https://one.openai.azure.com", "gpt-image-2", 600)
    slots: list[float] = []
    lock = threading.Lock()

    def instance() -> None:
        quota = ImageQuota(storage, [deployment], unit="image")
        for _ in range(10):
            (planned,) = quota.plan([0])
            with lock:
                slots.append(planned.at)

    threads = [threading.Thread(target=instance) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slots.sort()
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert len(slots) == 80 and min(gaps) >= interval_s(deployment) - 1e-6


def test_an_unreadable_schedule_is_a_free_one(storage: Storage) -> None:
    storage.put(WORK, SCHEDULE, b"not json", "application/json")
    clock = Clock()
    (planned,) = ImageQuota(storage, [SWEDEN], clock=clock).plan([0])
    assert planned.at == clock.now
    assert json.loads(storage.get(WORK, SCHEDULE)) == {
        SWEDEN.key: pytest.approx(clock.now + interval_s(SWEDEN), abs=1e-6)
    }


# --- whole jobs ------------------------------------------------------------------------------------------------------


def _services(fake: FakeAzureAI, folder: Path, **env: str) -> Services:
    settings = azure_env(fake, VARIA_STORAGE="local", VARIA_LOCAL_DIR=str(folder), **env)
    return build_services(Settings.from_env(settings), NoCredential)


def _image_calls(fake: FakeAzureAI) -> list[tuple[str | None, int]]:
    return [(c.model, c.status) for c in fake.calls if c.route in IMAGE_ROUTES]


def test_two_instances_sharing_storage_stay_within_the_deployments_quota(
    fake: FakeAzureAI, sample_png: bytes, tmp_path: Path
) -> None:
    """Two runtimes (two instances) on one store: together they keep to the quota, and no call is answered 429.

    The fake allows 10 calls in any second; Varia is told 500 a minute, leaving a call's start-up
    jitter room within the window. Two instances pacing themselves alone would send 1,000 a minute.
    """
    fake.limit_images(10, 1.0)
    instances = [_services(fake, tmp_path, VARIA_IMAGE_REQUESTS_PER_MINUTE="500") for _ in range(2)]
    runtimes = [make_runtime(services, retry_scale=0.01) for services in instances]
    started = [
        runtime.start_background(req.job_id, req.model_dump(mode="json"))
        for k in range(10)
        for i, (runtime, services) in enumerate(zip(runtimes, instances, strict=True))
        for req in [upload_request(services, sample_png, f"as a watercolour, take {k} on instance {i}", n=2)]
    ]
    for inst in started:
        assert inst.done.wait(120)
    for runtime in runtimes:
        runtime.shutdown()
    assert [inst.output["status"] for inst in started] == ["succeeded"] * 20
    calls = _image_calls(fake)
    from collections import Counter

    summary = str(Counter((c.form.get("n"), c.status) for c in fake.calls if c.route in IMAGE_ROUTES))
    # Both instances' calls kept to the shared schedule: a few 429s where a call reached the fake late
    # (a loaded machine: 3 were seen under a full test run with coverage), never the 429 of every other
    # call, about 20 of 40, that two private schedules give.
    assert sum(1 for _, status in calls if status == 200) == 40
    assert sum(1 for _, status in calls if status == 429) <= 5, summary


def test_at_the_default_quota_a_job_of_four_is_one_request_of_four_images(
    fake: FakeAzureAI, sample_png: bytes, tmp_path: Path
) -> None:
    fake.limit_images(1, 10.0)  # 6 requests a minute, enforced over 10 s windows
    services = _services(fake, tmp_path, VARIA_IMAGE_REQUESTS_PER_MINUTE="6")
    manifest = run_job(services, upload_request(services, sample_png, n=4)).output
    assert manifest["status"] == "succeeded"
    edits = [c for c in fake.calls if c.route == "images.edit"]
    assert len(edits) == 1 and edits[0].form["n"] == "4"
    # Each image is still one paid image.
    assert manifest["paid_calls"]["image"] == {"attempted": 4, "delivered": 4, "rejected": 0}
    assert len({v["image"]["name"] for v in manifest["variations"]}) == 4


def test_counted_by_image_a_job_of_two_sends_two_requests_a_slot_apart(
    fake: FakeAzureAI, sample_png: bytes, tmp_path: Path
) -> None:
    fake.limit_images(1, 1.0, per_image=True)  # 60 images a minute; Varia is told 50, room for a call's jitter
    services = _services(fake, tmp_path, VARIA_IMAGE_REQUESTS_PER_MINUTE="50", VARIA_IMAGE_QUOTA_UNIT="image")
    manifest = run_job(services, upload_request(services, sample_png, n=2)).output
    assert manifest["status"] == "succeeded"
    edits = [c for c in fake.calls if c.route == "images.edit"]
    assert [c.form["n"] for c in edits] == ["1", "1"] and [c.status for c in edits] == [200, 200]
    assert edits[1].started - edits[0].started >= 1.0


def test_a_429_from_one_deployment_sends_the_retry_to_another(
    fake: FakeAzureAI, sample_png: bytes, tmp_path: Path
) -> None:
    deployments = json.dumps(
        [
            {"endpoint": fake.url, "deployment": "gpt-image-2-sweden", "rpm": 6000, "api_key": "k"},
            {"endpoint": fake.url, "deployment": "gpt-image-2-poland", "rpm": 60, "api_key": "k"},
        ]
    )
    services = _services(fake, tmp_path, VARIA_IMAGE_DEPLOYMENTS=deployments)
    fake.fail_next("images.edit", "429", retry_after=30)  # Sweden (free soonest) is busy for 30 s
    instance = run_job(services, upload_request(services, sample_png, n=1))
    manifest = instance.output
    assert manifest["status"] == "succeeded"
    assert _image_calls(fake) == [("gpt-image-2-sweden", 429), ("gpt-image-2-poland", 200)]
    assert manifest["variations"][0]["deployment"].endswith("/gpt-image-2-poland")


def test_image_concurrency_follows_the_measured_latency(storage: Storage) -> None:
    """In flight = every deployment's rpm × the image latency (Little's law): 18 a minute of 60 s images is 18 calls."""
    quota = ImageQuota(storage, [SWEDEN, POLAND])
    assert quota.concurrency(fallback_latency_s=25.0) == 9  # 18 a minute × 25 s / 60, rounded up, + 1
    quota.record_latency(SWEDEN.key, 60.0)
    assert quota.measured_latency_s() == 60.0
    assert quota.concurrency(fallback_latency_s=25.0) == 19
    for _ in range(30):  # the images got faster: the moving average follows
        quota.record_latency(SWEDEN.key, 10.0)
    assert quota.concurrency(fallback_latency_s=25.0) == 5


def test_the_local_runtime_sizes_its_image_workers_from_the_measured_latency(fake: FakeAzureAI, tmp_path: Path) -> None:
    """At the default quota, 60 s images need 7 workers, not the 4 a fixed 30 s guess gave; other steps get 4."""
    from shared.config import activity_concurrency
    from shared.local.cli import SHORT_STEPS, activity_limits

    services = _services(fake, tmp_path, VARIA_IMAGE_REQUESTS_PER_MINUTE="6")
    assert services.quota is not None
    limit = activity_limits(services)
    assert (limit("generate"), limit("prepare")) == (4, SHORT_STEPS)  # before any call: low quality's 25 s
    services.quota.record_latency(services.settings.image_deployments[0].key, 60.0)
    assert activity_limits(services)("generate") == 7 > activity_concurrency(6)


def test_the_local_runtime_holds_each_kind_of_activity_to_its_limit(
    offline_services: Services, sample_png: bytes
) -> None:
    """Eight variations at once, two image workers: never more than two generate steps run together."""
    from shared.core.orchestrator import orchestrate_job
    from shared.local.cli import bind_activities
    from shared.local.runtime import LocalRuntime

    running, most, lock = [0], [0], threading.Lock()
    steps = bind_activities(offline_services)

    def generate(payload: dict[str, object]) -> dict[str, object]:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.2)
            return steps["generate"](payload)
        finally:
            with lock:
                running[0] -= 1

    runtime = LocalRuntime(
        orchestrate_job,
        {**steps, "generate": generate},
        max_workers=16,
        limit=lambda name: 2 if name == "generate" else 4,
    )
    request = upload_request(offline_services, sample_png, n=8)
    instance = runtime.run(request.job_id, request.model_dump(mode="json"))
    runtime.shutdown()
    assert instance.output["status"] == "succeeded"
    assert most[0] == 2


def test_a_request_that_came_without_a_slot_takes_one_as_its_quota_counts(storage: Storage) -> None:
    """A generate step from an earlier version's history has no slot: it takes one, or n in a row counted by image."""
    clock = Clock()
    by_request = ImageQuota(storage, [SWEDEN], clock=clock)
    assert by_request.slot_for(3).at == clock.now
    assert by_request.plan([]) == []
    by_image = ImageQuota(storage, [SWEDEN], unit="image", clock=clock)
    last = by_image.slot_for(3)  # after the first request's slot: three more, and it waits for the last
    assert last.at == pytest.approx(clock.now + 3 * interval_s(SWEDEN), abs=1e-6)
    by_image.hold_off("not-a-deployment", 30)  # a deployment no longer configured: nothing to hold off
    with pytest.raises(ValueError):
        ImageQuota(storage, [])


def test_a_generate_step_without_a_slot_still_keeps_to_the_quota(
    fake: FakeAzureAI, sample_png: bytes, tmp_path: Path
) -> None:
    """Two image requests of an earlier version (no deployment, no slot) a second apart at 60 a minute: no 429."""
    from shared.core import steps
    from shared.core.models import GenerateInput
    from shared.local.cli import bind_activities

    fake.limit_images(1, 1.0)
    services = _services(fake, tmp_path, VARIA_IMAGE_REQUESTS_PER_MINUTE="50")
    request = upload_request(services, sample_png, n=2)
    activities = bind_activities(services)
    prepared = activities["prepare"](request.model_dump(mode="json"))
    caption = activities["caption"](prepared)
    composition = activities["compose"]({"request": request.model_dump(mode="json"), "caption": caption})
    work = {"request": request.model_dump(mode="json"), "prepared": prepared, "composition": composition}
    first = steps.generate(services, GenerateInput.model_validate({**work, "index": 0}))
    second = steps.generate(services, GenerateInput.model_validate({**work, "index": 1}))
    assert (first.status, second.status) == ("succeeded", "succeeded")
    edits = [c for c in fake.calls if c.route == "images.edit"]
    assert [c.status for c in edits] == [200, 200] and edits[1].started - edits[0].started >= 1.0
