"""Region edits: a mask says which part of the picture may change, and every other pixel is kept.

A mask is a PNG whose transparent pixels mark the area to change, as GPT-image edits take it. A
user's mask can be any size: `prepare_mask` scales it to the prepared image and stores it in the
form the image service asks for (same size as the image, RGBA, transparent = edit). GPT-image
masks are soft: the model redraws the whole picture, and pixels outside the mask change too. So
Varia keeps them itself: `composite_back` lays the prepared source over the generated picture
everywhere the mask keeps, with a narrow feathered edge inside the edited area, so the delivered
image has the prepared source's size and is identical to it outside the mask.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageFilter

from shared.core.images import InvalidImage, sniff

# The feathered edge, in pixels of the prepared image, laid inside the edited area: wide enough to
# hide the seam between kept and redrawn pixels, narrow enough to leave the edit its region.
FEATHER_PX = 6
# A pixel counts as "to change" when its alpha is below this (masks painted with a soft brush have
# semi-transparent rims: half-transparent is the line).
EDIT_BELOW = 128
MAX_MASK_BYTES = 4 * 1024 * 1024  # GPT-image edits take a mask PNG under 4 MB
MAX_MASK_PIXELS = 4096 * 4096  # decoded as RGBA: 64 MB at most


@dataclass(frozen=True)
class PreparedMask:
    """The mask at the prepared image's size: `png` is RGBA (alpha 0 = change, 255 = keep)."""

    png: bytes
    share: float  # the share of the picture it marks for change, 0 < share <= 1


_DAMAGED = "The mask PNG is damaged and cannot be read; export it again, or paint a new one."


def _mask_alpha(data: bytes) -> Image.Image:
    """The mask's alpha channel (L), or InvalidImage saying what is wrong with the mask."""
    if len(data) > MAX_MASK_BYTES:
        raise InvalidImage(
            f"The mask is {len(data) / 1024 / 1024:.1f} MB; send one under 4 MB (a PNG where transparent "
            "pixels mark the area to change)."
        )
    fmt = sniff(data)
    if fmt != "PNG":
        what = f"a {fmt} image" if fmt else "not an image"
        raise InvalidImage(f"The mask is {what}; send a PNG where transparent pixels mark the area to change.")
    try:
        img = Image.open(io.BytesIO(data), formats=["PNG"])
    except Exception:  # noqa: BLE001 - Pillow raises many types for broken files
        raise InvalidImage(_DAMAGED) from None
    with img:
        width, height = img.size
        if width * height > MAX_MASK_PIXELS:
            raise InvalidImage(
                f"The mask is {width}x{height} pixels; send one of at most 4096x4096 (it is scaled to the picture "
                "anyway)."
            )
        if "A" not in img.getbands() and "transparency" not in img.info:
            raise InvalidImage(
                "The mask has no transparency, so it marks nothing to change; paint the area to change "
                "transparent (alpha 0) and keep the rest opaque."
            )
        try:
            return img.convert("RGBA").getchannel("A")
        except Exception:  # noqa: BLE001 - a header that opens, pixels that do not decode
            raise InvalidImage(_DAMAGED) from None


def check_mask(data: bytes) -> None:
    """Refuse a mask that cannot work whatever the picture (InvalidImage): before anything is stored."""
    if not any(_mask_alpha(data).histogram()[:EDIT_BELOW]):
        raise InvalidImage(
            "The mask has no transparent pixels, so it marks nothing to change; paint the area to change transparent."
        )


def prepare_mask(data: bytes, size: tuple[int, int]) -> PreparedMask:
    """Check a user's mask and scale it to `size` (the prepared image's); InvalidImage says what is wrong."""
    alpha = _mask_alpha(data)
    scaled = alpha.resize(size, Image.Resampling.BILINEAR) if alpha.size != size else alpha
    keep = scaled.point(lambda a: 0 if a < EDIT_BELOW else 255)
    histogram = keep.histogram()
    edit = histogram[0]
    if edit == 0:
        raise InvalidImage(
            "The mask has no transparent pixels at this picture's size, so it marks nothing to change; "
            "paint the area to change transparent."
        )
    rgba = Image.new("RGBA", size, (0, 0, 0, 255))
    rgba.putalpha(keep)
    out = io.BytesIO()
    rgba.save(out, format="PNG", optimize=False, compress_level=6)
    return PreparedMask(png=out.getvalue(), share=round(edit / (size[0] * size[1]), 4))


def keep_weights(mask_png: bytes, size: tuple[int, int], feather_px: int = FEATHER_PX) -> Image.Image:
    """How much of the source each pixel keeps (L, 255 = all of it): the mask's kept area, plus a
    ramp `feather_px` wide into the edited area. The kept area itself stays 255 exactly."""
    with Image.open(io.BytesIO(mask_png)) as img:
        keep = img.convert("RGBA").getchannel("A")
    if keep.size != size:
        keep = keep.resize(size, Image.Resampling.NEAREST)
    if feather_px <= 0:
        return keep
    ramp = keep.filter(ImageFilter.GaussianBlur(feather_px / 2))
    return ImageChops.lighter(keep, ramp)  # never below the mask: kept pixels stay kept


def composite_back(source: Image.Image, generated: Image.Image, mask_png: bytes) -> Image.Image:
    """The generated picture with the source laid back wherever the mask keeps it.

    `generated` is scaled to the source's size first (the models draw at their own sizes), so
    the result always has the prepared source's dimensions.
    """
    base = source.convert("RGB")
    drawn = generated.convert("RGB")
    if drawn.size != base.size:
        drawn = drawn.resize(base.size, Image.Resampling.LANCZOS)
    return Image.composite(base, drawn, keep_weights(mask_png, base.size))
