"""The web page, served by the app itself: `GET /api/ui` (the page) and `GET /api/ui/{file}` (its assets).

The page is static (shared/functions/web: index.html, app.css, app.js, an icon) and talks to the HTTP API
under /api/variations. `config.json` is the one generated file: the presets and the limits the
form needs, from the same settings the API enforces, and the advice the page gives for each code
(from shared/core/codes.py, so the page never guesses from a message). Only files that exist in shared/functions/web are
served, by plain name (no folders, no dot files), each with a strict Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import azure.functions as func

from shared.adapters.services import load_presets
from shared.ai_models import flexible_sizes
from shared.config import Settings
from shared.core.codes import page_table
from shared.core.safety import PROFILES

WEB_DIR = Path(__file__).with_name("web")
INDEX = "index.html"
CONFIG = "config.json"

CONTENT_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}

# Everything the page loads comes from the app itself. `blob:` images are the preview of the picked file (an
# object URL, never uploaded until the form is sent) and the results: the page fetches them with the function key
# in a header and shows them from object URLs, so no image URL carries the key. No inline script or style.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

# A plain file name: a letter or digit first (no dot files, no '..'), no separators or escapes.
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9]+)+$")


def _not_found(name: str) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps({"error": f"The page has no file {name[:80]!r}."}),
        status_code=404,
        mimetype="application/json",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def page_config(settings: Settings) -> dict[str, object]:
    """What the page needs to know before the first request: presets, profiles, limits, and advice by code."""
    return {
        "presets": load_presets(),
        "profiles": list(PROFILES),
        "default_profile": settings.default_profile,  # the enforced profile when there is one
        # VARIA_ENFORCED_PROFILE: the page hides its profile choice and says this profile is on (null: a choice).
        "enforced_profile": settings.enforced_profile or None,
        "default_variations": settings.default_variations,
        "max_variations": settings.max_variations,
        # Whether a job may ask for a custom WxH (gpt-image-2, or the offline painter, which crops to it).
        "custom_sizes": settings.image_provider != "gpt-image" or flexible_sizes(settings.image_model),
        "max_upload_mb": settings.max_upload_bytes // (1024 * 1024),
        "codes": page_table(),
    }


def _asset(name: str, settings: Callable[[], Settings]) -> tuple[bytes, str] | None:
    """(body, content type) of a page file, or None when there is no such file to serve."""
    if name == CONFIG:
        return json.dumps(page_config(settings()), ensure_ascii=False).encode(), "application/json"
    if not _FILE_NAME.match(name):
        return None
    content_type = CONTENT_TYPES.get(Path(name).suffix.lower())
    # Only names listed in the folder, so nothing outside it (or a symlink's target) is reachable.
    if content_type is None or name not in {p.name for p in WEB_DIR.iterdir() if p.is_file()}:
        return None
    return (WEB_DIR / name).read_bytes(), content_type


def serve_ui(
    name: str | None, settings: Callable[[], Settings], development: bool, if_none_match: str | None = None
) -> func.HttpResponse:
    """The page (name None or empty) or one of its files, with security and caching headers.

    `settings` is called only for config.json, so a bad setting never stops the page itself.
    """
    name = name or INDEX
    found = _asset(name, settings)
    if found is None:
        return _not_found(name)
    body, content_type = found
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # Development: always fresh, so edits show on reload. Azure: revalidate by ETag (names are not versioned).
        "Cache-Control": "no-store" if development else "no-cache",
        "ETag": etag,
    }
    if not development and if_none_match == etag:
        return func.HttpResponse(status_code=304, headers=headers)
    charset = "; charset=utf-8" if content_type.startswith("text/") or content_type == "application/json" else ""
    headers["Content-Type"] = content_type + charset
    return func.HttpResponse(body, status_code=200, headers=headers, mimetype=content_type)
