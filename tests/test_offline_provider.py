"""The offline providers: a stylizer that really paints the asked style, a caption, a template composer."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageStat

from shared.adapters.providers.offline import OfflineCaptioner, OfflineComposer, OfflineStylizer, split_request
from shared.adapters.providers.offline_styles import STYLES, detect_style, stylize
from shared.core.images import encode_png, normalize, open_rgb
from shared.core.safety import PROFILES
from tests.images import scene


def _difference(a: Image.Image, b: Image.Image) -> float:
    return max(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean)


@pytest.fixture(scope="module")
def source() -> Image.Image:
    return scene(256, 192)


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_style_changes_the_image_and_keeps_its_size(source: Image.Image, style: str) -> None:
    out = stylize(source, style, 0, style)
    assert out.mode == "RGB" and out.size == source.size
    assert _difference(out, source) > 8, style
    assert stylize(source, style, 0, style).tobytes() == out.tobytes()  # deterministic
    assert stylize(source, style, 1, style).tobytes() != out.tobytes()  # variations differ


def test_at_least_ten_styles() -> None:
    assert len(STYLES) >= 10


def test_styles_look_like_their_names(source: Image.Image) -> None:
    sepia = ImageStat.Stat(stylize(source, "sepia", 0, "")).mean
    assert sepia[0] >= sepia[1] >= sepia[2]
    grey = stylize(source, "black-and-white", 0, "")
    r, g, b = grey.split()
    assert max(ImageStat.Stat(ImageChops.difference(r, g)).mean + ImageStat.Stat(ImageChops.difference(g, b)).mean) < 1
    pixels = stylize(source, "pixel-art", 0, "")
    assert len(pixels.getcolors(maxcolors=100_000) or []) < 64  # a small palette
    neon = stylize(source, "neon", 0, "")
    assert ImageStat.Stat(neon.convert("L")).mean[0] < ImageStat.Stat(source.convert("L")).mean[0] - 30


@pytest.mark.parametrize(
    ("prompt", "style"),
    [
        ("as a watercolour", "watercolor"),
        ("À L'AQUARELLE", "watercolor"),
        ("como acuarela", "watercolor"),
        ("in pop art style", "pop-art"),
        ("as pixel-art", "pixel-art"),
        ("en noir et blanc", "black-and-white"),
        ("as an old sepia photograph", "sepia"),
        ("put this dog beside the Eiffel Tower", None),
    ],
)
def test_style_detection_in_three_languages(prompt: str, style: str | None) -> None:
    assert detect_style(prompt) == style


def test_requests_it_cannot_paint_get_a_labelled_preview(source: Image.Image) -> None:
    out = stylize(source, None, 0, "put this dog beside the Eiffel Tower")
    band, top = (0, out.height - 16, out.width, out.height), (0, 0, out.width, 16)
    bottom_change = _difference(out.crop(band), source.crop(band))
    top_change = _difference(out.crop(top), source.crop(top))
    assert bottom_change > top_change + 20  # the "Offline preview" band


def test_unknown_style_names_are_an_error(source: Image.Image) -> None:
    with pytest.raises(ValueError, match="watercolor"):
        stylize(source, "cubism", 0, "")


def test_offline_caption_describes_what_it_measures() -> None:
    found = OfflineCaptioner().caption(encode_png(scene(300, 200)))
    assert found.text.startswith("a ") and "landscape" in found.text and "tones" in found.text
    assert "landscape" in found.tags


def test_offline_composer_splits_the_request_and_keeps_the_safety_check() -> None:
    composer = OfflineComposer()
    allowed = composer.compose("a dog on a lawn", "as a watercolour, add a red kite", PROFILES["kids"])
    assert allowed.verdict == "allow" and allowed.subtasks.style == "watercolour"
    assert allowed.subtasks.add == ["red kite"] and "colourful" in allowed.output_prompt
    refused = composer.compose("a dog on a lawn", "add a knife", PROFILES["kids"])
    assert refused.verdict == "refuse" and "knife" in refused.reason
    assert split_request("without the car, beside the Eiffel Tower").remove == ["car"]


def test_the_stylizer_follows_the_request_not_the_caption(source: Image.Image) -> None:
    composed = "a black and white photo of a dog, modified as asked: as a watercolour."
    out = OfflineStylizer().generate(
        encode_png(source), composed, request="as a watercolour", mode="edit", landscape=False, index=0
    )
    expected = stylize(source, "watercolor", 0, "as a watercolour")
    assert Image.open(io.BytesIO(out)).convert("RGB").tobytes() == expected.tobytes()


def test_the_offline_providers_read_the_prepared_image_jpeg_or_transparent_png(source: Image.Image) -> None:
    """What prepare stores (JPEG; PNG with alpha for a cut-out) is what the offline caption and stylizer read."""
    photo = normalize(encode_png(scene(600, 400)))
    assert photo.content_type == "image/jpeg"
    assert "landscape" in OfflineCaptioner().caption(photo.data).tags
    out = OfflineStylizer().generate(photo.data, "", request="as sepia", mode="edit", landscape=False, index=0)
    expected = stylize(open_rgb(photo.data), "sepia", 0, "as sepia")
    assert Image.open(io.BytesIO(out)).convert("RGB").tobytes() == expected.tobytes()

    cutout = Image.new("RGBA", (600, 400), (0, 0, 0, 0))  # transparent black: read as black, it would caption "dark"
    cutout.paste(scene(200, 150).convert("RGBA"), (200, 125))
    transparent = normalize(encode_png(cutout))
    assert transparent.content_type == "image/png"
    assert "bright" in OfflineCaptioner().caption(transparent.data).tags  # the background read as white
    drawn = OfflineStylizer().generate(transparent.data, "", request="as sepia", mode="edit", landscape=False, index=0)
    corner = Image.open(io.BytesIO(drawn)).convert("L").getpixel((5, 5))
    assert isinstance(corner, int) and corner > 150  # painted on white, not on the transparent pixels' black
