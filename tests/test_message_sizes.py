"""Every Durable message of a job stays small: at most 16 KB, far from the 45 KB large-message threshold.

A Durable message is an activity's input or output, or the orchestration's input, output or
custom status. Over 45 KB the extension moves it to a large-message blob, and every replay reads
it back (shared/FACTS.md). The worst job we can make: n = VARIA_MAX_VARIATIONS = 10, a 1,000-character
Chinese prompt (ASCII-escaped JSON, as the SDK and the worker serialize: 6 bytes a character), the
Azure providers against the fake server with a chat composer that writes a very long non-Latin
prompt, long sub-tasks and long refusal reasons, and image calls that all fail with a long service
message. Each message is measured as the SDK hands it to the extension: the JSON text of the
activity's input (from the orchestrator's actions), of its result (the history), and of the
orchestration's input, output and custom status.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.services import Services, build_services
from shared.config import Settings
from shared.core.models import MAX_OUTPUT_PROMPT_CHARS, clip
from shared.core.orchestrator import orchestrate_job
from shared.core.safety import get_profile
from shared.local.cli import bind_activities
from shared.local.runtime import EXECUTION_STARTED, TASK_COMPLETED, TASK_SCHEDULED, LocalRuntime, _atomic, replay
from tests import fake_ai
from tests.fake_ai import FakeAzureAI
from tests.images import scene_png
from tests.support import NoCredential, azure_env, offline_env, upload_request

LIMIT_BYTES = 16 * 1024
N = 10


def _repeat(sentence: str, chars: int) -> str:
    return (sentence * (chars // len(sentence) + 1))[:chars]


# Innocent, in scripts JSON escapes: 1,000 characters are 6,000 bytes of message.
PROMPT = _repeat("把这张照片变成一幅柔和的水彩画，保留小狗和绿色的草地，天空是淡蓝色的。", 1000)
LONG_PROMPT = _repeat("Мягкая акварель: собака сидит на зелёной лужайке, тёплый утренний свет. ", 20_000)
LONG_REASON = _repeat("这个请求适合在课堂上使用，因为它只是改变了画面的风格。", 5_000)
LONG_REFUSAL = _repeat("这个请求不适合在课堂上使用，请换一个描述再试一次。", 20_000)
LONG_ITEM = _repeat("яркие цветы и бабочки ", 2_000)
LONG_SERVICE_MESSAGE = _repeat("The server had an error while processing your request; 服务器处理请求时出错。 ", 20_000)


@dataclass
class Messages:
    """The largest message of each kind seen in one job (bytes of JSON text)."""

    sizes: dict[str, int] = field(default_factory=dict)

    def note(self, what: str, value: Any) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        self.sizes[what] = max(self.sizes.get(what, 0), len(text.encode()))

    def largest(self) -> tuple[str, int]:
        return max(self.sizes.items(), key=lambda item: item[1])

    def replayer(self, instance_id: str, input_: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
        """The SDK's replay, noting each activity input (as the action carries it) and the custom status."""
        state = replay(orchestrate_job, instance_id, input_, history)
        for episode in state.get("actions", []):
            for action in episode:
                for atomic in _atomic(action):
                    if "functionName" in atomic:
                        self.note(f"{atomic['functionName']} input", atomic.get("input") or "null")
        if state.get("customStatus") is not None:
            self.note("custom status", state["customStatus"])
        if state.get("output") is not None:
            self.note("orchestration output", state["output"])
        return state

    def read_history(self, history: list[dict[str, Any]]) -> None:
        """The orchestration's input and each activity's result, as the history holds them."""
        names = {e["EventId"]: e["Name"] for e in history if e["EventType"] == TASK_SCHEDULED}
        for event in history:
            if event["EventType"] == EXECUTION_STARTED:
                self.note("orchestration input", event["Input"])
            elif event["EventType"] == TASK_COMPLETED:
                self.note(f"{names[event['TaskScheduledId']]} output", event["Result"])


@pytest.fixture
def services(fake: FakeAzureAI, tmp_path: Path) -> Services:
    env = {**azure_env(fake), **offline_env(tmp_path), "VARIA_MAX_VARIATIONS": str(N)}
    return build_services(Settings.from_env(env), NoCredential)


