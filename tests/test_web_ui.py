"""The web page's handler: which files it serves, with which types and headers, and what the page may run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import azure.functions as func
import pytest

from shared.adapters.services import load_presets
from shared.config import ConfigError, Settings
from shared.core.codes import CODES
from shared.functions.web_ui import CONTENT_SECURITY_POLICY, WEB_DIR, serve_ui
from tests.support import offline_env


def _settings(tmp_path: Path, **extra: str) -> Settings:
    return Settings.from_env(offline_env(tmp_path, **extra))


def _serve(tmp_path: Path, name: str | None, development: bool = True, **extra: str) -> func.HttpResponse:
    return serve_ui(name, lambda: _settings(tmp_path, **extra), development)


def test_the_index_is_html_with_a_strict_content_security_policy(tmp_path: Path) -> None:
    for name in (None, "", "index.html"):
        response = _serve(tmp_path, name)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert b"<title>Varia" in response.get_body()
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    policy = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and "unsafe" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("i18n.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_assets_have_their_content_types(tmp_path: Path, name: str, content_type: str) -> None:
    response = _serve(tmp_path, name)
    assert response.status_code == 200 and response.headers["Content-Type"] == content_type
    assert response.get_body() == (WEB_DIR / name).read_bytes()
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "name",
    [
        "../web_ui.py",
        "..",
        ".",
        "../../README.md",
        "web/index.html",
        "/etc/passwd",
        "..\\web_ui.py",
        ".hidden.css",
        "index.html\x00.js",
        "presets.json",  # exists in shared/data, not in shared/functions/web
        "missing.css",
        "INDEX.HTML",
        "index",
    ],
)
def test_only_files_of_the_web_folder_are_served(tmp_path: Path, name: str) -> None:
    response = _serve(tmp_path, name)
    assert response.status_code == 404
    assert json.loads(response.get_body())["error"].startswith("The page has no file")


def test_config_carries_the_presets_and_the_limits_the_api_enforces(tmp_path: Path) -> None:
    response = _serve(tmp_path, "config.json", VARIA_MAX_VARIATIONS="6", VARIA_MAX_UPLOAD_MB="8")
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    config = json.loads(response.get_body())
    assert config["presets"] == load_presets()
    assert config["max_variations"] == 6 and config["max_upload_mb"] == 8
    assert config["profiles"] == ["general", "kids"] and config["default_variations"] == 2


def test_a_bad_setting_breaks_only_config_json_not_the_page(tmp_path: Path) -> None:
    def broken() -> Settings:
        raise ConfigError("VARIA_MAX_VARIATIONS='lots' is not a whole number")

    assert serve_ui(None, broken, False).status_code == 200
    with pytest.raises(ConfigError):
        serve_ui("config.json", broken, False)


def test_caching_fresh_in_development_revalidated_in_azure(tmp_path: Path) -> None:
    assert _serve(tmp_path, "app.js", development=True).headers["Cache-Control"] == "no-store"
    first = _serve(tmp_path, "app.js", development=False)
    assert first.headers["Cache-Control"] == "no-cache"
    again = serve_ui("app.js", lambda: _settings(tmp_path), False, first.headers["ETag"])
    assert again.status_code == 304 and again.get_body() == b""
    assert serve_ui("app.js", lambda: _settings(tmp_path), False, '"stale"').status_code == 200


def test_the_page_runs_under_its_own_policy_and_never_writes_server_text_as_html() -> None:
    html = (WEB_DIR / "index.html").read_text()
    # Inline script, inline style and event-handler attributes would all be blocked by the CSP.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "<style" not in html and not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    assert re.findall(r'(?:src|href)="([^"#]+)"', html) == ["/api/ui/favicon.svg", "/api/ui/app.css", "/api/ui/app.js"]
    script = (WEB_DIR / "app.js").read_text()
    # Captions and messages come from the server (and from a model): text only, never markup.
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "eval(" not in script
    assert "setAttribute('style'" not in script


def test_the_policy_lets_the_page_show_what_it_fetched_and_connect_only_to_the_app() -> None:
    # Results are fetched with the function key in a header and shown from object URLs (blob:), so no image
    # URL carries the key; fetch() itself may only reach the app.
    policy = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert policy["img-src"] == "'self' blob:"
    assert policy["connect-src"] == "'self'"


def test_config_carries_the_advice_for_every_code_from_the_one_table(tmp_path: Path) -> None:
    config = json.loads(_serve(tmp_path, "config.json").get_body())
    assert config["codes"] == {name: {"advice": code.advice, "who": code.who} for name, code in CODES.items()}
    assert config["codes"]["minor_edit_refused"]["advice"] == CODES["minor_edit_refused"].advice
    assert config["codes"]["resource_blocked"]["who"] == "admin"
    assert {"invalid_image", "upload_too_large", "storage_full"} <= config["codes"].keys()  # refused requests too


def test_the_page_picks_its_advice_by_code_never_by_reading_the_message() -> None:
    script = (WEB_DIR / "app.js").read_text()
    # No pattern is ever tested against a message or a reason: the advice comes from config.json's codes.
    assert not re.search(r"\.test\(\s*(message|reason|text|view\.message|answer\.error)", script)
    assert not re.search(r"(message|reason|error)\S*\.(match|search)\(", script)
    assert "PICTURE_PROBLEM" not in script
    assert "adviceFor(view.code)" in script and "adviceFor(answer.code)" in script and "adviceFor(i.code)" in script


def _dictionaries() -> dict[str, set[str]]:
    """The keys of each language's dictionary in i18n.js (`const en = {` ... `};`, one `key: '...'` a line)."""
    script = (WEB_DIR / "i18n.js").read_text()
    found = {}
    for language in ("en", "fr", "es", "ru"):
        body = script.split(f"const {language} = {{\n", 1)[1].split("\n};", 1)[0]
        found[language] = set(re.findall(r"^  '?([\w.\-]+)'?:", body, re.M))
    return found


