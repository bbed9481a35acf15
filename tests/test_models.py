"""Current models: sizes, timeouts and reasoning options per model, and the requests that carry them.

The rules (shared/ai_models.py) are tested directly; then the providers built from settings send
them through the real openai SDK to the fake server, which records each request as it arrived.
The per-request timeout travels in the SDK's `x-stainless-read-timeout` header.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date
from typing import Any

import pytest

from shared import ai_models
from shared.adapters.providers import Providers, build_providers
from shared.config import ConfigError, Settings
from shared.core.safety import get_profile
from tests.fake_ai import FakeAzureAI
from tests.images import scene_png
from tests.support import REPO, azure_env

# --- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [(240, 160), (160, 240), (200, 200), (3000, 100)])
def test_kids_profile_gets_a_real_16_9_from_gpt_image_2(source: tuple[int, int]) -> None:
    assert get_profile("kids").landscape
    assert ai_models.image_size("gpt-image-2", *source, landscape=True) == "1536x864"
    assert 1536 / 864 == 16 / 9


@pytest.mark.parametrize("model", ["gpt-image-1-mini", "gpt-image-1.5", "gpt-image-1"])
@pytest.mark.parametrize(
    ("source", "landscape", "size"),
    [
        ((240, 160), False, "1536x1024"),
        ((160, 240), False, "1024x1536"),
        ((200, 190), False, "1024x1024"),
        ((160, 240), True, "1536x1024"),  # the widest these models offer
    ],
)
def test_older_models_keep_their_three_sizes(model: str, source: tuple[int, int], landscape: bool, size: str) -> None:
    assert ai_models.image_size(model, *source, landscape=landscape) == size


@pytest.mark.parametrize(
    ("source", "size"),
    [
        ((200, 200), "1152x1152"),
        ((400, 300), "1328x992"),
        ((900, 1600), "864x1536"),
        ((1600, 900), "1536x864"),
        ((1000, 100), "2016x672"),  # 10:1 is clamped to the 3:1 the model accepts
        ((100, 1000), "672x2016"),
    ],
)
def test_gpt_image_2_follows_the_sources_shape(source: tuple[int, int], size: str) -> None:
    assert ai_models.image_size("gpt-image-2", *source, landscape=False) == size


def test_every_gpt_image_2_size_obeys_the_models_rules_and_the_pixel_budget() -> None:
    for width in range(50, 4000, 37):
        for height in (50, 333, 768, 1000, 2999, 4000):
            size = ai_models.image_size("gpt-image-2", width, height, landscape=False)
            out_w, out_h = map(int, size.split("x"))
            assert ai_models.valid_gpt_image_2_size(out_w, out_h), (width, height, size)
            # About the same pixels whatever the shape, so price and latency do not depend on it.
            assert abs(out_w * out_h / ai_models.GPT_IMAGE_2_PIXELS - 1) < 0.05, (width, height, size)
            wanted = min(3.0, max(1 / 3, width / height))
            assert abs(math.log((out_w / out_h) / wanted)) < 0.03, (width, height, size)


@pytest.mark.parametrize(
    ("size", "valid"),
    [("1536x864", True), ("1024x576", False), ("1530x864", False), ("3840x1024", False), ("4096x2048", False)],
)
def test_gpt_image_2_size_rules(size: str, valid: bool) -> None:
    # 1024x576 has too few pixels, 1530 is no multiple of 16, 3840x1024 is wider than 3:1,
    # 4096x2048 has too many pixels.
    assert ai_models.valid_gpt_image_2_size(*map(int, size.split("x"))) is valid


# --- timeouts ----------------------------------------------------------------------------------


def test_image_timeout_follows_quality_and_size() -> None:
    timeout = ai_models.image_timeout_s
    assert timeout("gpt-image-2", "low", "1536x864") == 76
    assert timeout("gpt-image-2", "medium", "1536x864") == 152
    # High quality gpt-image-2 takes over 120 s: it gets more than the old fixed timeout.
    assert timeout("gpt-image-2", "high", "1536x864") == ai_models.IMAGE_TIMEOUT_MAX_S > 120
    assert timeout("gpt-image-2", "auto", "1024x1024") == timeout("gpt-image-2", "high", "1024x1024") == 240
    assert timeout("gpt-image-2", "low", "1024x1024") < timeout("gpt-image-2", "low", "1536x864")
    assert timeout("gpt-image-1-mini", "low", "1536x1024") == 68
    assert timeout("gpt-image-1-mini", "high", "1536x1024") == 270
    assert timeout("gpt-image-1.5", "medium", "1024x1024") == 90


def test_the_longest_image_call_fits_twice_in_an_activity() -> None:
    host = json.loads((REPO / "host.json").read_text())
    hours, minutes, seconds = map(int, host["functionTimeout"].split(":"))
    function_timeout = hours * 3600 + minutes * 60 + seconds
    longest = max(
        ai_models.image_timeout_s(model, quality, size)
        for model in ai_models.IMAGE_MODELS
        for quality in ("low", "medium", "high", "auto")
        for size in ("1024x1024", "1536x1024", "1536x864", "3840x2160")
    )
    assert longest == ai_models.IMAGE_TIMEOUT_MAX_S
    assert 2 * longest < function_timeout


# --- reasoning ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "setting", "effort"),
    [
        ("gpt-5.4-mini", "auto", "low"),
        ("gpt-5-mini", "auto", "low"),
        ("o4-mini", "auto", "low"),
        ("gpt-5-chat", "auto", None),
        ("gpt-4.1-mini", "auto", None),
        ("gpt-4o", "auto", None),
        ("gpt-5.4-mini", "off", None),
        ("gpt-5.4-mini", "minimal", "minimal"),
    ],
)
def test_reasoning_effort_only_for_reasoning_models(model: str, setting: str, effort: str | None) -> None:
    assert ai_models.reasoning_effort(model, setting) == effort


def test_token_budget_leaves_room_to_reason() -> None:
    answer = ai_models.CAPTION_ANSWER_TOKENS
    assert ai_models.completion_tokens(answer, "gpt-4.1-mini", None) == answer
    assert ai_models.completion_tokens(answer, "gpt-5.4-mini", "low") == answer + ai_models.REASONING_HEADROOM_TOKENS
    # Not sending an effort does not stop a reasoning model from reasoning.
    assert ai_models.completion_tokens(answer, "gpt-5.4-mini", None) > answer
    assert ai_models.completion_tokens(answer, "gpt-5.4-mini", "none") == answer


# --- the requests, through the real SDK --------------------------------------------------------


def providers_for(fake: FakeAzureAI, **extra: str) -> Providers:
    return build_providers(Settings.from_env(azure_env(fake, VARIA_CAPTION_PROVIDER="chat", **extra)))


@pytest.mark.parametrize(
    ("model", "quality", "profile", "size", "timeout"),
    [
        ("gpt-image-2", "high", "kids", "1536x864", "280.0"),
        ("gpt-image-2", "low", "general", "1328x992", "75.0"),  # 4:3 source
        ("gpt-image-1-mini", "medium", "kids", "1536x1024", "135.0"),
        ("gpt-image-1-mini", "low", "general", "1536x1024", "68.0"),
    ],
)
@pytest.mark.parametrize("mode", ["edit", "generate"])
def test_image_request_carries_the_size_quality_and_timeout(
    fake: FakeAzureAI, model: str, quality: str, profile: str, size: str, timeout: str, mode: str
) -> None:
    providers = build_providers(
        Settings.from_env(azure_env(fake, AZURE_OPENAI_IMAGE_MODEL=model, VARIA_IMAGE_QUALITY=quality))
    )
    providers.generator.generate_batch(
        scene_png(400, 300),
        "a watercolour",
        request="as a watercolour",
        mode=mode,  # type: ignore[arg-type]
        landscape=get_profile(profile).landscape,
        indices=[0],
        deployment="",
    )
    (call,) = [c for c in fake.calls if c.route.startswith("images.")]
    params: dict[str, Any] = call.form if mode == "edit" else (call.json or {})
    assert call.route == f"images.{mode}"
    assert (params["size"], params["quality"]) == (size, quality)
    assert float(call.headers["x-stainless-read-timeout"]) == pytest.approx(float(timeout), abs=1)


def chat_calls(fake: FakeAzureAI) -> list[dict[str, Any]]:
    return [c.json for c in fake.calls if c.route == "chat" and isinstance(c.json, dict)]


def test_reasoning_model_gets_an_effort_and_room_to_reason(fake: FakeAzureAI) -> None:
    providers = providers_for(fake, AZURE_OPENAI_CHAT_MODEL="gpt-5.4-mini")
    providers.captioner.caption(scene_png())
    providers.composer.compose("a dog", "as a watercolour", get_profile("general"))
    caption, compose = chat_calls(fake)
    headroom = ai_models.REASONING_HEADROOM_TOKENS
    assert caption["reasoning_effort"] == compose["reasoning_effort"] == "low"
    assert caption["max_completion_tokens"] == ai_models.CAPTION_ANSWER_TOKENS + headroom
    assert compose["max_completion_tokens"] == ai_models.COMPOSE_ANSWER_TOKENS + headroom


def test_non_reasoning_model_never_gets_reasoning_effort(fake: FakeAzureAI) -> None:
    providers = providers_for(fake, AZURE_OPENAI_CHAT_MODEL="gpt-4.1-mini")
    providers.captioner.caption(scene_png())
    providers.composer.compose("a dog", "as a watercolour", get_profile("kids"))
    caption, compose = chat_calls(fake)
    assert "reasoning_effort" not in caption and "reasoning_effort" not in compose
    assert caption["max_completion_tokens"] == ai_models.CAPTION_ANSWER_TOKENS
    assert compose["max_completion_tokens"] == ai_models.COMPOSE_ANSWER_TOKENS


def test_reasoning_effort_off_keeps_the_budget(fake: FakeAzureAI) -> None:
    providers = providers_for(fake, AZURE_OPENAI_CHAT_MODEL="gpt-5.4-mini", VARIA_CHAT_REASONING_EFFORT="off")
    providers.composer.compose("a dog", "as a watercolour", get_profile("general"))
    (compose,) = chat_calls(fake)
    assert "reasoning_effort" not in compose
    assert compose["max_completion_tokens"] > ai_models.COMPOSE_ANSWER_TOKENS


# --- the documented defaults -------------------------------------------------------------------

CHECKED_ON = date(2026, 11, 30)


def readme_models() -> dict[str, list[str]]:
    """The README's model tables, by model name: the cells of each row."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Models") : text.index("### Quota")]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\| \*{0,2}`([\w.\-]+)`\*{0,2} \(", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in line.strip("|").split("|")]
    return rows


