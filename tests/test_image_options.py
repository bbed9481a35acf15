"""GPT-image rendering options: quality, input fidelity, shape, format, background and live previews.

The size rule (shared/ai_models.py) is tested directly; then GptImageGenerator sends the options
through the real openai SDK to the fake server (tests/fake_ai.py), which logs each parameter as it
arrived and answers a streamed request with server-sent events as the Images API does.
"""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import openai
import pytest
from PIL import Image, ImageOps

from shared import ai_models
from shared.adapters.providers.azure_openai import GptImageGenerator, make_client
from shared.adapters.providers.base import ImageOptions, ProviderError
from shared.core.images import sniff
from tests.fake_ai import Call, FakeAzureAI
from tests.images import scene, scene_png

# --- the size rule -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "aspect", "size"),
    [
        ("gpt-image-1.5", "square", "1024x1024"),
        ("gpt-image-1.5", "landscape", "1536x1024"),
        ("gpt-image-1.5", "portrait", "1024x1536"),
        ("gpt-image-1-mini", "portrait", "1024x1536"),
        ("gpt-image-2", "square", "1152x1152"),
        ("gpt-image-2", "landscape", "1536x864"),
        ("gpt-image-2", "portrait", "864x1536"),
    ],
)
@pytest.mark.parametrize(("source", "landscape"), [((400, 300), False), ((300, 400), True), ((200, 200), False)])
def test_an_aspect_picks_the_size_whatever_the_source(
    model: str, aspect: str, size: str, source: tuple[int, int], landscape: bool
) -> None:
    assert ai_models.image_size(model, *source, landscape, aspect=aspect) == size


def test_gpt_image_2_shapes_keep_the_pixel_budget() -> None:
    for aspect in ("square", "landscape", "portrait"):
        width, height = map(int, ai_models.image_size("gpt-image-2", 400, 300, False, aspect=aspect).split("x"))
        assert ai_models.valid_gpt_image_2_size(width, height)
        assert abs(width * height / ai_models.GPT_IMAGE_2_PIXELS - 1) < 0.01, aspect


def test_auto_keeps_the_existing_rule() -> None:
    for model in ai_models.IMAGE_MODELS:
        for source, landscape in (((400, 300), False), ((300, 400), False), ((300, 400), True)):
            assert ai_models.image_size(model, *source, landscape, aspect="auto") == ai_models.image_size(
                model, *source, landscape
            )


@pytest.mark.parametrize(
    ("model", "size", "aspect", "expected"),
    [
        ("gpt-image-2", "2048x1152", "auto", "2048x1152"),  # taken as is
        ("gpt-image-2", "1024x1536", "square", "1024x1536"),  # a size wins over the aspect
        ("gpt-image-2", "1000x1000", "square", "1152x1152"),  # not multiples of 16: the aspect rule
        ("gpt-image-2", "4096x2048", "landscape", "1536x864"),  # too many pixels
        ("gpt-image-2", "3856x2144", "landscape", "1536x864"),  # past the 3840 px edge
        ("gpt-image-2", "2320x768", "portrait", "864x1536"),  # wider than 3:1
        ("gpt-image-2", "big", "portrait", "864x1536"),
        ("gpt-image-1.5", "1024x1536", "landscape", "1024x1536"),  # one of its three sizes
        ("gpt-image-1.5", "2048x1152", "square", "1024x1024"),  # not one of them
        ("gpt-image-1-mini", "1536x864", "auto", "1536x1024"),  # a 4:3 source
    ],
)
def test_a_custom_size_is_used_only_where_the_model_takes_it(model: str, size: str, aspect: str, expected: str) -> None:
    assert ai_models.image_size(model, 400, 300, False, aspect=aspect, size=size) == expected


def test_gpt_image_2_sizes_stop_at_3840_px() -> None:
    assert ai_models.valid_gpt_image_2_size(3840, 2160)
    assert not ai_models.valid_gpt_image_2_size(3856, 2144)  # within the pixel budget, past the edge


# --- the requests, through the real SDK --------------------------------------------------------


