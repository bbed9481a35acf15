"""Every answer Azure documents, through the real SDKs against the fake: final status, code, message, calls.

Each case injects one answer shape at the fake server (tests/fake_ai.py), runs a whole job with
the Azure providers, and checks what the user is told and how many calls were made: refusals are
never retried, permanent failures stop at once, and a transient answer gets one more attempt at
most (the spend budget: 2 billed attempts per paid call, SDK and Durable together; a 429 is not
billed, and a call turned away by three stops there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.services import Services, build_services
from shared.config import Settings
from shared.core import budget
from shared.core.codes import CODES
from tests.fake_ai import FakeAzureAI
from tests.images import scene_png
from tests.support import NoCredential, azure_env, offline_env, run_job, upload_request


@dataclass(frozen=True)
class Answer:
    route: str  # where the fake answers this way: chat (compose), images.edit, vision.analyze
    fault: str
    status: str  # the job's final status
    code: str
    calls: int  # calls made to the route, all attempts included
    says: str  # a fragment of the final message
    n: int = 1
    profile: str = "general"


ANSWERS = [
    # Chat: the "no" answers, as 400 and as 200 (charged), and the ones with nothing in them.
    Answer("chat", "content_filter", "refused", "service_refused", 1, "content filter", profile="kids"),
    Answer("chat", "content_filter-200", "refused", "service_refused", 1, "content filter", profile="kids"),
    Answer("chat", "refusal", "refused", "service_refused", 1, "refused"),
    Answer("chat", "length", "failed", "service_incomplete", 1, "token budget"),
    Answer("chat", "empty", "failed", "service_incomplete", 2, "no text"),
    Answer("chat", "permission", "failed", "service_auth", 1, "Cognitive Services OpenAI User"),
    Answer("chat", "403-blocked", "failed", "resource_blocked", 1, "not a credentials problem"),
    Answer("chat", "404", "failed", "service_config", 1, "deployment"),
    Answer("chat", "500", "failed", "service_unavailable", 2, "Try again later"),
    # Images: three filter shapes, the minors rule, a blocked resource, storms of 429 and 5xx.
    Answer("images.edit", "content_policy_violation", "refused", "service_refused", 2, "content filter", n=2),
    Answer("images.edit", "contentFilter", "refused", "service_refused", 1, "content filter"),
    Answer("images.edit", "moderation_blocked", "refused", "service_refused", 1, "content filter"),
    Answer("images.edit", "minor", "refused", "minor_edit_refused", 1, "Draw a new scene"),
    Answer("images.edit", "403-blocked", "failed", "resource_blocked", 1, "an admin must review"),
    Answer("images.edit", "401", "failed", "service_auth", 1, "credentials"),
    Answer("images.edit", "404", "failed", "service_config", 1, "deployment"),
    Answer("images.edit", "429", "failed", "quota_exhausted", 3, "rate limit"),  # unbilled: budget.MAX_REJECTED
    Answer("images.edit", "500", "failed", "service_unavailable", 4, "Try again later", n=2),
    Answer("images.edit", "no-image", "failed", "service_incomplete", 2, "without an image"),
    # AI Vision.
    Answer("vision.analyze", "401", "failed", "service_auth", 1, "Cognitive Services User"),
    Answer("vision.analyze", "429", "failed", "quota_exhausted", 3, "rate limit"),
    Answer("vision.analyze", "503", "failed", "service_unavailable", 2, "Try again later"),
    Answer("vision.analyze", "no-caption", "failed", "service_config", 1, "no caption"),
    Answer("vision.analyze", "InvalidImageSize", "failed", "image_invalid", 1, "InvalidImageSize"),
]


@pytest.fixture
def services(fake: FakeAzureAI, tmp_path: Path) -> Services:
    env = {**azure_env(fake), **offline_env(tmp_path)}
    return build_services(Settings.from_env(env), NoCredential)


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: f"{a.route}:{a.fault}")
def test_each_answer_ends_the_job_with_its_code_and_a_true_message(
    answer: Answer, services: Services, fake: FakeAzureAI
) -> None:
    fake.fail_next(answer.route, answer.fault, times=100)
    request = upload_request(services, scene_png(320, 240), n=answer.n, filename="meadow.png")
    request = request.model_copy(update={"profile": answer.profile})

    manifest: dict[str, Any] = run_job(services, request).output

    assert (manifest["status"], manifest["code"]) == (answer.status, answer.code), manifest["message"]
    assert answer.says in manifest["message"]
    assert answer.code in CODES
    assert fake.count(answer.route) == answer.calls
    if answer.route != "images.edit" and answer.status != "succeeded":
        assert fake.count("images.edit") == 0  # the job stopped before any image was paid for


def test_a_kids_job_refused_by_a_200_content_filter_answer_costs_one_chat_call(
    services: Services, fake: FakeAzureAI
) -> None:
    fake.fail_next("chat", "content_filter-200")
    request = upload_request(services, scene_png(320, 240), n=2, filename="meadow.png")
    manifest = run_job(services, request.model_copy(update={"profile": "kids"})).output

    assert (manifest["status"], manifest["code"]) == ("refused", "service_refused")
    assert fake.count("chat") == 1 and fake.count("images.edit") == 0
    # Charged by Azure, so counted: one compose attempt, none for images.
    assert manifest["paid_calls"]["compose"]["attempted"] == 1
    assert manifest["paid_calls"]["image"] == {"attempted": 0, "delivered": 0, "rejected": 0}


def test_a_500_storm_on_images_costs_two_attempts_per_variation_and_says_what_to_do(
    services: Services, fake: FakeAzureAI
) -> None:
    fake.fail_next("images.edit", "500", times=100)
    request = upload_request(services, scene_png(320, 240), n=3, filename="meadow.png")
    manifest = run_job(services, request).output

    assert fake.count("images.edit") == 6  # 3 variations x 2 attempts
    assert manifest["paid_calls"]["image"] == {"attempted": 6, "delivered": 0, "rejected": 0}
    assert (manifest["status"], manifest["code"]) == ("failed", "service_unavailable")
    assert manifest["message"].startswith("3 of 3 failed: The image model failed (HTTP 500")
    assert manifest["message"].endswith("Try again later.")
    prices = services.settings.prices_usd
    expected = prices["caption"] + prices["compose"] + 6 * prices["image"]
    assert manifest["estimated_cost_usd"] == pytest.approx(expected)


def _after_429s(services: Services, fake: FakeAzureAI, times: int) -> dict[str, Any]:
    """The manifest of a one-image job whose first `times` image calls are answered 429 (retry after 0.3 s)."""
    fake.fail_next("images.edit", "429-ms", retry_after_ms=300, times=times)
    return run_job(services, upload_request(services, scene_png(320, 240), n=1, filename="meadow.png")).output


def test_429s_are_not_billed_so_a_request_turned_away_twice_still_gets_its_image(
    services: Services, fake: FakeAzureAI
) -> None:
    """Two 429s used none of the spend budget: the third attempt is made, and only it is priced."""
    manifest = _after_429s(services, fake, 2)

    assert manifest["status"] == "succeeded", manifest["message"]
    assert [c.status for c in fake.calls if c.route == "images.edit"] == [429, 429, 200]
    assert manifest["paid_calls"]["image"] == {"attempted": 3, "delivered": 1, "rejected": 2}
    prices = services.settings.prices_usd
    assert manifest["estimated_cost_usd"] == pytest.approx(prices["caption"] + prices["compose"] + prices["image"])


def test_a_429_storm_ends_the_job_after_three_unbilled_attempts_and_costs_no_image(
    services: Services, fake: FakeAzureAI
) -> None:
    manifest = _after_429s(services, fake, 100)

    assert (manifest["status"], manifest["code"]) == ("failed", "quota_exhausted")
    assert manifest["paid_calls"]["image"] == {"attempted": 3, "delivered": 0, "rejected": 3}
    assert "rate limit (HTTP 429). Try again in a few minutes" in manifest["message"]
    prices = services.settings.prices_usd
    assert manifest["estimated_cost_usd"] == pytest.approx(prices["caption"] + prices["compose"])


def test_the_spend_budget_counts_billed_attempts_and_429s_apart(services: Services) -> None:
    """Two billed attempts, or three a 429 turned away, whichever comes first; the message says which."""
    storage, job = services.storage, "budget-" + "0" * 32
    for _ in range(budget.MAX_REJECTED):
        record = budget.take(storage, job, "image-0")
        assert record is not None
        budget.settle(storage, job, "image-0", record, code="quota_exhausted", message="At its rate limit.")
    assert budget.take(storage, job, "image-0") is None
    spent = budget.spent_message(budget.read(storage, job, "image-0"), "image model")
    assert spent == (
        "At its rate limit. The image model turned Varia away at its rate limit 3 times (HTTP 429, not billed), "
        "its limit for one call, and Varia stopped there."
    )
    # A 429, then two failures that may have been billed: the budget is spent after the third attempt.
    for code in ("quota_exhausted", "service_unavailable", "service_unavailable"):
        record = budget.take(storage, job, "caption")
        assert record is not None
        budget.settle(storage, job, "caption", record, code=code, message="HTTP 500.")
    assert budget.take(storage, job, "caption") is None
    assert budget.spent_message(budget.read(storage, job, "caption"), "caption").endswith(
        "Varia made 3 attempts, 1 of them turned away by a 429 and not billed, its limit for a paid call, "
        "and stopped there."
    )


def test_a_partial_job_succeeds_with_each_missing_image_explained(services: Services, fake: FakeAzureAI) -> None:
    fake.fail_next("images.edit", "moderation_blocked")  # the first image call only
    request = upload_request(services, scene_png(320, 240), n=2, filename="meadow.png")
    manifest = run_job(services, request).output

    assert (manifest["status"], manifest["partial"], manifest["code"]) == ("succeeded", True, "service_refused")
    assert sorted((v["status"], v["code"]) for v in manifest["variations"]) == [
        ("refused", "service_refused"),
        ("succeeded", None),
    ]
    assert manifest["message"].startswith("1 of 2 variations delivered; 1 of 2 were refused:")
