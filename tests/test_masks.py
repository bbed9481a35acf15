"""Region edits: a user's mask scaled to the picture, and the kept pixels laid back over a soft-masked result."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat

from shared.core.images import InvalidImage
from shared.core.masks import FEATHER_PX, composite_back, keep_weights, prepare_mask
from tests.images import scene_png

SIZE = (640, 420)


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _left_half_mask(size: tuple[int, int]) -> bytes:
    """Transparent (change) on the left half, opaque (keep) on the right."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    return _png(mask)


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0-255."""
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def _soft_masked(source: Image.Image, size: tuple[int, int]) -> Image.Image:
    """What GPT-image returns for a masked edit: redrawn inside the mask, changed outside it too, at its own size."""
    inside = ImageOps.invert(source.convert("RGB"))
    outside = Image.blend(source.convert("RGB"), ImageOps.posterize(inside, 2), 0.35)
    out = outside.copy()
    out.paste(inside.crop((0, 0, size[0] // 2, size[1])), (0, 0))
    return out.resize((1536, 1024))  # the model's own size, not the source's


def test_a_left_half_mask_keeps_the_right_half_and_changes_the_left() -> None:
    source = Image.open(io.BytesIO(scene_png(*SIZE))).convert("RGB")
    prepared = prepare_mask(_left_half_mask((64, 42)), SIZE)  # any size: scaled to the picture
    generated = _soft_masked(source, SIZE)
    half = SIZE[0] // 2
    right = (half, 0, SIZE[0], SIZE[1])
    assert _mean_difference(generated.resize(SIZE).crop(right), source.crop(right)) > 20  # the model changed it

    delivered = composite_back(source, generated, prepared.png)

    assert delivered.size == SIZE
    assert _mean_difference(delivered.crop(right), source.crop(right)) <= 2
    assert delivered.crop(right).tobytes() == source.crop(right).tobytes()  # kept exactly, not nearly
    left_inner = (0, 0, half - 3 * FEATHER_PX, SIZE[1])
    assert _mean_difference(delivered.crop(left_inner), source.crop(left_inner)) > 40
    assert prepared.share == pytest.approx(0.5, abs=0.01)


def test_the_seam_is_feathered_inside_the_edited_area_only() -> None:
    prepared = prepare_mask(_left_half_mask(SIZE), SIZE)
    weights = keep_weights(prepared.png, SIZE)
    row = list(weights.crop((0, 200, SIZE[0], 201)).tobytes())  # one row of L: a byte per pixel
    half = SIZE[0] // 2
    assert all(w == 255 for w in row[half:])  # the kept half: all source
    assert all(w == 0 for w in row[: half - 3 * FEATHER_PX])  # deep in the edit: all generated
    ramp = row[half - 3 * FEATHER_PX : half]
    assert ramp == sorted(ramp) and 0 < ramp[-1] < 255  # rising toward the kept side


def test_the_prepared_mask_is_what_the_image_service_takes() -> None:
    """Same size as the image, RGBA, alpha 0 where the picture may change, under 4 MB."""
    prepared = prepare_mask(_left_half_mask((100, 50)), SIZE)
    mask = Image.open(io.BytesIO(prepared.png))
    assert (mask.format, mask.mode, mask.size) == ("PNG", "RGBA", SIZE)
    alpha = mask.getchannel("A")
    assert alpha.getpixel((10, 10)) == 0 and alpha.getpixel((SIZE[0] - 10, 10)) == 255
    assert {v for v, count in enumerate(alpha.histogram()) if count} == {0, 255}
    assert len(prepared.png) < 4 * 1024 * 1024


def test_a_palette_mask_with_a_transparent_colour_works_too() -> None:
    mask = Image.new("P", (80, 40), 1)
    mask.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    mask.paste(0, (0, 0, 20, 40))  # index 0, transparent: the left quarter
    out = io.BytesIO()
    mask.save(out, format="PNG", transparency=0)
    assert prepare_mask(out.getvalue(), SIZE).share == pytest.approx(0.25, abs=0.01)


@pytest.mark.parametrize(
    ("mask", "says"),
    [
        (lambda: Image.new("RGB", (64, 64), "white"), "no transparency"),
        (lambda: Image.new("RGBA", (64, 64), (0, 0, 0, 255)), "no transparent pixels"),
        (lambda: Image.new("LA", (8, 8), (0, 255)), "no transparent pixels"),
    ],
    ids=["no-alpha", "all-opaque", "all-opaque-la"],
)
def test_a_mask_that_marks_nothing_is_refused_with_what_to_do(mask: object, says: str) -> None:
    with pytest.raises(InvalidImage, match=says) as info:
        prepare_mask(_png(mask()), SIZE)  # type: ignore[operator]
    assert "transparent" in str(info.value)


def test_a_mask_that_is_not_a_png_is_refused() -> None:
    out = io.BytesIO()
    Image.new("RGB", (64, 64)).save(out, format="JPEG")
    with pytest.raises(InvalidImage, match="The mask is a JPEG image; send a PNG"):
        prepare_mask(out.getvalue(), SIZE)
    with pytest.raises(InvalidImage, match="not an image"):
        prepare_mask(b"hello", SIZE)
    with pytest.raises(InvalidImage, match="under 4 MB"):
        prepare_mask(b"\x89PNG\r\n\x1a\n" + b"\0" * (4 * 1024 * 1024), SIZE)