def generator(fake: FakeAzureAI, model: str = "gpt-image-1.5", quality: str = "medium") -> GptImageGenerator:
    client = make_client(fake.url, "test-key", 10.0, max_retries=0)
    return GptImageGenerator({"main": (client, model)}, quality, model)


def run(
    fake: FakeAzureAI,
    options: ImageOptions | None = None,
    *,
    model: str = "gpt-image-1.5",
    quality: str = "medium",
    mode: str = "edit",
    n: int = 1,
    references: list[tuple[bytes, str]] | None = None,
) -> list[bytes]:
    return generator(fake, model, quality).generate_batch(
        scene_png(400, 300),
        "a watercolour",
        request="as a watercolour",
        mode=mode,  # type: ignore[arg-type]
        landscape=False,
        indices=list(range(n)),
        deployment="main",
        references=references or [],
        options=options,
    )


def image_call(fake: FakeAzureAI) -> Call:
    (call,) = [c for c in fake.calls if c.route.startswith("images.")]
    return call


def params_of(call: Call) -> dict[str, Any]:
    return call.form if call.route == "images.edit" else dict(call.json or {})


@pytest.mark.parametrize("mode", ["edit", "generate"])
def test_options_reach_the_wire_and_jpeg_comes_back_as_jpeg(fake: FakeAzureAI, mode: str) -> None:
    options = ImageOptions(quality="high", aspect="portrait", output_format="jpeg", output_compression=40)
    (image,) = run(fake, options, quality="low", mode=mode)
    call = image_call(fake)
    assert (call.quality, call.size, call.output_format, call.output_compression) == ("high", "1024x1536", "jpeg", "40")
    assert call.background is None and not call.stream and call.partial_images is None
    # The timeout follows the options' quality, not the generator's default.
    timeout = ai_models.image_timeout_s("gpt-image-1.5", "high", "1024x1536")
    assert float(call.headers["x-stainless-read-timeout"]) == pytest.approx(timeout, abs=1)
    assert sniff(image) == "JPEG"


def test_without_options_the_defaults_are_sent_and_nothing_more(fake: FakeAzureAI) -> None:
    (image,) = run(fake, None, quality="low")
    call = image_call(fake)
    assert (call.quality, call.size) == ("low", "1536x1024")
    for name in ("input_fidelity", "output_format", "output_compression", "background", "stream", "partial_images"):
        assert name not in call.form, name
    assert sniff(image) == "PNG"


def test_png_sends_no_format_and_ignores_a_compression(fake: FakeAzureAI) -> None:
    run(fake, ImageOptions(output_format="png", output_compression=50))
    call = image_call(fake)
    assert "output_format" not in call.form and "output_compression" not in call.form


@pytest.mark.parametrize(
    ("model", "fidelity", "references", "sent"),
    [
        ("gpt-image-1.5", "low", [], "low"),
        ("gpt-image-1.5", "high", [], "high"),
        ("gpt-image-2", "low", [], "low"),
        ("gpt-image-1.5", "low", ["subject"], "high"),  # a subject reference keeps its details
        ("gpt-image-1.5", None, ["style"], None),
        ("gpt-image-1.5", None, ["subject"], "high"),
        ("gpt-image-1-mini", "high", [], None),  # -mini takes none
        ("gpt-image-1-mini", None, ["subject"], None),
    ],
)
def test_input_fidelity_goes_with_edits_where_the_model_takes_it(
    fake: FakeAzureAI, model: str, fidelity: str | None, references: list[str], sent: str | None
) -> None:
    refs = [(scene_png(120, 80), role) for role in references]
    run(fake, ImageOptions(input_fidelity=fidelity), model=model, references=refs)
    assert image_call(fake).input_fidelity == sent


def test_input_fidelity_never_goes_with_a_generation(fake: FakeAzureAI) -> None:
    run(fake, ImageOptions(input_fidelity="high"), mode="generate")
    assert "input_fidelity" not in (image_call(fake).json or {})


