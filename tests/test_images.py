"""Image handling: magic bytes, bombs, EXIF orientation and GPS, modes, and the services' size limits."""

from __future__ import annotations

import io
import warnings

import pytest
from PIL import Image, ImageChops, ImageStat
from PIL.JpegImagePlugin import JpegImageFile

from shared.adapters.providers.azure_openai import image_size
from shared.core.images import (
    MAX_SIDE,
    InvalidImage,
    check_header,
    content_type_of,
    normalize,
    open_rgb,
    sniff,
    upload_file,
)
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
    assert not has_gps(result.data)
    with Image.open(io.BytesIO(result.data)) as img:
        assert not img.getexif() and "exif" not in img.info and "icc_profile" not in img.info
        assert isinstance(img, JpegImageFile) and [marker for marker, _ in img.applist] == ["APP0"]  # JFIF only


def test_large_images_are_fitted_to_the_model_limit_and_hashed() -> None:
    big = _encode(scene(3000, 2000), "JPEG", quality=85)
    result = normalize(big)
    # JPEGs decode at a reduced scale that keeps at least 3/4 of the target: 3000 px -> 1500 px
    assert 0.75 * MAX_SIDE <= max(result.width, result.height) <= MAX_SIDE and result.original_format == "JPEG"
    assert abs(result.width / result.height - 1.5) < 0.01
    png = normalize(_encode(scene(3000, 2000), "PNG"))
    assert (png.width, png.height) == (MAX_SIDE, 1024)  # other formats are resized to the exact limit
    assert len(result.sha256) == 64 and result.data.startswith(b"\xff\xd8\xff")
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
        with Image.open(io.BytesIO(result.data)) as img:
            # The palette's transparent index is not used by any pixel: opaque, so an RGB JPEG like the rest.
            assert (img.mode, img.format) == ("RGB", "JPEG")
    with Image.open(io.BytesIO(normalize(sixteen).data)) as grey:
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

    banded = open_rgb(normalize(out.getvalue()).data)

    # The whole image fitted at once, seen on white (as open_rgb shows the stored one).
    rgba = Image.open(io.BytesIO(out.getvalue())).convert("RGBA")
    whole = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    whole.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    assert abs(banded.width - whole.width) <= 1 and abs(banded.height - whole.height) <= 1
    diff = ImageChops.difference(banded.resize(whole.size), whole).convert("L")
    assert sum(diff.getdata()) / (whole.width * whole.height) < 3  # mean difference per pixel, of 255


# --- The prepared image's format: JPEG for what is opaque, PNG only to keep transparency ----------


def _photo(width: int = 2100, height: int = 1400) -> Image.Image:
    """A photo-like source: smooth colour fields with fine detail and sensor grain (nothing compresses it away)."""
    grain = Image.merge("RGB", [Image.effect_noise((width, height), 40) for _ in range(3)])
    return Image.blend(scene(width, height), grain, 0.25)


@pytest.mark.parametrize(
    ("fmt", "mode"), [("JPEG", "RGB"), ("PNG", "RGB"), ("PNG", "RGBA"), ("WEBP", "RGB"), ("TIFF", "RGB")]
)
def test_a_photo_is_prepared_as_a_compact_jpeg(fmt: str, mode: str) -> None:
    """A photo (an opaque RGBA PNG too: alpha 255 everywhere) is stored as JPEG, never as PNG again."""
    source = _photo().convert(mode)
    result = normalize(_encode(source, fmt))
    assert sniff(result.data) == "JPEG" and result.content_type == "image/jpeg"
    with Image.open(io.BytesIO(result.data)) as img:
        assert (img.mode, img.size) == ("RGB", (result.width, result.height))
        assert 0.75 * MAX_SIDE <= img.width <= MAX_SIDE and abs(img.width / img.height - 1.5) < 0.01
        png = _encode(img, "PNG")
        # Without chroma subsampling (4:4:4): every band at full resolution, colour edges kept.
        assert isinstance(img, JpegImageFile) and [tuple(layer[1:3]) for layer in img.layer] == [(1, 1)] * 3
    assert len(result.data) < len(png) / 3  # what storing it as PNG would cost: several times the bytes
    fitted = source.convert("RGB").resize((result.width, result.height), Image.Resampling.LANCZOS)
    assert _difference(open_rgb(result.data), fitted) < 6  # mean per pixel and band, of 255: faithful


