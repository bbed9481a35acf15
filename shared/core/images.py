"""Safe image handling: sniff the type, refuse bombs, apply then strip EXIF, normalize for the AI services.

Every image a user gives Varia passes through `normalize` before any service sees it. The
result is a JPEG (an RGBA PNG where the image has transparent parts) whose longest side fits
the image models (1536 px) and whose shortest side meets AI Vision's minimum (50 px), with no
metadata at all: GPS tags never leave.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

# Formats users send (AI Vision takes all of them). We decode any of them and store what every
# service that reads the prepared image accepts: JPEG or PNG (GPT-image edits take PNG or JPEG,
# not WebP; Content Safety takes JPEG or PNG).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

MAX_SIDE = 1536  # the largest side GPT-image models produce; larger sources only cost upload time
MIN_SIDE = 50  # AI Vision refuses images of 50 px or less on a side
MAX_SOURCE_SIDE = 16_000  # AI Vision's limit, and a sane bound for anything a user uploads
MAX_PIXELS = 64_000_000  # decompression-bomb limit: a 64 MP photo is already generous


class InvalidImage(ValueError):
    """The input is not an image Varia can use; the message says why and what to send instead."""


# The prepared image: JPEG at quality 90 without chroma subsampling (4:4:4). On a 1500x1000
# photo it is 0.27-0.66 MB in 12-16 ms where PNG took 1.3-2.1 MB and 0.8-1.1 s (bench/RESULTS.md,
# "The stored format"); against 4:2:0 it keeps colour edges, text and thin coloured lines, the
# details an edit is asked to keep, at 43.7 dB PSNR instead of 38.4, for 0.1 MB more per upload.
JPEG_QUALITY = 90
JPEG_SUBSAMPLING = 0  # Pillow: 0 = 4:4:4, 2 = 4:2:0
# Where the source has transparent pixels, PNG (RGBA) keeps them: a cut-out subject flattened on
# white would tell the image model the white is part of the picture. Level 3: on a 1536x1024
# photo cut-out, 143 ms and 704 KB against 277 ms and 580 KB at Pillow's default 6.
PNG_COMPRESS_LEVEL = 3


@dataclass(frozen=True)
class NormalizedImage:
    """The prepared image: `data` is JPEG, or PNG with alpha when the source has transparency."""

    data: bytes
    content_type: str  # "image/jpeg" or "image/png"
    width: int
    height: int
    original_format: str
    sha256: str


def sniff(data: bytes) -> str | None:
    """The image format named by the file's magic bytes, or None. Names and Content-Types lie."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    return None


def describe_non_image(data: bytes) -> str:
    """A short, human description of what a non-image upload looks like, for error messages."""
    head = data[:512].lstrip()
    if not data:
        return "the file is empty"
    if head.startswith(b"%PDF"):
        return "it is a PDF document"
    if head.startswith((b"<svg", b"<?xml")) or b"<svg" in head:
        return "it is an SVG drawing (vector images are not supported)"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "it is a HEIC/AVIF photo (export it as JPEG or PNG)"
    try:
        head.decode("utf-8")
        return "it looks like a text file"
    except UnicodeDecodeError:
        return "its content is not a known image format"


def _reason(exc: Exception) -> str:
    """What Pillow found wrong, in words a user can read."""
    if isinstance(exc, Image.UnidentifiedImageError):
        return "its header is not one Pillow recognizes"
    text = str(exc)
    if "truncated" in text:
        return "the file is truncated: it ends too early"
    return re.sub(r"<[^>]*object at 0x[0-9a-f]+>", "the file", text)


# The memory one prepare may take for decoded pixels (an instance has 2 GB, and runs a few at once).
DECODE_BUDGET_BYTES = 280 * 1024 * 1024
# Bytes per pixel Pillow holds once decoded: one for greyscale and palette images, two for 16-bit
# greyscale, four for everything else (RGB is stored as four bytes too).
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2}
# Decoded copies a format needs at once: libwebp decodes into its own buffer, which Pillow then
# copies into an image and converts; the other formats decode straight into one image. JPEG
# decodes at a reduced scale (draft mode), so its cost is that of the reduced image.
_DECODE_COPIES = {"WEBP": 3}


