"""The orchestrator on the azure-functions-durable SDK's own replay engine (via the local runtime)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from shared.adapters.services import Services
from shared.adapters.storage import OUTPUTS
from shared.core.orchestrator import GENERATE_ROUNDS, failure_message, orchestrate_job
from shared.core.steps import STEPS
from shared.local.cli import bind_activities
from shared.local.runtime import (
    ORCHESTRATOR_STARTED,
    TASK_COMPLETED,
    TASK_FAILED,
    TASK_SCHEDULED,
    TIMER_CREATED,
    WHEN_ALL,
    replay,
)
from tests.support import run_job, upload_request


def _scheduled(history: list[dict[str, Any]]) -> list[str]:
    return [e["Name"] for e in history if e["EventType"] == TASK_SCHEDULED]


def test_offline_job_succeeds_through_every_step(offline_services: Services, sample_png: bytes) -> None:
    request = upload_request(offline_services, sample_png, n=3)
    instance = run_job(offline_services, request)

    assert instance.runtime_status == "Completed", instance.error
    manifest = instance.output
    assert manifest["status"] == "succeeded"
    assert [v["status"] for v in manifest["variations"]] == ["succeeded"] * 3
    assert _scheduled(instance.history) == [
        "prepare",
        "caption",
        "compose",
        "reserve",
        "generate",
        "generate",
        "generate",
        "persist",
    ]
    assert instance.custom_status == {"stage": "done", "done": 3, "total": 3, "message": "succeeded"}
    stored = json.loads(offline_services.storage.get(OUTPUTS, f"{request.job_id}/manifest.json"))
    assert stored == manifest


def test_generations_are_fanned_out_before_any_completes(offline_services: Services, sample_png: bytes) -> None:
    instance = run_job(offline_services, upload_request(offline_services, sample_png, n=4))
    generate_ids = [e["EventId"] for e in instance.history if e.get("Name") == "generate"]
    first_completion = min(
        i
        for i, e in enumerate(instance.history)
        if e["EventType"] == TASK_COMPLETED and e["TaskScheduledId"] in generate_ids
    )
    scheduled_at = [i for i, e in enumerate(instance.history) if e.get("Name") == "generate"]
    assert len(scheduled_at) == 4 and max(scheduled_at) < first_completion


def test_generations_run_in_parallel(offline_services: Services, sample_png: bytes) -> None:
    # Each generate waits until all four are running at once: only a parallel fan-out finishes.
    barrier = threading.Barrier(4, timeout=10)
    activities = bind_activities(offline_services)

    def generate(payload: dict[str, Any]) -> dict[str, Any]:
        barrier.wait()
        return STEPS["generate"](offline_services, payload)

    activities["generate"] = generate
    request = upload_request(offline_services, sample_png, n=4)
    instance = run_job(offline_services, request, activities=activities, max_workers=4)
    assert instance.output["status"] == "succeeded"


def test_refused_prompt_makes_no_caption_compose_or_image_call(offline_services: Services, sample_png: bytes) -> None:
    request = upload_request(offline_services, sample_png, prompt="avec une épée ensanglantée", profile="kids")
    instance = run_job(offline_services, request)

    manifest = instance.output
    assert manifest["status"] == "refused"
    assert "'épée'" in manifest["message"] and "children" in manifest["message"]
    assert _scheduled(instance.history) == ["prepare", "persist"]
    assert offline_services.storage.list(OUTPUTS, request.job_id) == [f"{request.job_id}/manifest.json"]


def test_transient_failure_is_retried_then_succeeds(offline_services: Services, sample_png: bytes) -> None:
    calls = {"caption": 0}
    activities = bind_activities(offline_services)

    def flaky_caption(payload: dict[str, Any]) -> dict[str, Any]:
        calls["caption"] += 1
        if calls["caption"] < 3:
            raise ConnectionError("storage blinked")
        return STEPS["caption"](offline_services, payload)

    activities["caption"] = flaky_caption
    request = upload_request(offline_services, sample_png, n=2)
    instance = run_job(offline_services, request, activities=activities)

    assert instance.runtime_status == "Completed", instance.error
    assert instance.output["status"] == "succeeded"
    assert calls["caption"] == 3
    assert sum(1 for e in instance.history if e["EventType"] == TASK_FAILED) == 2


def test_failure_after_all_retries_still_ends_in_a_failed_manifest(
    offline_services: Services, sample_png: bytes
) -> None:
    activities = bind_activities(offline_services)

    def broken_compose(payload: dict[str, Any]) -> dict[str, Any]:
        raise TimeoutError("The chat model did not answer in time.")

    activities["compose"] = broken_compose
    request = upload_request(offline_services, sample_png)
    instance = run_job(offline_services, request, activities=activities)

    manifest = instance.output
    assert instance.runtime_status == "Completed"
    assert manifest["status"] == "failed"
    assert "composing" in manifest["message"] and "did not answer in time" in manifest["message"]
    assert "generate" not in _scheduled(instance.history)
    assert _scheduled(instance.history).count("compose") == 3  # RetryOptions: three attempts


def test_a_transient_generation_failure_gets_one_more_round_after_a_timer(
    offline_services: Services, sample_png: bytes
) -> None:
    activities = bind_activities(offline_services)
    answers = {"busy": 1}

    def generate(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["index"] == 1 and answers["busy"]:
            answers["busy"] -= 1
            return {"index": 1, "status": "failed", "provider": "azure-openai", "reason": "HTTP 503", "retryable": True}
        return STEPS["generate"](offline_services, payload)

    activities["generate"] = generate
    request = upload_request(offline_services, sample_png, n=3)
    instance = run_job(offline_services, request, activities=activities)

    assert instance.output["status"] == "succeeded"
    assert [v["status"] for v in instance.output["variations"]] == ["succeeded"] * 3
    generate_inputs = [e for e in instance.history if e.get("Name") == "generate"]
    assert len(generate_inputs) == 4  # three in the first round, index 1 again in the second
    timers = [i for i, e in enumerate(instance.history) if e["EventType"] == TIMER_CREATED]
    last_generate = max(i for i, e in enumerate(instance.history) if e.get("Name") == "generate")
    assert len(timers) == 1 and timers[0] < last_generate  # the second round waited on a durable timer


def test_a_generation_that_stays_unavailable_fails_after_two_attempts_and_the_others_are_kept(
    offline_services: Services, sample_png: bytes
) -> None:
    activities = bind_activities(offline_services)
    calls = {1: 0}

    def generate(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["index"] == 1:
            calls[1] += 1
            return {
                "index": 1,
                "status": "failed",
                "provider": "azure-openai",
                "reason": "HTTP 500",
                "code": "service_unavailable",
                "retryable": True,
            }
        return STEPS["generate"](offline_services, payload)

    activities["generate"] = generate
    request = upload_request(offline_services, sample_png, n=3)
    instance = run_job(offline_services, request, activities=activities)

    manifest = instance.output
    assert calls[1] == GENERATE_ROUNDS  # a step that always says retryable: the orchestrator's own bound
    # Two of three delivered: the job succeeded, partially, with the missing one's code.
    assert (manifest["status"], manifest["partial"], manifest["code"]) == ("succeeded", True, "service_unavailable")
    assert [v["status"] for v in manifest["variations"]] == ["succeeded", "failed", "succeeded"]
    assert "HTTP 500" in manifest["variations"][1]["reason"]
    # task_all waited for every generation: the manifest is the last thing written
    assert _scheduled(instance.history)[-1] == "persist"
    stored = offline_services.storage.list(OUTPUTS, request.job_id)
    assert sorted(stored) == sorted(
        f"{request.job_id}/{n}" for n in ("variation-0.png", "variation-2.png", "manifest.json")
    )


def test_the_generate_step_returns_a_retryable_failure_instead_of_raising(
    offline_services: Services, sample_png: bytes
) -> None:
    request = upload_request(offline_services, sample_png, n=1)
    activities = bind_activities(offline_services)
    prepared = activities["prepare"](request.model_dump(mode="json"))
    caption = activities["caption"](prepared)
    composition = activities["compose"]({"request": request.model_dump(mode="json"), "caption": caption})
    prepared["image"]["name"] = f"{request.job_id}/gone.png"  # storage lost the prepared image

    work = {"request": request.model_dump(mode="json"), "prepared": prepared, "composition": composition}
    (result,) = activities["generate"]({**work, "index": 0})["variations"]

    assert (result["status"], result["code"], result["retryable"]) == ("failed", "internal", True)
    assert result["reason"] == "Varia stopped on an error of its own (BlobNotFound)."


def test_a_host_fault_in_a_generation_is_retried_once_then_fails_the_job(
    offline_services: Services, sample_png: bytes
) -> None:
    activities = bind_activities(offline_services)

    def generate(payload: dict[str, Any]) -> dict[str, Any]:
        raise TimeoutError("Timeout value of 00:10:00 was exceeded by function: Functions.generate")

    activities["generate"] = generate
    request = upload_request(offline_services, sample_png, n=1)
    instance = run_job(offline_services, request, activities=activities)

    manifest = instance.output
    assert instance.runtime_status == "Completed"
    assert manifest["status"] == "failed"
    assert _scheduled(instance.history).count("generate") == 2  # RETRY_HOST_FAULT: two attempts
    assert "Timeout value" in manifest["variations"][0]["reason"]


def test_bad_image_fails_with_a_clear_message_and_keeps_the_input(offline_services: Services) -> None:
    text = b"hello, I am not a photo\n"
    request = upload_request(offline_services, text)
    instance = run_job(offline_services, request)

    manifest = instance.output
    assert manifest["status"] == "failed"
    assert "Not an image" in manifest["message"] and "text file" in manifest["message"]
    assert offline_services.storage.get(request.source.container, request.source.name) == text


@pytest.mark.parametrize(
    "raw",
    [
        "Activity function 'caption' failed: TransientServiceError: AI Vision answered HTTP 503."
        ' \n {"StackTrace": "..."}',
        "Activity function 'caption' failed:  Result: Failure\n"
        "Exception: TransientServiceError: AI Vision answered HTTP 503.\nStack:   File x",
        "AI Vision answered HTTP 503.",
    ],
)
def test_failure_messages_keep_what_the_user_can_act_on(raw: str) -> None:
    assert (
        failure_message("captioning", Exception(raw))
        == "The job stopped while captioning: AI Vision answered HTTP 503. "
        "Send it again; if it stops again, the app's logs say why."
    )


def test_replaying_every_prefix_of_a_job_at_n_max_gives_the_same_actions(
    offline_services: Services, sample_png: bytes
) -> None:
    """A job of 10 with a retried step, a retried and a failed generation, replayed at every cut.

    Each replay runs under the replay schema the Durable extension announces (V3): the SDK must
    answer with the same actions however much of the history it has seen.
    """
    activities = bind_activities(offline_services)
    faults = {"compose": 1, "busy": 1, "host": 1}

    def compose(payload: dict[str, Any]) -> dict[str, Any]:
        if faults["compose"]:
            faults["compose"] -= 1
            raise ConnectionError("blip")  # Durable retries it (RetryOptions)
        return STEPS["compose"](offline_services, payload)

    def generate(payload: dict[str, Any]) -> dict[str, Any]:
        index = payload["index"]
        if index == 3 and faults["busy"]:
            faults["busy"] -= 1
            return {"index": 3, "status": "failed", "provider": "x", "reason": "HTTP 429", "retryable": True}
        if index == 5:
            return {"index": 5, "status": "refused", "provider": "x", "reason": "content filter"}
        if index == 7 and faults["host"]:
            faults["host"] -= 1
            raise TimeoutError("the worker was recycled")  # the host retries it (RETRY_HOST_FAULT)
        return STEPS["generate"](offline_services, payload)

    activities["compose"], activities["generate"] = compose, generate
    request = upload_request(offline_services, sample_png, n=10)
    instance = run_job(offline_services, request, activities=activities)
    assert [v["status"] for v in instance.output["variations"]] == ["succeeded"] * 5 + ["refused"] + ["succeeded"] * 4
    assert _scheduled(instance.history).count("generate") == 12  # 10, index 7 again, then index 3's round

    history = json.loads(json.dumps(instance.history))
    input_ = request.model_dump(mode="json")
    final = replay(orchestrate_job, request.job_id, input_, history)
    assert final["isDone"] and final["output"] == instance.output
    assert final["schemaVersion"] == 2  # ReplaySchema.V3, as under extension bundle v4
    final_actions = [a for episode in final["actions"] for a in episode]
    fan_outs = [a for a in final_actions if a["actionType"] == WHEN_ALL and len(a["compoundActions"]) > 1]
    assert len(fan_outs) == 1 and len(fan_outs[0]["compoundActions"]) == 10  # one nested task_all of 10

    cuts = [i for i, e in enumerate(history) if e["EventType"] == ORCHESTRATOR_STARTED][1:] + [len(history)]
    assert len(cuts) > 20  # one episode per completion, retries and timers included
    for cut in cuts:
        prefix = history[:cut]
        first = replay(orchestrate_job, request.job_id, input_, prefix)
        again = replay(orchestrate_job, request.job_id, input_, prefix)
        assert first == again, f"replay of the first {cut} events is not deterministic"
        actions = [a for episode in first["actions"] for a in episode]
        assert actions == final_actions[: len(actions)], f"prefix {cut} asked for different actions"
