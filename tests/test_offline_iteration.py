"""The offline painter honours ImageOptions: vary (subtle or strong), refine, remix, a new scene for
mode "generate", the output's shape and format, live previews, and it says what it cannot do."""

from __future__ import annotations

import io
import itertools
import statistics

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageStat

from shared.adapters.providers.base import ImageOptions
from shared.adapters.providers.offline import OfflineStylizer, jpeg_quality, offline_limits
from shared.adapters.providers.offline_styles import STYLES, stylize
from shared.core.images import encode_png
from shared.core.models import Mode

PREVIEW_REQUEST = "put this dog beside the Eiffel Tower"  # no style the offline painter knows


def _picture(width: int = 256, height: int = 192) -> Image.Image:
    """A picture with a layout of its own: a red gradient across, blue down, shapes and a fence."""
    red = Image.linear_gradient("L").rotate(90).resize((width, height))
    blue = Image.linear_gradient("L").resize((width, height))
    img = Image.merge("RGB", (red, Image.new("L", (width, height), 140), blue))
    draw = ImageDraw.Draw(img)
    draw.rectangle([width // 8, height // 2, width * 3 // 8, height * 7 // 8], fill=(200, 40, 40))
    draw.ellipse([width * 3 // 5, height // 10, width * 4 // 5, height * 4 // 10], fill=(250, 220, 60))
    draw.rectangle([width // 2, height * 2 // 3, width - 10, height - 10], fill=(30, 140, 60))
    for x in range(width // 2, width - 10, 6):
        draw.line([(x, height * 2 // 3), (x, height - 10)], fill=(240, 240, 230), width=2)
    return img


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return _picture()


def _draw(
    source: Image.Image | bytes,
    request: str,
    options: ImageOptions | None = None,
    *,
    indices: tuple[int, ...] = (0,),
    mode: Mode = "edit",
) -> list[bytes]:
    data = source if isinstance(source, bytes) else encode_png(source)
    return OfflineStylizer().generate_batch(
        data,
        "composed prompt",
        request=request,
        mode=mode,
        landscape=False,
        indices=list(indices),
        deployment="offline",
        options=options,
    )


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img


def _rgb(data: bytes) -> Image.Image:
    return _open(data).convert("RGB")


def _change(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute pixel difference (0-255), averaged over the channels."""
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def _correlation(a: Image.Image, b: Image.Image) -> float:
    """Pearson correlation of the two pictures' brightness, compared at 64 x 48."""
    x, y = (list(img.convert("L").resize((64, 48), Image.Resampling.BOX).tobytes()) for img in (a, b))
    return statistics.correlation(x, y)


def _detail(img: Image.Image) -> float:
    """Mean edge strength: how much fine detail and contrast at edges a picture has."""
    return float(
        ImageStat.Stat(
            img.convert("L").filter(ImageFilter.FIND_EDGES).crop((1, 1, img.width - 1, img.height - 1))
        ).mean[0]
    )


def _parent(picture: Image.Image, request: str) -> bytes:
    """A variation of a first job: what a vary, refine or remix job starts from."""
    return _draw(picture, request)[0]


def _request(style: str | None) -> str:
    return f"as {STYLES[style].keywords[0]}" if style else PREVIEW_REQUEST


# --------------------------------------------------------------------------- vary


@pytest.mark.parametrize("style", [None, *sorted(STYLES)])
def test_a_subtle_variation_changes_the_parent_much_less_than_a_strong_one(
    picture: Image.Image, style: str | None
) -> None:
    request = _request(style)
    parent_png = _parent(picture, request)
    parent = _rgb(parent_png)
    subtle = _draw(parent_png, request, ImageOptions(action="vary", strength="subtle"), indices=(0, 1))
    strong = _draw(parent_png, request, ImageOptions(action="vary", strength="strong"), indices=(0, 1))
    for little, much in zip(subtle, strong, strict=True):
        small, large = _change(_rgb(little), parent), _change(_rgb(much), parent)
        assert 0.5 < small <= 0.6 * large, (style, small, large)
        assert large > 25, (style, large)  # a strong variation is a clearly different picture
        assert _rgb(little).size == parent.size == _rgb(much).size


@pytest.mark.parametrize("strength", ["subtle", "strong"])
@pytest.mark.parametrize("style", [None, "watercolor", "black-and-white", "pixel-art", "pop-art"])
def test_variations_with_different_indices_differ(picture: Image.Image, style: str | None, strength: str) -> None:
    request = _request(style)
    parent_png = _parent(picture, request)
    drawn = _draw(parent_png, request, ImageOptions(action="vary", strength=strength), indices=(0, 1, 2))
    for a, b in itertools.combinations(drawn, 2):
        assert _change(_rgb(a), _rgb(b)) > 1.0, (style, strength)
    # The same job again paints the same pictures.
    assert _draw(parent_png, request, ImageOptions(action="vary", strength=strength), indices=(0, 1, 2)) == drawn


def test_a_variation_without_a_known_style_stays_labelled_as_a_preview(picture: Image.Image) -> None:
    parent_png = _parent(picture, PREVIEW_REQUEST)
    for strength in ("subtle", "strong"):
        (varied,) = _draw(parent_png, PREVIEW_REQUEST, ImageOptions(action="vary", strength=strength))
        out = _rgb(varied).convert("L")
        band = out.crop((0, out.height * 19 // 20, out.width, out.height))
        assert ImageStat.Stat(band).mean[0] < 60 and ImageStat.Stat(band).extrema[0][1] > 200  # white text on dark


def test_vary_without_a_strength_is_subtle(picture: Image.Image) -> None:
    parent_png = _parent(picture, "as sepia")
    assert _draw(parent_png, "as sepia", ImageOptions(action="vary")) == _draw(
        parent_png, "as sepia", ImageOptions(action="vary", strength="subtle")
    )


# --------------------------------------------------------------------------- refine and remix


@pytest.mark.parametrize("style", [None, "watercolor", "pixel-art", "sepia"])
def test_refine_re_renders_with_more_detail_and_changes_little(picture: Image.Image, style: str | None) -> None:
    request = _request(style)
    parent_png = _parent(picture, request)
    parent = _rgb(parent_png)
    (refined,) = _draw(parent_png, request, ImageOptions(action="refine", quality="high"))
    assert refined != parent_png
    assert 0.3 < _change(_rgb(refined), parent) < 12, style
    assert _rgb(refined).size == parent.size


def test_refine_sharpens_a_soft_picture(picture: Image.Image) -> None:
    soft = picture.filter(ImageFilter.GaussianBlur(2))
    (refined,) = _draw(soft, "as a watercolour", ImageOptions(action="refine", quality="high"))
    assert _detail(_rgb(refined)) > _detail(soft) * 1.25
    (lighter,) = _draw(soft, "as a watercolour", ImageOptions(action="refine", quality="low"))
    assert _detail(soft) < _detail(_rgb(lighter)) < _detail(_rgb(refined))


def test_remix_paints_the_new_request_on_the_chosen_result(picture: Image.Image) -> None:
    parent_png = _parent(picture, "as a watercolour")
    parent = _rgb(parent_png)
    remixed = _draw(parent_png, "as an old sepia photograph", ImageOptions(action="remix"), indices=(0, 1))
    for index, data in enumerate(remixed):
        assert _rgb(data).tobytes() == stylize(parent, "sepia", index, "").tobytes()  # a new job on that picture
        assert _change(_rgb(data), parent) > 20
        red, green, blue = ImageStat.Stat(_rgb(data)).mean
        assert red >= green >= blue  # sepia, not the watercolour it started from


def test_a_new_job_without_options_is_unchanged(picture: Image.Image) -> None:
    """Action "new" with no options draws what the offline painter always drew (manifests' hashes depend on it)."""
    for request, style in (("as a watercolour", "watercolor"), (PREVIEW_REQUEST, None)):
        drawn = _draw(picture, request, indices=(0, 1))
        assert drawn == [encode_png(stylize(picture, style, i, request)) for i in (0, 1)]
        assert _draw(picture, request, ImageOptions(), indices=(0, 1)) == drawn


# --------------------------------------------------------------------------- mode "generate": a new scene


@pytest.mark.parametrize("request_text", ["as a watercolour", "as pixel art", "in black and white", PREVIEW_REQUEST])
def test_draw_a_new_scene_paints_something_else_than_keep_my_picture(picture: Image.Image, request_text: str) -> None:
    for index in (0, 1):
        (kept,) = _draw(picture, request_text, indices=(index,), mode="edit")
        (new,) = _draw(picture, request_text, indices=(index,), mode="generate")
        assert _change(_rgb(kept), _rgb(new)) > 30, request_text
        # The edit keeps the picture's layout; the new scene does not.
        assert _correlation(_rgb(kept), picture) > 0.45, request_text
        assert abs(_correlation(_rgb(new), picture)) < 0.45, request_text
        assert _rgb(new).size == picture.size


def test_a_new_scene_is_painted_in_the_pictures_colours() -> None:
    reddish = Image.new("RGB", (200, 150), (200, 60, 40))
    ImageDraw.Draw(reddish).ellipse([40, 30, 120, 110], fill=(120, 20, 10))
    bluish = Image.new("RGB", (200, 150), (40, 70, 200))
    ImageDraw.Draw(bluish).ellipse([40, 30, 120, 110], fill=(10, 30, 120))
    (from_red,) = _draw(reddish, "a castle", mode="generate")
    (from_blue,) = _draw(bluish, "a castle", mode="generate")
    red_mean, blue_mean = ImageStat.Stat(_rgb(from_red)).mean, ImageStat.Stat(_rgb(from_blue)).mean
    assert red_mean[0] > red_mean[2] + 40 and blue_mean[2] > blue_mean[0] + 40
    # More than one flat colour: a composition (sky, sun, hills), not a fill.
    assert len(_rgb(from_red).getcolors(maxcolors=100_000) or []) > 20


# --------------------------------------------------------------------------- output controls


def test_jpeg_output_at_the_asked_compression(picture: Image.Image) -> None:
    (png,) = _draw(picture, "as a watercolour")
    assert png.startswith(b"\x89PNG")
    sizes = {}
    for compression in (0, 50, 100):
        (jpeg,) = _draw(picture, "as a watercolour", ImageOptions(output_format="jpeg", output_compression=compression))
        assert jpeg.startswith(b"\xff\xd8") and _open(jpeg).format == "JPEG"
        sizes[compression] = len(jpeg)
    assert sizes[0] < sizes[50] < sizes[100]  # 100 is the least compressed
    (default,) = _draw(picture, "as a watercolour", ImageOptions(output_format="jpeg"))
    assert sizes[50] < len(default) < sizes[100]
    assert (jpeg_quality(None), jpeg_quality(0), jpeg_quality(100)) == (85, 10, 95)


@pytest.mark.parametrize(
    ("aspect", "size", "expected"),
    [
        ("auto", None, (640, 480)),
        ("square", None, (480, 480)),
        ("landscape", None, (640, 427)),
        ("portrait", None, (320, 480)),
        ("auto", "300x200", (300, 200)),
        ("square", "256x256", (256, 256)),
        ("auto", "1024x1536", (320, 480)),  # larger than the picture: its shape, never scaled up
    ],
)
def test_aspect_and_size_crop_the_result(aspect: str, size: str | None, expected: tuple[int, int]) -> None:
    source = _picture(640, 480)
    (out,) = _draw(source, "as sepia", ImageOptions(aspect=aspect, size=size))
    assert _rgb(out).size == expected
    (varied,) = _draw(source, "as sepia", ImageOptions(action="vary", aspect=aspect, size=size))
    assert _rgb(varied).size == expected


def test_a_square_crop_keeps_the_centre(picture: Image.Image) -> None:
    (out,) = _draw(picture, "as sepia", ImageOptions(aspect="square"))
    left = (picture.width - picture.height) // 2
    centre = picture.crop((left, 0, left + picture.height, picture.height))
    assert _rgb(out).tobytes() == stylize(centre, "sepia", 0, "").tobytes()


def test_a_transparent_background_stays_opaque_and_says_so(picture: Image.Image) -> None:
    options = ImageOptions(background="transparent")
    (out,) = _draw(picture, "as a watercolour", options)
    assert _open(out).mode == "RGB"  # no alpha channel: the offline painter cannot cut out a subject
    message = offline_limits("as a watercolour", "edit", options)
    assert message is not None and "opaque" in message


# --------------------------------------------------------------------------- live previews


def test_partial_images_hand_coarse_previews_before_the_result(picture: Image.Image) -> None:
    calls: list[tuple[int, int, bytes]] = []
    options = ImageOptions(partial_images=2, on_partial=lambda k, n, data: calls.append((k, n, data)))
    final = _draw(picture, "as a watercolour", options, indices=(3, 5))
    assert [(k, n) for k, n, _ in calls] == [(0, 0), (0, 1), (1, 0), (1, 1)]  # position in the batch, number
    for k, _n, data in calls:
        preview, result = _rgb(data), _rgb(final[k])
        assert data.startswith(b"\x89PNG") and preview.size == result.size
        assert _detail(preview) < 0.5 * _detail(result)  # coarse
        assert _change(preview, result) < 25  # ... but the same picture
    assert _detail(_rgb(calls[0][2])) < _detail(_rgb(calls[1][2]))  # each preview finer than the one before
    # The previews do not change the result.
    assert final == _draw(picture, "as a watercolour", indices=(3, 5))


def test_no_previews_unless_asked(picture: Image.Image) -> None:
    calls: list[int] = []
    _draw(picture, "as sepia", ImageOptions(partial_images=0, on_partial=lambda k, n, d: calls.append(k)))
    assert calls == []


# --------------------------------------------------------------------------- what it cannot do


@pytest.mark.parametrize(
    ("request_text", "mode", "options", "expected"),
    [
        ("as a watercolour", "edit", None, None),
        ("as a watercolour", "edit", ImageOptions(action="vary", strength="strong"), None),
        (PREVIEW_REQUEST, "edit", ImageOptions(action="refine", quality="high"), None),
        (PREVIEW_REQUEST, "edit", None, ["no style it knows", "labelled preview", "eiffel tower"]),
        ("as a watercolour, add a red kite", "edit", None, ['cannot add "red kite"']),
        ("in sepia without the car", "edit", None, ['cannot remove "car"']),
        ("as sepia", "edit", ImageOptions(background="transparent"), ["opaque"]),
        ("as a watercolour", "generate", None, ["new scene only as a landscape"]),
        ("a lighthouse at dawn", "generate", None, ["labelled landscape in your picture's colours"]),
        (
            "add a kite",
            "edit",
            ImageOptions(background="transparent"),
            ['cannot add "kite"', "opaque", "labelled preview"],
        ),
    ],
)
def test_offline_limits_says_what_the_painter_cannot_do(
    request_text: str, mode: str, options: ImageOptions | None, expected: list[str] | None
) -> None:
    message = offline_limits(request_text, mode, options)
    if expected is None:
        assert message is None
        return
    assert message is not None and message.startswith("The offline painter ") and message.endswith(".")
    assert ". " not in message and "\n" not in message  # one sentence
    for words in expected:
        assert words in message, message


def test_offline_limits_clips_what_it_quotes() -> None:
    message = offline_limits("add " + "a very long thing " * 20, "edit", None)
    assert message is not None and len(message) < 250