@pytest.fixture
def long_service_messages(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The fake's 500 carries LONG_SERVICE_MESSAGE (its own text is one short sentence)."""
    original = fake_ai._fault_reply

    def reply(call: Any, fault: str, options: dict[str, Any]) -> Any:
        if fault == "500" and "message" in options:
            return fake_ai._error(500, "InternalServerError", options["message"])
        return original(call, fault, options)

    monkeypatch.setattr(fake_ai, "_fault_reply", reply)
    yield


def _long_composition(verdict: str, reason: str) -> fake_ai.ComposeReply:
    return lambda messages: {
        "verdict": verdict,
        "reason": reason,
        "output_prompt": LONG_PROMPT if verdict == "allow" else "",
        "style": LONG_ITEM,
        "add": [LONG_ITEM] * 40,
        "remove": [LONG_ITEM] * 40,
        "background": LONG_ITEM,
    }


def _run(services: Services, prompt: str = PROMPT, **options: Any) -> tuple[Messages, dict[str, Any]]:
    messages = Messages()
    runtime = LocalRuntime(orchestrate_job, bind_activities(services), retry_scale=0.001, replayer=messages.replayer)
    request = upload_request(services, scene_png(), prompt, **{"n": N, **options})
    try:
        instance = runtime.run(request.job_id, request.model_dump(mode="json"))
    finally:
        runtime.shutdown()
    assert instance.runtime_status == "Completed", instance.error
    messages.read_history(instance.history)
    return messages, instance.output


def _assert_small(messages: Messages) -> None:
    what, size = messages.largest()
    report = ", ".join(f"{k} {v:,}" for k, v in sorted(messages.sizes.items(), key=lambda kv: -kv[1]))
    print(f"largest Durable messages (bytes): {report}")  # shown with -s
    assert size <= LIMIT_BYTES, f"the largest Durable message is the {what}, {size:,} bytes: {report}"


def test_a_long_composition_at_n_max_keeps_every_message_under_16_kb(services: Services, fake: FakeAzureAI) -> None:
    fake.compose_reply = _long_composition("allow", LONG_REASON)
    messages, manifest = _run(services)

    assert manifest["status"] == "succeeded" and len(manifest["variations"]) == N, manifest.get("message")
    assert manifest["request"]["prompt"] == PROMPT  # the request is never cut: it is at most 1,000 characters
    _assert_small(messages)

    # The prompt was cut after a sentence, the manifest says so, and the images were drawn from what was kept.
    composition = manifest["composition"]
    kept = composition["output_prompt"]
    assert LONG_PROMPT.startswith(kept) and kept.endswith("свет.") and len(json.dumps(kept)) <= 1502
    # (cut from 4,000: the chat composer keeps no more of any text than its 1,000 answer tokens can carry)
    assert composition["reason"].startswith(f"The composed prompt was cut from 4,000 to {len(kept):,} characters.")
    assert {c.form["prompt"] for c in fake.calls if c.route == "images.edit"} == {kept}
    assert len(composition["subtasks"]["add"]) == 4 and composition["subtasks"]["style"].endswith("…")


def test_a_cut_prompt_keeps_the_classroom_suffix_whole(services: Services, fake: FakeAzureAI) -> None:
    suffix = get_profile("kids").prompt_suffix
    english = _repeat("A soft watercolour of a dog on a green lawn in warm morning light. ", 20_000)
    fake.compose_reply = lambda messages: {**_long_composition("allow", "Fine.")(messages), "output_prompt": english}
    _messages, manifest = _run(services, "as a watercolour", n=1, profile="kids")

    kept = manifest["composition"]["output_prompt"]
    assert manifest["status"] == "succeeded", manifest.get("message")
    assert kept.endswith("morning light." + suffix) and len(kept) <= MAX_OUTPUT_PROMPT_CHARS
    assert english.startswith(kept.removesuffix(suffix))
    assert (
        manifest["composition"]["reason"]
        == f"The composed prompt was cut from {4_000 + len(suffix):,} to {len(kept):,} characters. Fine."
    )


def test_every_image_failing_with_a_long_message_keeps_every_message_under_16_kb(
    services: Services, fake: FakeAzureAI, long_service_messages: None
) -> None:
    fake.compose_reply = _long_composition("allow", LONG_REASON)
    fake.fail_next("images.edit", "500", times=2 * N, message=LONG_SERVICE_MESSAGE)
    messages, manifest = _run(services)

    assert manifest["status"] == "failed", manifest.get("message")
    assert fake.count("images.edit") == 2 * N  # two rounds: the spend budget's two attempts each
    assert all(v["status"] == "failed" and v["reason"] for v in manifest["variations"])
    _assert_small(messages)


def test_a_long_refusal_keeps_every_message_under_16_kb(services: Services, fake: FakeAzureAI) -> None:
    fake.compose_reply = _long_composition("refuse", LONG_REFUSAL)
    messages, manifest = _run(services)

    assert manifest["status"] == "refused" and manifest["message"], manifest
    _assert_small(messages)


def test_a_long_structured_refusal_keeps_every_message_under_16_kb(services: Services, fake: FakeAzureAI) -> None:
    fake.fail_next("chat", "refusal", refusal=LONG_REFUSAL)
    messages, manifest = _run(services)

    assert manifest["status"] == "refused" and manifest["message"], manifest
    _assert_small(messages)


@pytest.mark.parametrize(
    "filler", ["words and more words ", "把这张照片变成水彩画。", "😀 emoji ", 'quotes " and \\ slashes\n']
)
def test_clip_fits_any_script_and_keeps_the_advice_at_the_end(filler: str) -> None:
    message = f"The image model failed (HTTP 500: {filler * 500}) An admin should check the deployment."
    for max_bytes in (60, 240, 320, 600):
        clipped = clip(message, max_bytes, keep_end=True)
        assert len(json.dumps(clipped)) - 2 <= max_bytes, (max_bytes, clipped)
        assert clipped.startswith("The image model failed") and "…" in clipped
        if max_bytes >= 240:
            assert clipped.endswith("An admin should check the deployment."), clipped
    assert clip("short enough", 12) == "short enough"
