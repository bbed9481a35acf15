"""What Varia knows about the Azure OpenAI models it supports: image sizes, image timeouts, reasoning.

Pure rules, no SDK: the providers (shared/adapters/providers/azure_openai.py) apply them to each
request, shared/config.py validates settings with them, and the README's "Models" section
documents them. The deployment name is the user's choice, so the rules go by the model the
deployment runs (AZURE_OPENAI_IMAGE_MODEL, AZURE_OPENAI_CHAT_MODEL, written by the Bicep from the
model it deploys).
"""

from __future__ import annotations

import math
from typing import Literal

ImageModel = Literal["gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini", "gpt-image-1"]
IMAGE_MODELS: tuple[str, ...] = ("gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini", "gpt-image-1")

# --- Sizes -------------------------------------------------------------------------------------

# gpt-image-1, -1-mini and -1.5 accept these three sizes only.
FIXED_LANDSCAPE = "1536x1024"
FIXED_PORTRAIT = "1024x1536"
FIXED_SQUARE = "1024x1024"

# gpt-image-2 accepts any WxH with both edges multiples of 16, long/short <= 3, and
# 655,360 <= W*H <= 8,294,400 (Foundry model card, version 2026-04-21). Varia asks for about
# 1.33 MP whatever the shape: 1536x864 is the classroom's 16:9 and every other shape gets the
# same pixel budget, so price and latency do not depend on the source's shape. 1536x864 has
# fewer pixels than gpt-image-1's landscape 1536x1024 (84%): a real 16:9 costs no more than the
# 3:2 did. 1280x720 would be cheaper but below 1024x1024's detail; 1824x1024 is not exactly
# 16:9 and costs 1.4x as much.
GPT_IMAGE_2_EDGE_STEP = 16
GPT_IMAGE_2_MAX_RATIO = 3.0
GPT_IMAGE_2_MIN_PIXELS = 655_360
GPT_IMAGE_2_MAX_PIXELS = 8_294_400
GPT_IMAGE_2_MAX_EDGE = 3840  # 3840x2160 is the largest size the API reference allows
GPT_IMAGE_2_PIXELS = 1536 * 864
CLASSROOM_RATIO = 16 / 9


def takes_input_fidelity(model: str) -> bool:
    """Whether image edits on this model take `input_fidelity`: gpt-image-1, 1.5 and later (gpt-image-2 too),
    not the -mini models (the Images API reference)."""
    name = model.lower()
    return name.startswith("gpt-image-") and "mini" not in name


def flexible_sizes(model: str) -> bool:
    """True when the model takes any size within its rules (gpt-image-2), not a fixed list."""
    return model.startswith("gpt-image-2")


def _round_edge(value: float) -> int:
    return max(GPT_IMAGE_2_EDGE_STEP, round(value / GPT_IMAGE_2_EDGE_STEP) * GPT_IMAGE_2_EDGE_STEP)


def valid_gpt_image_2_size(width: int, height: int) -> bool:
    """Whether gpt-image-2 accepts WxH."""
    return (
        width % GPT_IMAGE_2_EDGE_STEP == 0
        and height % GPT_IMAGE_2_EDGE_STEP == 0
        and max(width, height) <= GPT_IMAGE_2_MAX_RATIO * min(width, height)
        and GPT_IMAGE_2_MIN_PIXELS <= width * height <= GPT_IMAGE_2_MAX_PIXELS
        and max(width, height) <= GPT_IMAGE_2_MAX_EDGE
    )


def parse_size(size: str | None) -> tuple[int, int] | None:
    """ "1536x864" -> (1536, 864); anything else (None, "auto", "big", "0x5") -> None."""
    width, sep, height = (size or "").strip().lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit()) or int(width) <= 0 or int(height) <= 0:
        return None
    return int(width), int(height)


def custom_size(model: str, size: str | None) -> str | None:
    """`size` as `model` takes it, or None when it does not (the caller then uses the aspect rule).

    gpt-image-2 takes any WxH within its rules; the gpt-image-1 family takes its three sizes only.
    """
    parsed = parse_size(size)
    if parsed is None:
        return None
    text = f"{parsed[0]}x{parsed[1]}"
    if flexible_sizes(model):
        return text if valid_gpt_image_2_size(*parsed) else None
    return text if text in (FIXED_SQUARE, FIXED_LANDSCAPE, FIXED_PORTRAIT) else None


def image_size(
    model: str, width: int, height: int, landscape: bool, *, aspect: str = "auto", size: str | None = None
) -> str:
    """The size to ask `model` for, given the source's width and height.

    In order: `size` (a WxH) where the model takes it (see custom_size; one it does not take
    falls through to the rest, never an error); then `aspect` "square", "landscape" or
    "portrait"; with aspect "auto", `landscape` (the kids profile) asks for the classroom's 16:9
    where the model allows it (gpt-image-2: 1536x864), else the widest size it offers
    (1536x1024), and otherwise the source's shape. gpt-image-2 gets the same pixel budget
    (GPT_IMAGE_2_PIXELS) whatever the shape: 1152x1152, 1536x864, 864x1536.
    """
    chosen = custom_size(model, size)
    if chosen is not None:
        return chosen
    if aspect == "square":
        width, height, landscape = 1, 1, False
    elif aspect == "landscape":
        width, height, landscape = 1, 1, True
    elif aspect == "portrait":
        if not flexible_sizes(model):
            return FIXED_PORTRAIT
        return _flexible_size(1 / CLASSROOM_RATIO)
    if not flexible_sizes(model):
        if landscape or width > height * 1.2:
            return FIXED_LANDSCAPE
        if height > width * 1.2:
            return FIXED_PORTRAIT
        return FIXED_SQUARE
    return _flexible_size(CLASSROOM_RATIO if landscape else width / max(1, height))