@pytest.mark.parametrize(
    ("fmt", "background", "sent"),
    [
        ("png", "transparent", "transparent"),
        ("png", "opaque", "opaque"),
        ("png", "auto", None),
        ("jpeg", "opaque", "opaque"),
        ("jpeg", "transparent", None),  # the API refuses a transparent JPEG: not sent
    ],
)
def test_background_is_sent_only_in_a_combination_the_api_takes(
    fake: FakeAzureAI, fmt: str, background: str, sent: str | None
) -> None:
    (image,) = run(fake, ImageOptions(output_format=fmt, background=background))
    assert image_call(fake).background == sent
    assert sniff(image) == fmt.upper()
    if sent == "transparent":
        with Image.open(io.BytesIO(image)) as picture:
            assert picture.mode == "RGBA" and picture.getchannel("A").getextrema()[0] == 0


@pytest.mark.parametrize(
    ("size", "sent"),
    [("2048x1152", "2048x1152"), ("1000x1000", "1152x1152"), ("4096x2048", "1152x1152")],
)
def test_a_custom_size_reaches_gpt_image_2_or_falls_back_to_the_aspect(fake: FakeAzureAI, size: str, sent: str) -> None:
    run(fake, ImageOptions(aspect="square", size=size), model="gpt-image-2")
    assert image_call(fake).size == sent


# --- live previews -------------------------------------------------------------------------------


class Previews:
    """An on_partial that records what arrived and when."""

    def __init__(self, fail: bool = False) -> None:
        self.got: list[tuple[int, int, bytes, float]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, k: int, index: int, data: bytes) -> None:
        with self.lock:
            self.got.append((k, index, data, time.monotonic()))
        if self.fail:
            raise OSError("the preview could not be stored")


def expected_edit(fake: FakeAzureAI) -> Image.Image:
    """What the fake draws for an unmasked edit of scene(400, 300): the source inverted, at the answered size."""
    assert fake.image_size_override is not None
    return ImageOps.invert(scene(400, 300)).resize(fake.image_size_override)