def decode_bytes(fmt: str, mode: str, width: int, height: int) -> int:
    """The memory decoding this image takes, by format and mode (the byte budget's measure)."""
    pixels = width * height
    if fmt == "JPEG":
        pixels = min(pixels, 4 * MAX_SIDE * MAX_SIDE)  # draft mode decodes at most about 2x the target
    return pixels * _PIXEL_BYTES.get(mode, 4) * _DECODE_COPIES.get(fmt, 1)


def check_header(data: bytes) -> tuple[str, int, int]:
    """Cheap validation without decoding pixels: format, width, height. Raises InvalidImage."""
    fmt = sniff(data)
    if fmt is None:
        raise InvalidImage(f"Not an image: {describe_non_image(data)}. Send a JPEG, PNG, GIF, BMP, WEBP or TIFF.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                width, height = img.size
                mode = img.mode
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"The image is too large to process safely ({exc}).") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken headers
        # Pillow's own text can name internal objects (<_io.BytesIO object at 0x...>): not for users.
        raise InvalidImage(
            f"The {fmt} file is damaged and cannot be read ({_reason(exc)}). "
            "Export it again from the program that made it, or send another image."
        ) from None
    if width > MAX_SOURCE_SIDE or height > MAX_SOURCE_SIDE:
        raise InvalidImage(f"The image is {width}x{height}; the largest side may be {MAX_SOURCE_SIDE} px.")
    cost = decode_bytes(fmt, mode, width, height)
    if cost > DECODE_BUDGET_BYTES:
        largest = DECODE_BUDGET_BYTES / (cost / (width * height)) / 1e6
        raise InvalidImage(
            f"The {fmt} image is {width * height / 1e6:.0f} megapixels; Varia reads {fmt} images of up to "
            f"{largest:.0f} megapixels. Save it as JPEG or PNG, or make it smaller."
        )
    if width * height > MAX_PIXELS:
        raise InvalidImage(
            f"The image has {width * height / 1e6:.0f} megapixels; the limit is {MAX_PIXELS // 1_000_000}."
        )
    if min(width, height) <= MIN_SIDE:
        raise InvalidImage(f"The image is {width}x{height}; each side must be larger than {MIN_SIDE} px.")
    if min(width, height) * min(1.0, MAX_SIDE / max(width, height)) <= MIN_SIDE:
        raise InvalidImage(
            f"The image is {width}x{height}: too thin once fitted to {MAX_SIDE} px "
            f"(each side must stay above {MIN_SIDE} px). Crop it closer to 3:1 or squarer."
        )
    return fmt, width, height


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of letting convert() clip to white.
        img = img.convert("I").point(lambda v: v / 256).convert("L")
    if _has_alpha_channel(img):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _has_alpha_channel(img: Image.Image) -> bool:
    """An alpha band, or a transparent palette index or colour key (PNG tRNS, GIF transparency)."""
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info
    )


def _transparent(img: Image.Image) -> Image.Image | None:
    """The image as RGBA when some pixel is not fully opaque; None when it is opaque all over.

    Called on the reduced image, so the RGBA copy is small. An alpha channel that is 255 everywhere
    (many screenshots and exports) counts as opaque: that image is stored as JPEG.
    """
    if not _has_alpha_channel(img):
        return None
    rgba = img.convert("RGBA")
    low, _high = rgba.getchannel("A").getextrema()  # one band: (min, max)
    return rgba if isinstance(low, int) and low < 255 else None


# EXIF orientation -> the transpose that makes the image upright (as ImageOps.exif_transpose does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


# Rows reduced at a time: about 4 MB of a full-width source per band.
_BAND_BYTES = 4 * 1024 * 1024