def _flexible_size(ratio: float) -> str:
    """gpt-image-2's size at `ratio` (width / height, clamped to 1:3..3:1) with GPT_IMAGE_2_PIXELS pixels."""
    stretch = min(GPT_IMAGE_2_MAX_RATIO, max(ratio, 1 / ratio))  # long edge / short edge, 1 to 3
    short = _round_edge(math.sqrt(GPT_IMAGE_2_PIXELS / stretch))
    long = _round_edge(short * stretch)
    while long > GPT_IMAGE_2_MAX_RATIO * short:  # rounding can push an extreme shape past 3:1
        long -= GPT_IMAGE_2_EDGE_STEP
    out_width, out_height = (long, short) if ratio >= 1 else (short, long)
    return f"{out_width}x{out_height}"


# --- Timeouts ----------------------------------------------------------------------------------

# Seconds one image call may take at 1024x1024, by quality. Microsoft gives about 15 s (low) to
# over 120 s (high, large sizes) for gpt-image-2; the gpt-image-1 family is faster at high.
# "auto" lets the service pick, so it is given high's time.
_BASE_TIMEOUT_S: dict[str, dict[str, float]] = {
    "gpt-image-2": {"low": 60, "medium": 120, "high": 240, "auto": 240},
    "gpt-image-1": {"low": 45, "medium": 90, "high": 180, "auto": 180},
}
REFERENCE_PIXELS = 1024 * 1024
# How long an image call takes, before Varia has measured it (shared/adapters/quota.py measures
# every call): about 15-30 s at low quality, a minute at medium, over two at high and large sizes.
TYPICAL_IMAGE_LATENCY_S: dict[str, float] = {"low": 25.0, "medium": 60.0, "high": 120.0, "auto": 120.0}
# Image calls run in a Durable activity, never in an HTTP response (cut at about 230 s). The
# activity is bounded by host.json's functionTimeout (10 minutes); two attempts of the longest
# call still fit in it, with room for the quota gate's wait and the upload of the result.
IMAGE_TIMEOUT_MAX_S = 280.0
IMAGE_TIMEOUT_MIN_S = 30.0


def image_timeout_s(model: str, quality: str, size: str) -> float:
    """Timeout of one image call: longer for higher quality and for more pixels, within an activity's time."""
    family = "gpt-image-2" if flexible_sizes(model) else "gpt-image-1"
    base = _BASE_TIMEOUT_S[family].get(quality, _BASE_TIMEOUT_S[family]["high"])
    width, _, height = size.partition("x")
    pixels = int(width) * int(height) if width.isdigit() and height.isdigit() else REFERENCE_PIXELS
    scaled = base * max(1.0, pixels / REFERENCE_PIXELS)
    return float(min(IMAGE_TIMEOUT_MAX_S, max(IMAGE_TIMEOUT_MIN_S, round(scaled))))


# --- Chat: reasoning models --------------------------------------------------------------------

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]
# What "auto" sends to a reasoning model: every reasoning family accepts "low" (gpt-5 adds
# "minimal", gpt-5.1 and later "none"; o-series have neither). Composing a prompt needs little thought.
AUTO_REASONING_EFFORT = "low"

# Output tokens the answer itself needs, and what a reasoning model may spend thinking first.
# A reasoning model given only the answer's budget spends it on reasoning and returns empty
# content with finish_reason "length".
CAPTION_ANSWER_TOKENS = 120
COMPOSE_ANSWER_TOKENS = 1_000
REASONING_HEADROOM_TOKENS = 4_000


def is_reasoning_model(model: str) -> bool:
    """gpt-5 family (not its -chat variants) and o-series models reason before they answer."""
    name = model.strip().lower()
    if "-chat" in name:
        return False
    return name.startswith(("gpt-5", "o1", "o3", "o4"))


def known_non_reasoning_model(model: str) -> bool:
    """Models known to refuse `reasoning_effort` (an explicit setting for these is a mistake)."""
    name = model.strip().lower()
    return name.startswith(("gpt-4", "gpt-35", "gpt-3.5")) or "-chat" in name


def reasoning_effort(model: str, setting: str) -> str | None:
    """The `reasoning_effort` to send, or None to send none. `setting`: auto, off or an effort."""
    if setting == "off":
        return None
    if setting == "auto":
        return AUTO_REASONING_EFFORT if is_reasoning_model(model) else None
    return setting


def completion_tokens(answer_tokens: int, model: str, effort: str | None) -> int:
    """`max_completion_tokens`: the answer's budget, plus room to reason when the model reasons.

    A reasoning model sent no effort (VARIA_CHAT_REASONING_EFFORT=off) still reasons, at its
    default effort; only "none" turns reasoning off.
    """
    reasons = effort != "none" and (effort is not None or is_reasoning_model(model))
    return answer_tokens + (REASONING_HEADROOM_TOKENS if reasons else 0)
