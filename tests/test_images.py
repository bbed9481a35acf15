"""Image handling: magic bytes, bombs, EXIF orientation and GPS, modes, and the services' size limits."""

from __future__ import annotations

import io
import warnings

import pytest
from PIL import Image, ImageChops, ImageStat

from shared.core.images import MAX_SIDE, InvalidImage, check_header, normalize, sniff
from tests.images import has_gps, jpeg_with_exif, scene, scene_png


def _encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()


def test_type_comes_from_magic_bytes_not_names() -> None:
    assert sniff(scene_png()) == "PNG"
    assert sniff(_encode(scene(), "JPEG")) == "JPEG"
    assert sniff(_encode(scene(), "WEBP")) == "WEBP"
    assert sniff(b"GIF89a....") == "GIF"
    assert sniff(b"hello") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"just words, no pixels", "text file"),
        (b"%PDF-1.7\n...", "PDF"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "SVG"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "HEIC"),
    ],
)
def test_non_images_are_named_for_what_they_are(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        normalize(data)


def test_exif_orientation_is_applied_and_gps_is_stripped() -> None:
    photo = jpeg_with_exif(240, 160, orientation=6, gps=True)
    assert has_gps(photo)
    result = normalize(photo)
    assert (result.width, result.height) == (160, 240)  # rotated upright
    assert not has_gps(result.png)
    with Image.open(io.BytesIO(result.png)) as img:
        assert not img.getexif() and "exif" not in img.info


def test_large_images_are_fitted_to_the_model_limit_and_hashed() -> None:
    big = _encode(scene(3000, 2000), "JPEG", quality=85)
    result = normalize(big)
    # JPEGs decode at a reduced scale that keeps at least 3/4 of the target: 3000 px -> 1500 px
    assert 0.75 * MAX_SIDE <= max(result.width, result.height) <= MAX_SIDE and result.original_format == "JPEG"
    assert abs(result.width / result.height - 1.5) < 0.01
    png = normalize(_encode(scene(3000, 2000), "PNG"))
    assert (png.width, png.height) == (MAX_SIDE, 1024)  # other formats are resized to the exact limit
    assert len(result.sha256) == 64 and result.png.startswith(b"\x89PNG")
    assert normalize(big).sha256 == result.sha256  # deterministic: the caption cache relies on it


def test_decompression_bomb_between_one_and_two_times_the_limit_is_refused() -> None:
    # A tiny PNG that claims ~1.5x Pillow's default pixel limit: Pillow alone would only warn.
    width = height = int((Image.MAX_IMAGE_PIXELS or 89_478_485) ** 0.5 * 1.22)
    bomb = _encode(Image.new("1", (width, height)), "PNG", optimize=True)
    assert len(bomb) < 1_000_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidImage, match="side|megapixels|too large"):
            normalize(bomb)


def test_tiny_and_thin_images_are_refused_with_the_limit() -> None:
    with pytest.raises(InvalidImage, match="larger than 50 px"):
        check_header(_encode(scene(40, 40), "PNG"))
    with pytest.raises(InvalidImage, match="too thin"):
        normalize(_encode(scene(6000, 120), "PNG"))


def test_truncated_files_are_reported_as_damaged() -> None:
    for fmt in ("PNG", "JPEG"):
        data = _encode(scene(400, 300), fmt)
        with pytest.raises(InvalidImage, match="damaged|truncated"):
            normalize(data[: len(data) // 2])


def test_unusual_modes_become_rgb() -> None:
    cmyk = _encode(scene().convert("CMYK"), "JPEG")
    deep = Image.new("I;16", (200, 100))
    deep.putdata([x * 65535 // 199 for _y in range(100) for x in range(200)])
    sixteen = _encode(deep, "PNG")
    palette = scene().convert("P")
    palette.info["transparency"] = 0
    transparent = _encode(palette, "PNG", transparency=0)
    frames = [scene(), scene().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    for data in (cmyk, sixteen, transparent, gif.getvalue()):
        result = normalize(data)
        with Image.open(io.BytesIO(result.png)) as img:
            assert img.mode == "RGB"
    with Image.open(io.BytesIO(normalize(sixteen).png)) as grey:
        low, high = ImageStat.Stat(grey.convert("L")).extrema[0]
        assert low < 10 and high > 240  # 16-bit scaled to 8, not clipped to white or black


def test_a_webp_over_the_decode_budget_is_refused_from_its_header() -> None:
    """libwebp decodes into its own buffer, then Pillow copies it: 30 MP of WebP would take ~360 MB."""
    big = Image.new("RGB", (6000, 5000), (30, 120, 200))
    out = io.BytesIO()
    big.save(out, format="WEBP", lossless=True)
    with pytest.raises(InvalidImage) as refused:
        check_header(out.getvalue())
    assert str(refused.value) == (
        "The WEBP image is 30 megapixels; Varia reads WEBP images of up to 24 megapixels. "
        "Save it as JPEG or PNG, or make it smaller."
    )


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "RGB"])
def test_the_banded_reduction_looks_like_a_whole_image_fit(mode: str) -> None:
    """normalize reduces large sources band by band; the result matches fitting the whole image at once."""
    base = Image.linear_gradient("L").resize((3300, 2200))
    source = Image.merge("RGBA", (base, base.transpose(Image.Transpose.FLIP_LEFT_RIGHT), base, base)).convert(mode)
    out = io.BytesIO()
    source.save(out, format="PNG")

    banded = Image.open(io.BytesIO(normalize(out.getvalue()).png)).convert("RGB")

    # The whole image fitted at once, as stored: transparent parts on white, as normalize promises.
    rgba = Image.open(io.BytesIO(out.getvalue())).convert("RGBA")
    whole = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    whole.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    assert abs(banded.width - whole.width) <= 1 and abs(banded.height - whole.height) <= 1
    diff = ImageChops.difference(banded.resize(whole.size), whole).convert("L")
    assert sum(diff.getdata()) / (whole.width * whole.height) < 3  # mean difference per pixel, of 255