def test_every_language_says_everything_the_page_says() -> None:
    languages = _dictionaries()
    english = languages["en"]
    assert len(english) > 150
    for language in ("fr", "es", "ru"):
        assert english - languages[language] == set(), f"{language} lacks these texts"
    # Every key the page names, in its HTML or its script, is in the English dictionary.
    html = (WEB_DIR / "index.html").read_text()
    script = (WEB_DIR / "app.js").read_text()
    named = set(re.findall(r'data-i18n="([\w]+)"', html)) | set(re.findall(r"data-i18n-attr=\"[\w-]+:([\w]+)\"", html))
    named |= set(re.findall(r"\bt\('([\w.]+)'", script))
    assert named - english == set()
    # No text for people is left in the script outside the dictionaries: every textContent is a t() or server text.
    assert not re.search(r"textContent = '[A-Z]", script)


def _css_colours() -> dict[str, str]:
    css = (WEB_DIR / "app.css").read_text()
    return dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-f]{6})", css))


def _luminance(colour: str) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_focus_ring_and_the_texts_meet_wcag_aa_contrast() -> None:
    colours = _css_colours()
    css = (WEB_DIR / "app.css").read_text()
    white = "#ffffff"
    # The focus indicator: 3:1 against what it sits next to (the cards, the page's background).
    for background in (white, colours["bg"], colours["primary-soft"]):
        assert contrast(colours["focus"], background) >= 3, background
    # Text: 4.5:1.
    assert contrast(colours["ink"], white) >= 4.5 and contrast(colours["muted"], white) >= 4.5
    assert contrast(colours["muted"], colours["bg"]) >= 4.5
    assert contrast(colours["warn"], colours["warn-soft"]) >= 4.5
    assert contrast(colours["primary-dark"], white) >= 4.5
    # The step numbers: white on each of their backgrounds.
    step_rule = r"\.how li:nth-child\(\d\) \.how-num \{ background: (#[0-9a-f]{6}); \}"
    step_backgrounds = [colours["primary"]] + re.findall(step_rule, css)
    assert len(step_backgrounds) == 3
    for background in step_backgrounds:
        assert contrast(white, background) >= 4.5, background