def _shrink(img: Image.Image, max_side: int) -> Image.Image:
    """The decoded image reduced by a whole factor that keeps it at least `max_side` on its long side.

    Done first, on the decoded pixels, so that every later step (orientation, colour conversion,
    the final resampling) works on a small image. It works band by band: Pillow reduces an image
    with alpha through a premultiplied full-size copy, which for a 64 MP RGBA PNG is another 256 MB.
    Palette and 16-bit images are reduced by nearest neighbour (reduce() does not take them); the
    final LANCZOS fit smooths them.
    """
    factor = max(img.size) // max_side
    if factor < 2:
        return img
    width, height = (img.width // factor) * factor, (img.height // factor) * factor
    small = Image.new(img.mode, (width // factor, height // factor))
    if img.mode == "P":
        small.putpalette(img.getpalette() or [])
    rows = max(factor, _BAND_BYTES // (img.width * 4) // factor * factor)
    for top in range(0, height, rows):
        band = img.crop((0, top, width, min(top + rows, height)))
        try:
            reduced = band.reduce(factor)
        except ValueError:  # modes reduce() does not take (P, 1, I;16...)
            reduced = band.resize((band.width // factor, band.height // factor), Image.Resampling.NEAREST)
        small.paste(reduced, (0, top // factor))
    if "transparency" in img.info:
        small.info["transparency"] = img.info["transparency"]
    return small


def normalize(data: bytes, max_side: int = MAX_SIDE) -> NormalizedImage:
    """Decode safely, apply EXIF orientation, drop all metadata, fit to `max_side`, encode JPEG.

    An image with transparent pixels is stored as an RGBA PNG instead, so its alpha survives;
    any other (an alpha channel that is opaque everywhere included) becomes an RGB JPEG.

    Memory stays near one decoded copy of the source: JPEG decodes at a reduced scale (libjpeg's
    draft mode), every other format is reduced by a whole factor right after decoding, and only
    the reduced image is rotated, converted and resampled.
    """
    fmt, width, height = check_header(data)
    scale = min(1.0, max_side / max(width, height))
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit: make that an error too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                if fmt == "JPEG" and scale < 1:
                    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale, far cheaper than decoding every pixel;
                    # it keeps at least 3/4 of the final size, so quality does not suffer.
                    floor = 0.75 * scale
                    img.draft("RGB", (max(1, round(width * floor)), max(1, round(height * floor))))
                img.seek(0)  # animated GIF/WEBP: the first frame
                img.load()
                orientation = img.getexif().get(ORIENTATION_TAG)  # TIFF fills its tags as it loads
                small = _shrink(img, max_side)
                if small is not img:
                    img.close()  # the full-size pixels go now, before any conversion
                if orientation in _UPRIGHT:
                    small = small.transpose(_UPRIGHT[orientation])
                rgba = _transparent(small)
                fitted = rgba if rgba is not None else small if small.mode == "RGB" else _to_rgb(small)
                if max(fitted.size) > max_side:
                    fitted.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # premultiplied for RGBA
                encoded, content_type = _encode_prepared(fitted)  # no exif=, no pnginfo: nothing but pixels
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"The image is too large to process safely ({exc}).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"The {fmt} file is damaged or truncated and cannot be decoded ({exc}).") from None
    sha256 = hashlib.sha256(encoded).hexdigest()
    return NormalizedImage(encoded, content_type, fitted.width, fitted.height, fmt, sha256)


def _encode_prepared(img: Image.Image) -> tuple[bytes, str]:
    """(bytes, content type): PNG for an RGBA image (it has transparent pixels), JPEG for the rest."""
    out = io.BytesIO()
    if img.mode == "RGBA":
        _clear_hidden(img).save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        return out.getvalue(), "image/png"
    img.save(out, format="JPEG", quality=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING)
    return out.getvalue(), "image/jpeg"


def _clear_hidden(rgba: Image.Image) -> Image.Image:
    """The image with its fully transparent pixels made transparent black.

    What a cut-out hides keeps its colours in many files (the background a user erased is still
    there under alpha 0): no service should see it, and without it the PNG is about half the size.
    """
    visible = rgba.getchannel("A").point(lambda a: 255 if a else 0)
    cleared = Image.new("RGBA", rgba.size, (0, 0, 0, 0))
    cleared.paste(rgba, mask=visible)
    return cleared


_CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
_EXTENSIONS = {"JPEG": "jpg", "PNG": "png"}


def content_type_of(data: bytes) -> str:
    """The content type of an image Varia stored or was given by a model (JPEG or PNG), from its bytes."""
    fmt = sniff(data)
    if fmt not in _CONTENT_TYPES:
        raise ValueError(f"expected a JPEG or PNG image, got {fmt or 'bytes that are not an image'}")
    return _CONTENT_TYPES[fmt]


def upload_file(data: bytes, stem: str = "source") -> tuple[str, bytes, str]:
    """A prepared image as an SDK file tuple, named and typed for what it is: ("source.jpg", data, "image/jpeg")."""
    content_type = content_type_of(data)
    extension = _EXTENSIONS["JPEG" if content_type == "image/jpeg" else "PNG"]
    return f"{stem}.{extension}", data, content_type


def open_prepared(data: bytes) -> Image.Image:
    """Open an image Varia stored itself (a prepared source or an output: JPEG or PNG)."""
    img = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])
    img.load()
    return img


def open_rgb(data: bytes) -> Image.Image:
    """A stored image as RGB, transparent parts on white (as an image without alpha would show them)."""
    img = open_prepared(data)
    return img if img.mode == "RGB" else _to_rgb(img)


def encode_png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


# --- What Varia keeps of an upload: the pixels, never the metadata --------------------------------

# JPEG segments kept by the lossless strip: everything but APPn (EXIF, XMP, ICC, IPTC, maker
# notes, MPF) and COM. The Adobe APP14 segment stays: it says how to read CMYK and YCCK colours.
_JPEG_APP0, _JPEG_APP15, _JPEG_COM, _JPEG_SOS, _JPEG_EOI = 0xE0, 0xEF, 0xFE, 0xDA, 0xD9
# PNG chunks kept: pixels, palette, transparency and colour rendering; no text (XMP lives in
# iTXt), eXIf, iCCP, tIME or private chunks. APNG frames stay (Varia reads the first).
_PNG_KEEP = {
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD", b"pHYs",
    b"acTL", b"fcTL", b"fdAT",
}  # fmt: skip
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SAVABLE_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}
ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class StrippedImage:
    """An upload as Varia keeps it: `data` carries no metadata; `format` None when it is not an image."""

    data: bytes
    format: str | None
    reencoded: bool = False


def strip_metadata(data: bytes) -> StrippedImage:
    """The upload without EXIF, GPS, XMP, ICC, text chunks or trailing data, looking as it did.

    JPEG and PNG are stripped losslessly, segment by segment. An EXIF orientation other than
    "upright" is applied to the pixels first (re-encoded: JPEG at quality 95, PNG lossless), so
    the image still looks the same once the tag is gone. Other formats are re-encoded (WEBP as
    WEBP, the rest as PNG). Bytes that are not an image are returned as they are: there is no
    image metadata to remove, and the prepare step says what they are. A GIF, BMP, TIFF or WEBP
    that cannot be decoded raises InvalidImage, since its metadata cannot be found to remove.
    """
    fmt = sniff(data)
    if fmt == "JPEG":
        kept, orientation = _jpeg_segments(data)
        if orientation in (None, 1):
            return StrippedImage(kept, "JPEG")
        with contextlib.suppress(InvalidImage):
            return _reencode(data, "JPEG", "JPEG")
        return StrippedImage(kept, "JPEG")  # undecodable: prepare reports it; no metadata kept
    if fmt == "PNG":
        chunks = _png_chunks(data)
        if chunks is not None:
            kept, orientation = chunks
            if orientation in (None, 1):
                return StrippedImage(kept, "PNG")
            with contextlib.suppress(InvalidImage):
                return _reencode(data, "PNG", "PNG")
            return StrippedImage(kept, "PNG")
        return _reencode(data, "PNG", "PNG")
    if fmt is None:
        return StrippedImage(data, None)
    return _reencode(data, fmt, "WEBP" if fmt == "WEBP" else "PNG")


def _orientation(exif_block: bytes) -> int | None:
    exif = Image.Exif()
    try:
        exif.load(exif_block)
        value = exif.get(ORIENTATION_TAG)
    except Exception:  # noqa: BLE001 - a broken EXIF block is dropped like a good one
        return None
    return int(value) if isinstance(value, int) else None


def _jpeg_segments(data: bytes) -> tuple[bytes, int | None]:
    """(the JPEG without APPn/COM segments and trailing bytes, its EXIF orientation).

    From a point where the file stops making sense, the rest is kept as sent: no decoder can read
    metadata there, and prepare reports the file as damaged.
    """
    out = [b"\xff\xd8"]
    orientation: int | None = None
    i, n = 2, len(data)
    while i < n:
        if data[i] != 0xFF:
            out.append(data[i:])  # not a marker: the rest is kept as sent, unreadable to any decoder
            break
        while i < n and data[i] == 0xFF:  # fill bytes before a marker
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker == _JPEG_EOI:
            out.append(b"\xff\xd9")  # anything after the image (a motion photo's video, ...) goes too
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            out.append(bytes((0xFF, marker)))
            continue
        if i + 2 > n:
            break  # truncated: prepare reports it
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2:
            out.append(data[i - 2 :])
            break
        body = data[i + 2 : i + length]
        if marker == _JPEG_APP0 + 1 and body.startswith(b"Exif\x00\x00") and orientation is None:
            orientation = _orientation(body)
        is_app = _JPEG_APP0 <= marker <= _JPEG_APP15
        if not ((is_app and not (marker == 0xEE and body.startswith(b"Adobe"))) or marker == _JPEG_COM):
            out.append(bytes((0xFF, marker)) + data[i : i + length])
        i += length
        if marker == _JPEG_SOS:  # entropy-coded data runs to the next marker that is not RSTn or a stuffed 00
            j = i
            while True:
                j = data.find(b"\xff", j)
                if j < 0 or j + 1 >= n:
                    j = n
                    break
                following = data[j + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    j += 2
                elif following == 0xFF:
                    j += 1
                else:
                    break
            out.append(data[i:j])
            i = j
    return b"".join(out), orientation


def _png_chunks(data: bytes) -> tuple[bytes, int | None] | None:
    """(the PNG with only the chunks in _PNG_KEEP, its eXIf orientation); None for EXIF kept as text.

    From a broken chunk on, the rest is kept as sent (no decoder can read metadata there).
    """
    out = [_PNG_SIGNATURE]
    orientation: int | None = None
    i, n = len(_PNG_SIGNATURE), len(data)
    while i + 8 <= n:
        length = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        if not kind.isalpha() or length > n:
            break  # a broken chunk chain: the rest is kept as sent (below), unreadable to any decoder
        end = i + 12 + length
        if kind == b"eXIf":
            orientation = _orientation(data[i + 8 : i + 8 + length])
        elif kind in (b"tEXt", b"zTXt", b"iTXt") and data[i + 8 : i + 8 + 21] == b"Raw profile type exif":
            return None  # EXIF kept as text (ImageMagick): let Pillow read its orientation
        if kind in _PNG_KEEP:
            out.append(data[i:end])
        i = end
        if kind == b"IEND":
            break
    if i < n and out[-1][4:8] != b"IEND":
        out.append(data[i:])  # kept as sent, so prepare can say the file is damaged
    return b"".join(out), orientation


def _reencode(data: bytes, fmt: str, target: str) -> StrippedImage:
    """Decode, apply the EXIF orientation, and encode again with no metadata. Raises InvalidImage."""
    check_header(data)  # the bomb guard and size limits, before any pixel is decoded
    lossless = fmt == "WEBP" and b"VP8L" in data and b"VP8 " not in data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as img:
                img.seek(0)  # animated GIF/WEBP: the first frame, the one Varia uses
                img.load()
                upright = ImageOps.exif_transpose(img)
                transparency = upright.info.get("transparency")
                upright.info = {} if transparency is None else {"transparency": transparency}
                out = io.BytesIO()
                if target == "JPEG":
                    upright.save(out, format="JPEG", quality=95)
                elif target == "WEBP":
                    upright.save(out, format="WEBP", lossless=lossless, quality=95 if not lossless else 100)
                else:
                    if upright.mode not in _PNG_SAVABLE_MODES:
                        upright = _to_rgb(upright)
                    upright.save(out, format="PNG")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"The image is too large to process safely ({exc}).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"The {fmt} file is damaged or truncated and cannot be decoded ({exc}).") from None
    return StrippedImage(out.getvalue(), target, reencoded=True)