def test_default_models_need_no_form_and_do_not_retire_within_six_months() -> None:
    settings = Settings.from_env({})
    rows = readme_models()
    assert set(rows) >= {"gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini", "gpt-5.4-mini", "gpt-4.1-mini"}
    six_months_on = date(CHECKED_ON.year + (CHECKED_ON.month + 6 - 1) // 12, (CHECKED_ON.month + 6 - 1) % 12 + 1, 28)
    for model in (settings.image_model, settings.chat_model):
        cells = rows[model]
        assert "default" in cells[0], model
        assert cells[1] == "GA, no form", model
        assert date.fromisoformat(cells[2]) > six_months_on, model
    # The earlier image default fails the rule, which is why it is no longer the default.
    assert "form" in rows["gpt-image-1-mini"][1] and date.fromisoformat(rows["gpt-image-1-mini"][2]) < six_months_on


def test_readme_timeouts_are_the_codes() -> None:
    rows = readme_models()
    for model, size in (("gpt-image-2", "1536x864"), ("gpt-image-1-mini", "1536x1024"), ("gpt-image-1.5", "1536x1024")):
        seconds = " / ".join(f"{ai_models.image_timeout_s(model, q, size):g}" for q in ("low", "medium", "high"))
        assert rows[model][-1] == f"{seconds} s at {size}", model


# --- settings ----------------------------------------------------------------------------------


def test_settings_default_to_the_current_models_and_resolve_the_effort() -> None:
    settings = Settings.from_env({})
    assert (settings.chat_deployment, settings.chat_model, settings.chat_reasoning_effort) == (
        "gpt-5.4-mini",
        "gpt-5.4-mini",
        "low",
    )
    assert (settings.image_deployment, settings.image_model) == ("gpt-image-2", "gpt-image-2")
    assert Settings.from_env({"AZURE_OPENAI_CHAT_MODEL": "gpt-4.1-mini"}).chat_reasoning_effort is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AZURE_OPENAI_IMAGE_MODEL": "dall-e-3"}, "AZURE_OPENAI_IMAGE_MODEL"),
        ({"VARIA_CHAT_REASONING_EFFORT": "extreme"}, "VARIA_CHAT_REASONING_EFFORT"),
        ({"AZURE_OPENAI_CHAT_MODEL": "gpt-4.1-mini", "VARIA_CHAT_REASONING_EFFORT": "low"}, "use auto or off"),
    ],
)
def test_bad_model_settings_name_the_setting_and_the_fix(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)
