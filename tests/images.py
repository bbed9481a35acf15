"""Images the tests make on the fly: a small scene, and photos with EXIF orientation and GPS tags."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def scene(width: int = 240, height: int = 160) -> Image.Image:
    img = Image.new("RGB", (width, height), (120, 180, 235))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, height * 2 // 3, width, height], fill=(70, 150, 60))
    draw.ellipse([width * 3 // 4, 10, width * 3 // 4 + 30, 40], fill=(250, 210, 80))
    draw.rectangle([width // 5, height // 3, width // 2, height * 5 // 6], fill=(210, 90, 70))
    return img


def scene_png(width: int = 240, height: int = 160) -> bytes:
    out = io.BytesIO()
    scene(width, height).save(out, format="PNG")
    return out.getvalue()


def jpeg_with_exif(width: int = 240, height: int = 160, orientation: int = 6, gps: bool = True) -> bytes:
    """A JPEG whose EXIF says 'rotate 90°' (orientation 6) and carries a GPS position."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    if gps:
        exif.get_ifd(GPS_IFD).update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    out = io.BytesIO()
    scene(width, height).save(out, format="JPEG", exif=exif, quality=90)
    return out.getvalue()


def has_gps(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as img:
        return bool(img.getexif().get_ifd(GPS_IFD)) or b"GPS" in data