def _difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_a_transparent_image_keeps_its_alpha_as_png(mode: str) -> None:
    """A cut-out (transparent background) stays transparent: flattened, the model would take the white as scene."""
    cutout = Image.new("RGBA", (2400, 1600), (200, 30, 30, 0))  # an erased red background, still in the file
    cutout.paste(scene(1200, 800).convert("RGBA"), (600, 400))
    source = cutout.convert(mode) if mode != "P" else cutout.convert("P", palette=Image.Palette.ADAPTIVE)
    options: dict[str, object] = {}
    if mode == "P":  # a palette image keeps transparency as one palette index (here, the empty corner's)
        options["transparency"] = source.getpixel((0, 0))
    result = normalize(_encode(source, "PNG", **options))
    assert sniff(result.data) == "PNG" and result.content_type == "image/png"
    with Image.open(io.BytesIO(result.data)) as img:
        assert img.mode == "RGBA" and img.size == (MAX_SIDE, 1024)
        alpha = img.getchannel("A")
        assert alpha.getpixel((10, 10)) == 0  # the empty background: still transparent
        assert alpha.getpixel((MAX_SIDE // 2, 512)) == 255  # the subject: opaque
    assert "transparency" not in Image.open(io.BytesIO(result.data)).info  # real alpha, no colour key
    # What the cut-out hid is gone: its transparent pixels carry no colour for a service to find.
    with Image.open(io.BytesIO(result.data)) as img:
        hidden = [img.getpixel((x, y)) for x in range(0, MAX_SIDE, 97) for y in (0, 1023)]
    assert set(hidden) == {(0, 0, 0, 0)}
    # Read on white (the offline providers, and anything that cannot take alpha), the background is white.
    assert open_rgb(result.data).getpixel((10, 10)) == (255, 255, 255)


def test_what_a_cut_out_hides_is_not_sent() -> None:
    """Under alpha 0 many files keep the erased background: the prepared PNG keeps no colour there."""
    cutout = Image.new("RGBA", (600, 400), (200, 30, 30, 0))  # not resized: the pixels are kept as they are
    cutout.paste(scene(300, 200).convert("RGBA"), (150, 100))
    with Image.open(io.BytesIO(normalize(_encode(cutout, "PNG")).data)) as img:
        assert img.size == (600, 400)
        assert img.getpixel((5, 5)) == (0, 0, 0, 0) and img.getpixel((300, 200)) == cutout.getpixel((300, 200))


def test_a_transparent_gif_keeps_its_alpha() -> None:
    gif = scene(400, 300).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    gif.paste(15, (0, 0, 100, 300))  # a transparent strip on the left, in palette index 15
    result = normalize(_encode(gif, "GIF", transparency=15))
    with Image.open(io.BytesIO(result.data)) as img:
        assert (img.format, img.mode) == ("PNG", "RGBA")
        assert img.getchannel("A").getpixel((5, 5)) == 0 and img.getchannel("A").getpixel((300, 150)) == 255


def test_the_prepared_image_is_read_by_every_step_that_takes_it() -> None:
    """The image sizing (GPT-image sizes), the SDK upload and the offline providers all read a prepared JPEG."""
    photo = normalize(_encode(_photo(), "JPEG", quality=92))
    assert check_header(photo.data) == ("JPEG", photo.width, photo.height)
    assert image_size(photo.data, landscape=False, model="gpt-image-1.5") == "1536x1024"
    assert upload_file(photo.data) == ("source.jpg", photo.data, "image/jpeg")
    cutout = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    transparent = normalize(_encode(cutout, "PNG"))
    assert upload_file(transparent.data) == ("source.png", transparent.data, "image/png")
    assert content_type_of(transparent.data) == "image/png"
    with pytest.raises(ValueError, match="JPEG or PNG"):
        content_type_of(_encode(scene(), "WEBP"))  # GPT-image edits do not take WebP: never sent as one