def pixels(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.convert("RGB")


def test_partial_images_arrive_before_the_completed_image_which_is_the_result(fake: FakeAzureAI) -> None:
    fake.latency["images.edit"] = 0.9  # spread over 2 partials and the completed image: about 0.3 s apart
    previews = Previews()
    (image,) = run(fake, ImageOptions(partial_images=2, on_partial=previews))
    returned = time.monotonic()
    call = image_call(fake)
    assert call.stream and call.partial_images == "2"
    assert call.events == ["image_edit.partial_image", "image_edit.partial_image", "image_edit.completed"]
    assert [(k, index) for k, index, _, _ in previews.got] == [(0, 0), (0, 1)]
    # Each preview was handed on while the image was still being drawn, well before the call returned.
    assert previews.got[0][3] < previews.got[1][3] < returned - 0.15
    assert pixels(image).tobytes() == expected_edit(fake).tobytes()  # the completed image, not a preview
    for _, _, data, _ in previews.got:
        assert sniff(data) == "PNG" and pixels(data).tobytes() != pixels(image).tobytes()


def test_previews_of_a_generation_in_jpeg(fake: FakeAzureAI) -> None:
    previews = Previews()
    (image,) = run(fake, ImageOptions(partial_images=3, on_partial=previews, output_format="jpeg"), mode="generate")
    call = image_call(fake)
    assert call.events == ["image_generation.partial_image"] * 3 + ["image_generation.completed"]
    assert [index for _, index, _, _ in previews.got] == [0, 1, 2]
    assert sniff(image) == "JPEG" and all(sniff(data) == "JPEG" for _, _, data, _ in previews.got)


def test_a_batch_of_several_images_is_one_ordinary_request(fake: FakeAzureAI) -> None:
    previews = Previews()
    images = run(fake, ImageOptions(partial_images=2, on_partial=previews), n=2)
    call = image_call(fake)
    assert len(images) == 2 and not call.stream and "partial_images" not in call.form
    assert previews.got == []


def test_no_stream_without_an_on_partial_or_without_partials(fake: FakeAzureAI) -> None:
    run(fake, ImageOptions(partial_images=2))
    run(fake, ImageOptions(partial_images=0, on_partial=Previews()))
    assert [c.stream for c in fake.calls] == [False, False]


def test_a_preview_that_cannot_be_handed_on_does_not_cost_the_image(fake: FakeAzureAI) -> None:
    previews = Previews(fail=True)
    (image,) = run(fake, ImageOptions(partial_images=2, on_partial=previews))
    assert len(previews.got) == 2
    assert pixels(image).tobytes() == expected_edit(fake).tobytes()


def outcome(fake: FakeAzureAI, options: ImageOptions, mode: str = "edit") -> tuple[str, str, bool]:
    with pytest.raises(ProviderError) as caught:
        run(fake, options, mode=mode)
    error = caught.value
    return type(error).__name__, error.code, error.billed


@pytest.mark.parametrize(
    "error",
    ["moderation_blocked", "content_policy_violation", "contentFilter", "minor", "500", "503", "429", "401",
     "permission", "403-blocked", "404", "reset"],
)  # fmt: skip
@pytest.mark.parametrize("shape", ["nested", "flat"])
def test_an_error_inside_a_stream_maps_as_the_same_error_outside_one(fake: FakeAzureAI, error: str, shape: str) -> None:
    # The same failure, first as the answer to an ordinary request, then after a preview inside a stream.
    fake.fail_next("images.edit", "mid-stream", error=error, shape=shape)
    plain = outcome(fake, ImageOptions())
    previews = Previews()
    fake.fail_next("images.edit", "mid-stream", error=error, shape=shape, after=1)
    streamed = outcome(fake, ImageOptions(partial_images=2, on_partial=previews))
    assert streamed == plain
    assert [index for _, index, _, _ in previews.got] == [0]
    ended = fake.calls[-1]
    assert ended.stream and ended.events == ["image_edit.partial_image", "reset" if error == "reset" else "error"]


def test_a_stream_cut_before_any_preview_maps_the_same(fake: FakeAzureAI) -> None:
    fake.fail_next("images.generate", "mid-stream", error="moderation_blocked", after=0)
    previews = Previews()
    name, code, _ = outcome(fake, ImageOptions(partial_images=1, on_partial=previews), mode="generate")
    assert (name, code, previews.got) == ("ContentRefused", "service_refused", [])


def test_an_error_before_the_stream_starts_is_the_ordinary_answer(fake: FakeAzureAI) -> None:
    fake.fail_next("images.edit", "429", retry_after=3)
    with pytest.raises(ProviderError) as caught:
        run(fake, ImageOptions(partial_images=2, on_partial=Previews()))
    assert caught.value.code == "quota_exhausted"
    assert getattr(caught.value, "retry_after", None) == 3


def test_the_fake_refuses_what_the_images_api_refuses(fake: FakeAzureAI) -> None:
    client = openai.OpenAI(base_url=fake.openai_base_url, api_key="test-key", max_retries=0, timeout=5)
    source = ("source.png", scene_png(120, 80), "image/png")
    bad: list[tuple[str, dict[str, Any]]] = [
        ("partial_images", {"stream": True, "partial_images": 4}),
        ("background", {"background": "transparent", "output_format": "jpeg"}),
        ("output_compression", {"output_compression": 50}),  # PNG has no compression level
        ("output_compression", {"output_compression": 101, "output_format": "jpeg"}),
        ("output_format", {"output_format": "webp"}),
        ("input_fidelity", {"input_fidelity": "high", "model": "gpt-image-1-mini"}),
    ]
    for param, extra in bad:
        args: dict[str, Any] = {"model": "gpt-image-1.5", "prompt": "a watercolour", **extra}
        with pytest.raises(openai.BadRequestError) as caught:
            client.images.edit(image=source, **args)
        body = caught.value.body
        assert isinstance(body, dict) and body.get("param") == param, (param, body)
        assert body.get("code") == "invalid_value"


def test_previews_do_not_stretch_a_call_past_its_timeout(fake: FakeAzureAI, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each event comes within the timeout of the one before, but the second preview comes after the call's time.
    monkeypatch.setattr(ai_models, "image_timeout_s", lambda *args: 0.8)
    fake.latency["images.edit"] = 1.5  # events at about 0.5, 1.0 and 1.5 s
    previews = Previews()
    name, code, _ = outcome(fake, ImageOptions(partial_images=2, on_partial=previews))
    assert (name, code) == ("TransientServiceError", "service_timeout")
    assert len(previews.got) >= 1
