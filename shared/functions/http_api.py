"""The HTTP API a front end uses: start a job, follow it, fetch its images.

    POST /api/variations              multipart (image, prompt, profile, n, mode, force) or JSON
                                      ({"image": base64, "prompt": ...}); 202 with job id and status URL
    GET  /api/variations/{id}         stage, progress, caption, output prompt, image links, error
    GET  /api/variations/{id}/images/{which}   "source" or a variation index, served by the app

Images reach the browser through the app, never through Durable's management URLs (which
carry a key that can terminate instances). Handlers are plain async functions over a
`JobClient` and `Services`, so tests and the local server call them without the host.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import os
import re
import threading
import unicodedata
from collections.abc import Callable
from typing import Annotated, Any, cast

import azure.functions as func
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

from shared.adapters.services import Services
from shared.adapters.storage import OUTPUTS, WORK, BlobNotFound, StorageError, for_requests
from shared.config import Settings
from shared.core.blobs import cancel_name, manifest_name, preview_name, source_name, variation_name
from shared.core.callers import Caller, Ticket, TooManyJobs, admit, caller_behind_host
from shared.core.images import InvalidImage, check_header
from shared.core.jobs import (
    JobClient,
    MaskInvalid,
    ProfileEnforced,
    ReferenceInvalid,
    RequestError,
    check_options,
    clean_prompt,
    request_for_upload,
    start_job,
)
from shared.core.lineage import (
    OutputInvalid,
    ParentInvalid,
    check_action,
    check_output,
    chosen_parent,
    estimate,
    request_from_parent,
)
from shared.core.masks import MAX_MASK_BYTES
from shared.core.models import MAX_REFERENCES, BlobRef, JobRequest, Manifest, Mode, OutputOptions, Profile, Reference
from shared.core.steps import delivered_so_far

API_PREFIX = "/api/variations"


# What a POST may hold. The form needs six parts (image, prompt, profile, n, mode, force); a body of
# thousands of tiny parts is refused at the 17th instead of being parsed whole.
MAX_FORM_PARTS = 32  # image, mask, 4 references and their roles, and every text field
MAX_FORM_FIELD_BYTES = 64 * 1024  # one text field; the prompt's limit is 1000 characters
MAX_JSON_DEPTH = 32  # the contract is one flat object: nesting deeper than this is refused before parsing
UPLOAD_FIELDS = ("prompt", "profile", "n", "mode", "force")
OUTPUT_FIELDS = ("quality", "aspect", "size", "format", "compression", "background")
# A job from a variation of an earlier one: JSON's "from": {"job_id", "index"}, or these form fields.
LINEAGE_FIELDS = ("from_job_id", "from_index", "action", "strength")
# The order an answer names bad fields in: as a form shows them.
FIELD_ORDER = ("from", "action", "strength", "image", "mask", "references", "prompt", "profile", "n", "mode", "force")
# A job id in a path: ASCII only, nothing after it (re's `$` would accept a trailing newline).
_JOB_ID = re.compile(r"(?:blob|http|cli)-[0-9a-f]{32}")
_IMAGE_INDEX = re.compile(r"[0-9]")  # variation indexes are 0 to 9 (VARIA_MAX_VARIATIONS is at most 10)


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    try:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from the request: escape it instead of failing
        data = json.dumps(body).encode("ascii")
    return func.HttpResponse(data, status_code=status, mimetype="application/json", headers=headers)


def error_response(
    status: int, message: str, code: str = "invalid_request", fields: list[dict[str, str]] | None = None
) -> func.HttpResponse:
    """Every error the API gives: `{"error": message, "code": code}`, plus `fields` naming each bad field.

    `error` stays a sentence (the page shows it as it is); `code` is for programs; `fields` lists
    `{"field", "problem"}` for a request that fails validation.
    """
    body: dict[str, Any] = {"error": message, "code": code}
    if fields is not None:
        body["fields"] = fields
    return _json(body, status)


def _error(status: int, message: str, code: str = "invalid_request") -> func.HttpResponse:
    return error_response(status, message, code)


log = logging.getLogger("varia.http")


def _storage_error(exc: StorageError, job_id: str | None = None) -> func.HttpResponse:
    """A storage fault as the answer (507 when full, else 503) with its code and message; logged with the job id.

    Request paths use `for_requests(storage)`: short timeouts, so an unreachable store answers in seconds.
    """
    log.error("Job %s: %s: %s", job_id or "(none yet)", exc.code, exc)
    return error_response(exc.http_status, str(exc), exc.code)


def max_body_bytes(settings: Settings) -> int:
    """The largest request body an upload of the size limit can need: base64 JSON (4/3) plus form fields.

    Servers refuse a larger declared Content-Length before reading the body (the local server does).
    """
    return (2 * settings.max_upload_bytes + MAX_MASK_BYTES) * 4 // 3 + 65_536  # references: one upload's worth


def _shown(value: Any) -> str:
    """A value from the request, quoted short enough to put in an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _blank_is_none(value: Any) -> Any:
    return None if value is None or (isinstance(value, str) and not value.strip()) else value


def _decode_file(field: str, what: str, *, optional: bool = False) -> Callable[[Any], Any]:
    """A file field: bytes from a form's file part as they are, base64 text from JSON decoded."""

    def decode(value: Any) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        if not isinstance(value, str):
            raise ValueError(f"'{field}' must be {what} as base64 text (a data: URL is fine).")
        try:
            return base64.b64decode(value.split(",", 1)[-1], validate=True)  # tolerate a data: URL prefix
        except (binascii.Error, ValueError):
            raise ValueError(f"'{field}' is not valid base64: send {what}'s bytes as base64 text.") from None

    return decode


def _file_name(value: Any) -> str | None:
    """A file name fit to show in a message: its last path part, printable, at most 120 characters."""
    if not isinstance(value, str):
        return None
    name = value.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()[:120]
    return name or None


def _decode_references(value: Any) -> list[tuple[bytes, str]]:
    """References from a form (already (bytes, role) pairs) or JSON ([{"image": base64, "role": ...}])."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise ValueError('\'references\' must be a list of {"image": base64, "role": "style" or "subject"}.')
    decoded = []
    for item in value:
        if isinstance(item, tuple):
            decoded.append(item)
            continue
        if not isinstance(item, dict) or "image" not in item:
            raise ValueError('Each reference must be {"image": base64, "role": "style" or "subject"}.')
        role = item.get("role") or "style"
        decoded.append((_decode_file("reference", "the reference")(item["image"]), str(role)))
    return decoded


def _flag(value: Any, name: str) -> bool:
    """A true/false field (JSON's booleans, or a form's 1/0, true/false, yes/no, on/off)."""
    value = _blank_is_none(value)
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise ValueError(f"{name}={_shown(value)} is neither true nor false.")


class _JobFields(BaseModel):
    """The fields every POST /api/variations takes: profile, n, force, dry_run and the output options.

    Validated with the settings as context (`n`'s range, the default or enforced profile and count),
    so one answer names every field that is wrong. Unknown fields are ignored. `profile` becomes the
    profile the job runs under; `requested_profile` keeps the one the request named, for the manifest.
    The output options are checked afterwards by lineage.check_output, which knows the image model.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, validate_default=True)  # defaults come from the settings

    profile: Annotated[str | None, BeforeValidator(_blank_is_none)] = None
    n: Annotated[int | str | None, BeforeValidator(_blank_is_none)] = None
    force: Annotated[bool | str | None, BeforeValidator(_blank_is_none)] = None
    dry_run: Annotated[bool | str | None, BeforeValidator(_blank_is_none)] = None  # the estimate only
    quality: Any = None
    aspect: Any = None
    size: Any = None
    format: Any = None
    compression: Any = None
    background: Any = None
    requested_profile: str | None = None  # copied from `profile` before validation, never read from the body

    @model_validator(mode="before")
    @classmethod
    def _keep_requested_profile(cls, data: Any) -> Any:
        if isinstance(data, dict):
            named = _blank_is_none(data.get("profile"))
            data = {**data, "requested_profile": named if isinstance(named, str) else None}
        return data

    @staticmethod
    def _settings(info: ValidationInfo) -> Settings:
        settings = (info.context or {}).get("settings")
        if not isinstance(settings, Settings):
            raise TypeError("validate the request with context={'settings': Settings}")
        return settings

    @staticmethod
    def _clean_prompt(value: str) -> str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                "The prompt is not valid Unicode text (it holds a lone surrogate); send plain text."
            ) from None
        return clean_prompt(value)

    @field_validator("profile")
    @classmethod
    def _profile(cls, value: str | None, info: ValidationInfo) -> str:
        return check_options(cls._settings(info), value, None, None)[0]

    @field_validator("n", mode="before")
    @classmethod
    def _n(cls, value: Any, info: ValidationInfo) -> int:
        settings = cls._settings(info)
        value = _blank_is_none(value)
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value.strip())
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(
                f"n={_shown(value)} is not a whole number; ask for 1 to {settings.max_variations} variations."
            )
        if isinstance(value, int) and value > 1000:  # no need to print a thousand-digit number back
            raise ValueError(f"n is out of range; ask for 1 to {settings.max_variations} variations.")
        return check_options(settings, None, value, None)[1]

    @field_validator("force", "dry_run", mode="before")
    @classmethod
    def _flag(cls, value: Any, info: ValidationInfo) -> bool:
        return _flag(value, str(info.field_name))

    @property
    def profile_name(self) -> Profile:
        return cast(Profile, self.profile)

    @property
    def requested_profile_name(self) -> Profile | None:
        return cast(Profile | None, self.requested_profile)

    @property
    def count(self) -> int:
        return cast(int, self.n)


class UploadRequest(_JobFields):
    """The body of POST /api/variations with a picture, from a multipart form or a JSON object."""

    image: Annotated[bytes, BeforeValidator(_decode_file("image", "the picture"))]
    # A region edit: a PNG whose transparent pixels mark the area to change (shared/core/masks.py).
    mask: Annotated[bytes | None, BeforeValidator(_decode_file("mask", "the mask", optional=True))] = None
    # Pictures to borrow a style from or to put in the scene: (bytes, role), in order.
    references: Annotated[list[tuple[bytes, str]], BeforeValidator(_decode_references)] = []
    prompt: str
    mode: Annotated[str | None, BeforeValidator(_blank_is_none)] = None
    # The user's own name for the image (a form's file name, or JSON's "filename"), for messages.
    filename: Annotated[str | None, BeforeValidator(_file_name)] = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return cls._clean_prompt(value)

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str | None, info: ValidationInfo) -> str:
        return check_options(cls._settings(info), None, None, value)[2]

    @property
    def mode_name(self) -> Mode:
        return cast(Mode, self.mode)


def _from_field(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or "job_id" not in value:
        raise ValueError('\'from\' must name the variation to start from: {"job_id": "http-…", "index": 0}.')
    return {"job_id": value.get("job_id"), "index": 0 if value.get("index") in (None, "") else value.get("index")}


class LineageRequest(_JobFields):
    """The body of POST /api/variations that starts from variation `index` of an earlier job (no image).

    JSON: `{"from": {"job_id", "index"}, "action": "vary" | "remix" | "refine", "strength", "prompt", ...}`;
    a form sends `from_job_id` and `from_index`. Whether the parent exists and delivered that variation
    is checked against its manifest after this.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, validate_default=True, populate_by_name=True)

    parent: Annotated[dict[str, Any], BeforeValidator(_from_field), Field(alias="from")]
    action: Annotated[str | None, BeforeValidator(_blank_is_none)] = None
    strength: Annotated[str | None, BeforeValidator(_blank_is_none)] = None
    prompt: Annotated[str | None, BeforeValidator(_blank_is_none)] = None  # remix: required

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str | None) -> str | None:
        return None if value is None else cls._clean_prompt(value)

    @model_validator(mode="after")
    def _action(self) -> LineageRequest:
        check_action(self.action, self.strength)  # ParentInvalid says what to send
        return self


def _reference_count(value: Any) -> int:
    """How many references a job would send: a count, or the list itself."""
    if isinstance(value, list):
        return len(value)
    if value in (None, ""):
        return 0
    if isinstance(value, bool) or not str(value).isdigit():
        raise ValueError(f"references={_shown(value)} is neither a list nor a count.")
    return int(str(value))


class EstimateRequest(_JobFields):
    """A dry run with no picture yet (the page's cost line): what a job with these options would cost."""

    mode: Annotated[str | None, BeforeValidator(_blank_is_none)] = None
    references: Annotated[int, BeforeValidator(_reference_count), Field(ge=0, le=MAX_REFERENCES)] = 0

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str | None, info: ValidationInfo) -> str:
        return check_options(cls._settings(info), None, None, value)[2]


_TYPE_PROBLEMS = {
    "image": "'image' is missing: send the picture as base64 text.",
    "prompt": "'prompt' must be text saying how the image should change, e.g. 'as a watercolour'.",
    "profile": "'profile' must be one of: general, kids.",
    "mode": "'mode' must be 'edit' (keep the subject) or 'generate' (a new scene).",
}


def _field_problems(error: ValidationError) -> list[dict[str, str]]:
    """One {"field", "problem"} per malformed field, in the words a user can act on."""
    problems: dict[str, str] = {}
    for item in error.errors(include_url=False, include_input=False):
        field = str(item["loc"][0]) if item["loc"] else "body"
        if field in problems:
            continue  # a union type reports each of its members; the first problem is enough
        if item["type"] == "value_error":
            problems[field] = str((item.get("ctx") or {}).get("error", item["msg"]))
        elif item["type"] == "missing" and field == "prompt":
            problems[field] = "The prompt is missing; say how the image should change, e.g. 'as a watercolour'."
        else:
            problems[field] = _TYPE_PROBLEMS.get(field, f"'{field}': {item['msg']}.")
    ordered = sorted(problems, key=lambda f: FIELD_ORDER.index(f) if f in FIELD_ORDER else len(FIELD_ORDER))
    return [{"field": field, "problem": problems[field]} for field in ordered]


class _Refused(Exception):
    """A request refused before validation (shape, size, media type): the response to send."""

    def __init__(self, response: func.HttpResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


_READ_HINT = (
    "Send multipart/form-data with an 'image' file, or JSON (Content-Type: application/json) with a base64 'image'."
)


def _json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit`: checked before parsing, so no RecursionError."""
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def _form_values(req: func.HttpRequest, options: dict[str, str]) -> dict[str, Any]:
    """The form's fields and its 'image' file, parsed with limits on the number and size of parts."""
    parser = FormDataParser(
        lambda *_args, **_kwargs: io.BytesIO(),  # the body is in memory already: no temporary files
        max_form_memory_size=MAX_FORM_FIELD_BYTES,
        max_form_parts=MAX_FORM_PARTS,
        silent=False,
    )
    body = req.get_body()
    try:
        _stream, form, files = parser.parse(io.BytesIO(body), "multipart/form-data", len(body), options)
    except RequestEntityTooLarge:
        raise _Refused(
            error_response(
                413,
                f"The form has more than {MAX_FORM_PARTS} parts or a text field over {MAX_FORM_FIELD_BYTES // 1024} KB;"
                " send one 'image' file, at most one 'mask' and 4 'reference' files, and the fields prompt,"
                " profile, n, mode, force, reference_role, the output options and dry_run.",
                "form_too_large",
            )
        ) from None
    except ValueError:  # no boundary, a bad boundary, a part cut short
        raise _Refused(
            error_response(400, "The multipart form could not be read; " + _READ_HINT, "malformed_body")
        ) from None
    values: dict[str, Any] = {k: form.get(k) for k in UPLOAD_FIELDS}
    values |= {k: form.get(k) for k in (*OUTPUT_FIELDS, *LINEAGE_FIELDS, "dry_run") if form.get(k) is not None}
    if values.get("from_job_id"):  # a job from an earlier variation: no picture
        values["from"] = {"job_id": values.pop("from_job_id"), "index": values.pop("from_index", None)}
        return {k: v for k, v in values.items() if v is not None}
    upload = files.get("image")
    if upload is None and _is_true(values.get("dry_run")):  # the cost of a job before a picture is chosen
        values["references"] = len(files.getlist("reference"))
        return {k: v for k, v in values.items() if v is not None}
    if upload is None:
        fields = [{"field": "image", "problem": "The form has no 'image' file field."}]
        raise _Refused(error_response(400, "The form has no 'image' file field.", fields=fields))
    values["image"] = upload.read()
    values["filename"] = upload.filename
    mask = files.get("mask")
    if mask is not None:
        values["mask"] = mask.read()
    pictures, roles = files.getlist("reference"), form.getlist("reference_role")
    values["references"] = [(p.read(), roles[k] if k < len(roles) else "style") for k, p in enumerate(pictures)]
    return values


def _json_values(req: func.HttpRequest) -> dict[str, Any]:
    body = req.get_body()
    if _json_depth_exceeds(body, MAX_JSON_DEPTH):
        raise _Refused(
            error_response(400, f"The JSON nests deeper than {MAX_JSON_DEPTH} levels; " + _READ_HINT, "malformed_body")
        )
    try:
        value = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON
        raise _Refused(error_response(400, "The body is not valid JSON; " + _READ_HINT, "malformed_body")) from None
    if not isinstance(value, dict):
        raise _Refused(
            error_response(400, "The JSON body must be an object with 'image' (base64) and 'prompt'.", "malformed_body")
        )
    return value


def _is_true(value: Any) -> bool:
    try:
        return _flag(value, "dry_run")
    except ValueError:
        return False


def _read_upload(req: func.HttpRequest, settings: Settings) -> UploadRequest | LineageRequest | EstimateRequest:
    """The validated upload, or job from a parent variation, from a multipart form or a JSON body.

    Raises _Refused with the answer.
    """
    mimetype, options = parse_options_header(req.headers.get("content-type") or "")
    if mimetype == "multipart/form-data":
        values = _form_values(req, options)
    elif mimetype == "application/json" or mimetype.endswith("+json"):
        values = _json_values(req)
    else:
        # Only these two, so a browser on another site cannot send a job as text/plain without a preflight.
        raise _Refused(error_response(415, _READ_HINT, "unsupported_media_type"))
    model: type[UploadRequest] | type[LineageRequest] | type[EstimateRequest] = UploadRequest
    if "from" in values:
        model = LineageRequest
    elif values.get("image") in (None, "") and _is_true(values.get("dry_run")):
        model = EstimateRequest
    try:
        return model.model_validate(values, context={"settings": settings})
    except ValidationError as exc:
        fields = _field_problems(exc)
        if len(fields) == 1:
            message = fields[0]["problem"]
        else:
            message = f"{len(fields)} fields need fixing: " + " ".join(f["problem"] for f in fields)
        # A profile other than the enforced one is a policy answer, not a typo: its own code and status.
        enforced = any(isinstance((e.get("ctx") or {}).get("error"), ProfileEnforced) for e in exc.errors())
        if enforced:
            raise _Refused(error_response(409, message, ProfileEnforced.code, fields)) from None
        parent = any(isinstance((e.get("ctx") or {}).get("error"), ParentInvalid) for e in exc.errors())
        code = ParentInvalid.code if parent else "invalid_request"
        raise _Refused(error_response(400, message, code, fields)) from None


Checked = tuple[UploadRequest, str, OutputOptions] | tuple[LineageRequest | EstimateRequest, None, OutputOptions]


def _checked_upload(req: func.HttpRequest, settings: Settings) -> Checked | func.HttpResponse:
    """The upload and its image format (or the job from a parent), checked without storing anything; or the error
    response.

    Blocking work (parsing, the image header): the async handler runs it in a worker thread.
    """
    limit = settings.max_upload_bytes
    declared = req.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body_bytes(settings):
        # Refuse by the declared size, before reading a body that can only be too large.
        return _error(413, f"The upload is larger than {limit // (1024 * 1024)} MB.", "upload_too_large")
    try:
        upload = _read_upload(req, settings)
    except _Refused as refused:
        return refused.response
    try:
        output = check_output(settings, upload.model_dump(), masked=getattr(upload, "mask", None) is not None)
    except OutputInvalid as exc:
        return error_response(400, str(exc), exc.code, [{"field": "output", "problem": str(exc)}])
    if isinstance(upload, LineageRequest | EstimateRequest):
        return upload, None, output
    data = upload.image
    if len(data) > limit:
        return _error(
            413, f"The image is {len(data) / 1e6:.1f} MB; the limit is {limit // (1024 * 1024)} MB.", "upload_too_large"
        )
    try:
        fmt, _w, _h = check_header(data)
    except InvalidImage as exc:
        fields = [{"field": "image", "problem": str(exc)}]
        return error_response(400, str(exc), "invalid_image", fields)
    return upload, fmt, output


def _store_upload(
    upload: UploadRequest, fmt: str, output: OutputOptions, services: Services
) -> JobRequest | func.HttpResponse:
    """Store the checked upload in uploads/ (stripped of its metadata): the job it asks for, or the error response."""
    settings = services.settings
    try:
        return request_for_upload(
            for_requests(services.storage), upload.image, fmt.lower(), prompt=upload.prompt,
            profile=upload.profile_name, n=upload.count, mode=upload.mode_name, origin="http",
            force=bool(upload.force), filename=upload.filename, requested_profile=upload.requested_profile_name,
            profile_enforced=bool(settings.enforced_profile), mask=upload.mask, references=upload.references,
            output=output,
        )  # fmt: skip
    except MaskInvalid as exc:
        return error_response(400, str(exc), exc.code, [{"field": "mask", "problem": str(exc)}])
    except ReferenceInvalid as exc:
        return error_response(400, str(exc), exc.code, [{"field": "references", "problem": str(exc)}])
    except RequestError as exc:
        return error_response(400, str(exc), "invalid_image", [{"field": "image", "problem": str(exc)}])
    except StorageError as exc:
        return _storage_error(exc)


def _lineage_job(ask: LineageRequest, output: OutputOptions, services: Services) -> JobRequest | func.HttpResponse:
    """The job that takes a delivered variation of a finished job further, or the error response (nothing stored)."""
    settings = services.settings
    try:
        parent, manifest = chosen_parent(for_requests(services.storage), ask.parent["job_id"], ask.parent["index"])
        action, strength = check_action(ask.action, ask.strength)
        return request_from_parent(
            parent, manifest, action=action, strength=strength, prompt=ask.prompt,
            profile=cast(Profile, ask.profile), n=cast(int, ask.n), output=output, origin="http",
            force=bool(ask.force), requested_profile=cast(Profile | None, ask.requested_profile),
            profile_enforced=bool(settings.enforced_profile),
        )  # fmt: skip
    except ParentInvalid as exc:
        return error_response(400, str(exc), exc.code, [{"field": "from", "problem": str(exc)}])
    except StorageError as exc:
        return _storage_error(exc)


def _dry_request(upload: UploadRequest | EstimateRequest, output: OutputOptions) -> JobRequest:
    """The job an upload asks for, to estimate it: nothing is stored, so its source and id are placeholders."""
    count = upload.references if isinstance(upload, EstimateRequest) else len(upload.references)
    return JobRequest(
        job_id="http-" + "0" * 32, source=BlobRef(container="uploads", name="(not stored)"),
        prompt=upload.prompt if isinstance(upload, UploadRequest) else "(estimate)",
        profile=upload.profile_name, n=upload.count, mode=cast(Mode, upload.mode), origin="http",
        references=[Reference(image=BlobRef(container="uploads", name="(not stored)"), role="style")] * count,
        output=output,
    )  # fmt: skip


def _estimate(request: JobRequest, services: Services) -> dict[str, Any]:
    return estimate(request, services.settings, services.providers.paid())


def too_many_jobs_response(exc: TooManyJobs) -> func.HttpResponse:
    """429 `too_many_jobs`, with Retry-After in seconds and the numbers behind it."""
    body: dict[str, Any] = {"error": exc.message, "code": exc.code, "limit": exc.limit}
    if exc.running is not None:
        body["running"] = exc.running
    return _json(body, exc.http_status, {"Retry-After": str(exc.retry_after)})


async def post_variation(
    req: func.HttpRequest, client: JobClient, services: Services, caller: Caller | None = None
) -> func.HttpResponse:
    """Check the upload, take a place under the caller's limit, store the upload, start the job: 202.

    `caller` is who sent it: the local server passes its socket's peer (`caller_at_edge`); behind
    the Functions host it is read from the headers Azure's front end sets (`caller_behind_host`,
    which says which headers can be trusted where). Every refusal, the 429 included, comes before
    the upload is stored or a job is started.
    """
    checked = await asyncio.to_thread(_checked_upload, req, services.settings)
    if isinstance(checked, func.HttpResponse):
        return checked
    upload, fmt, output = checked
    lineage: JobRequest | None = None
    if isinstance(upload, LineageRequest):
        found = await asyncio.to_thread(_lineage_job, upload, output, services)
        if isinstance(found, func.HttpResponse):
            return found
        lineage = found
    if upload.dry_run:  # the cost before anything is stored or started
        asked = lineage if lineage is not None else _dry_request(cast(UploadRequest | EstimateRequest, upload), output)
        return _json({"dry_run": True, "estimate": _estimate(asked, services)})
    ticket: Ticket | None = None
    limit = services.settings.max_jobs_per_caller
    if limit:
        who = caller if caller is not None else caller_behind_host(req.headers, os.environ)
        try:
            ticket = await admit(for_requests(services.storage), client, who, limit)
        except TooManyJobs as exc:
            log.info("Refused a job from a %s caller %s: %s", who.kind, who.key, exc)
            return too_many_jobs_response(exc)
        except StorageError as exc:
            return _storage_error(exc)
    request: JobRequest | None = None
    try:
        if lineage is not None:
            stored: JobRequest | func.HttpResponse = lineage
        else:
            stored = await asyncio.to_thread(_store_upload, cast(UploadRequest, upload), str(fmt), output, services)
        if isinstance(stored, func.HttpResponse):
            if ticket is not None:
                await asyncio.to_thread(ticket.release)
            return stored
        request = stored
        if ticket is not None:
            await asyncio.to_thread(ticket.hold, request.job_id)  # counted from now on, before it starts
        created = await start_job(client, request)
    except StorageError as exc:
        if ticket is not None:
            await asyncio.to_thread(ticket.release)
        return _storage_error(exc, request.job_id if request is not None else None)
    status_url = f"{API_PREFIX}/{request.job_id}"
    body = {
        "job_id": request.job_id,
        "status_url": status_url,
        "created": created,
        "profile": request.profile,
        "profile_enforced": request.profile_enforced,
        "estimate": _estimate(request, services),
    }
    return _json(body, 202, {"Location": status_url})


def download_name(job_id: str, prompt: str, which: str, extension: str) -> str:
    """A file name that says what the image is: varia-{the prompt's first words}-{job}-{which}.{ext}."""
    ascii_words = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode().lower()
    words = re.findall(r"[a-z0-9]+", ascii_words)[:5]
    slug = "-".join(words)[:40].strip("-") or "image"
    short = job_id.split("-", 1)[-1][:8]
    return f"varia-{slug}-{short}-{which}.{extension}"


def _image_views(manifest: Manifest) -> list[dict[str, Any]]:
    job_id, request = manifest.job_id, manifest.request
    extension = "jpg" if request.output.format == "jpeg" else "png"
    views = []
    for v in manifest.variations:
        url = f"{API_PREFIX}/{job_id}/images/{v.index}" if v.status == "succeeded" else None
        views.append(
            {
                "index": v.index,
                "status": v.status,
                "reason": v.reason,
                "code": v.code,
                "url": url,
                "download_url": f"{url}?download=1" if url else None,
                "filename": download_name(job_id, request.prompt, str(v.index + 1), extension) if url else None,
            }
        )
    return views


def _manifest_view(manifest: Manifest) -> dict[str, Any]:
    job_id = manifest.job_id
    composition = manifest.composition
    request = manifest.request
    return {
        "job_id": job_id,
        "stage": "done",
        "status": manifest.status,
        "code": manifest.code,
        "message": manifest.message,
        "partial": manifest.partial,
        "done": len([v for v in manifest.variations if v.status == "succeeded"]),
        "total": manifest.request.n,
        "prompt": manifest.request.prompt,
        "profile": manifest.request.profile,
        "profile_enforced": manifest.request.profile_enforced,
        "requested_profile": manifest.request.requested_profile,
        "caption": manifest.caption.text if manifest.caption else None,
        "output_prompt": composition.output_prompt if composition else None,
        "subtasks": composition.subtasks.model_dump() if composition else None,
        "providers": manifest.providers,
        "source_url": f"{API_PREFIX}/{job_id}/images/source" if manifest.source else None,
        "images": _image_views(manifest),
        "manifest_url": f"{API_PREFIX}/{job_id}/images/manifest",
        "parent": request.parent.model_dump() if request.parent else None,
        "action": request.action,
        "strength": request.strength,
        "output": request.output.model_dump(),
        "paid_calls": manifest.paid_calls.model_dump(),
        "estimated_cost_usd": manifest.estimated_cost_usd,
    }


def _stored_manifest(services: Services, job_id: str) -> Manifest | None:
    try:  # a finished job has its manifest; the page polls this, so one storage call, not two
        manifest = Manifest.model_validate_json(for_requests(services.storage).get(OUTPUTS, manifest_name(job_id)))
    except BlobNotFound:
        return None
    _remember_prompt(job_id, manifest.request.prompt)  # for the file names of the images the page asks for next
    return manifest


def is_job_id_path(value: str) -> bool:
    """Whether a path segment is a job id, exactly: ASCII, no trailing newline (unlike re's `$`)."""
    return _JOB_ID.fullmatch(value) is not None


async def get_variation(job_id: str, client: JobClient, services: Services) -> func.HttpResponse:
    if not is_job_id_path(job_id):
        return _error(404, "No such job: job ids look like 'http-' followed by 32 hex digits.", "job_not_found")
    try:
        return await _variation_view(job_id, client, services)
    except StorageError as exc:
        return _storage_error(exc, job_id)


async def _variation_view(job_id: str, client: JobClient, services: Services) -> func.HttpResponse:
    manifest = await asyncio.to_thread(_stored_manifest, services, job_id)
    if manifest is not None:
        return _json(_manifest_view(manifest))
    state = await client.status(job_id)
    if state is None:
        return _error(404, f"No job {job_id}: check the id, or start the job again.", "job_not_found")
    progress = state.custom_status or {}
    if state.runtime_status == "Completed" and isinstance(state.output, dict) and state.output.get("code"):
        # Ended, but its manifest could not be stored (a full or read-only store): the outcome says why.
        return _json(_manifest_view(Manifest.model_validate(state.output)))
    if state.runtime_status in ("Failed", "Terminated"):
        return _json(
            {
                "job_id": job_id,
                "stage": "done",
                "status": "failed",
                "message": "The job stopped unexpectedly; send the image again with force=true.",
            }
        )
    stage, done = progress.get("stage", "queued"), progress.get("done", 0)
    previews: list[dict[str, Any]] = []
    if stage == "generating":
        # The orchestrator waits for a whole round at once; storage knows what is already drawn.
        done = max(done, await asyncio.to_thread(delivered_so_far, for_requests(services.storage), job_id))
        previews = await asyncio.to_thread(_previews, services, job_id)
    return _json(
        {
            "job_id": job_id,
            "stage": stage,
            "status": "running",
            "done": done,
            "total": progress.get("total", 0),
            "message": None,
            "previews": previews,
        }
    )


def _previews(services: Services, job_id: str) -> list[dict[str, Any]]:
    """The latest partial image of each variation being drawn (work/{job}/preview-{k}.png)."""
    found = []
    for name in for_requests(services.storage).list(WORK, f"{job_id}/preview-"):
        index = name.rsplit("-", 1)[-1].split(".", 1)[0]
        if _IMAGE_INDEX.fullmatch(index):
            found.append({"index": int(index), "url": f"{API_PREFIX}/{job_id}/images/preview-{index}"})
    return sorted(found, key=lambda p: p["index"])


async def cancel_variation(job_id: str, client: JobClient, services: Services) -> func.HttpResponse:
    """Cancel a running job: its remaining steps make no paid call, and it ends with code `cancelled`.

    Images already drawn are kept and delivered (the job is then partial). A job that has ended
    answers 409 `job_finished`; an unknown one 404.
    """
    if not is_job_id_path(job_id):
        return _error(404, "No such job: job ids look like 'http-' followed by 32 hex digits.", "job_not_found")
    try:
        if await asyncio.to_thread(_stored_manifest, services, job_id) is not None:
            return _error(409, f"Job {job_id} has already finished; nothing to cancel.", "job_finished")
        state = await client.status(job_id)
        if state is None:
            return _error(404, f"No job {job_id}: check the id.", "job_not_found")
        if state.runtime_status in ("Completed", "Failed", "Terminated"):
            return _error(409, f"Job {job_id} has already ended; nothing to cancel.", "job_finished")
        storage = for_requests(services.storage)
        await asyncio.to_thread(storage.put, WORK, cancel_name(job_id), b"cancelled", "text/plain")
    except StorageError as exc:
        return _storage_error(exc, job_id)
    status_url = f"{API_PREFIX}/{job_id}"
    return _json({"job_id": job_id, "cancelling": True, "status_url": status_url}, 202, {"Location": status_url})


def get_image(job_id: str, which: str, services: Services, download: bool = False) -> func.HttpResponse:
    """An image of a job (or its manifest), named for saving: inline, or an attachment when `download`."""
    if not is_job_id_path(job_id):
        return _error(404, "No such job: job ids look like 'http-' followed by 32 hex digits.", "job_not_found")
    if which == "manifest":
        container, name, mimetype = OUTPUTS, manifest_name(job_id), "application/json"
    elif which == "source":
        container, name, mimetype = WORK, source_name(job_id), "image/png"
    elif _IMAGE_INDEX.fullmatch(which):
        container, name, mimetype = OUTPUTS, variation_name(job_id, int(which)), "image/png"
    elif which.startswith("preview-") and _IMAGE_INDEX.fullmatch(which[8:]):
        container, name, mimetype = WORK, preview_name(job_id, int(which[8:])), "image/png"
    else:
        return _error(
            404,
            "Ask for 'source', 'manifest', a variation index from 0 to 9, or 'preview-' and one.",
            "image_not_found",
        )
    storage = for_requests(services.storage)
    try:
        info = storage.info(container, name)
        body = storage.get(container, name) if info is not None else b""
    except BlobNotFound:
        info = None
    except StorageError as exc:
        return _storage_error(exc, job_id)
    if info is None:
        return _error(404, f"Job {job_id} has no {which} (yet): wait for the job to finish.", "image_not_found")
    content_type = info.content_type or mimetype
    # A preview is overwritten as partial images arrive: never cached.
    cache = "no-store" if which.startswith("preview-") else "private, max-age=3600"
    headers = {"Cache-Control": cache, "ETag": info.etag, "X-Content-Type-Options": "nosniff"}
    extension = {"application/json": "json", "image/jpeg": "jpg"}.get(content_type, "png")
    shown = "manifest" if which == "manifest" else "source" if which == "source" else which
    shown = str(int(which) + 1) if _IMAGE_INDEX.fullmatch(which) else shown
    filename = download_name(job_id, _prompt_of(storage, job_id), shown, extension)
    headers["Content-Disposition"] = f'{"attachment" if download else "inline"}; filename="{filename}"'
    return func.HttpResponse(body, status_code=200, mimetype=content_type, headers=headers)


# The prompts of finished jobs, for their images' file names. A manifest is written when its job ends,
# and a job id stands for one request (its prompt and options, or one blob version: shared/core/jobs.py),
# so a prompt kept here stays true.
# The page loads every image of a job, and the thumbnails of its history, one request each: they read
# the job's manifest once per process at most, and not at all after the status that showed the job.
_PROMPTS_KEPT = 1024
_prompts: dict[str, str] = {}
_prompts_lock = threading.Lock()


def _remember_prompt(job_id: str, prompt: str) -> None:
    with _prompts_lock:
        if job_id not in _prompts and len(_prompts) >= _PROMPTS_KEPT:
            del _prompts[next(iter(_prompts))]  # the oldest kept
        _prompts[job_id] = prompt


def _prompt_of(storage: Any, job_id: str) -> str:
    """The job's prompt for a file name, from its manifest ("" while it runs, or when it has none)."""
    with _prompts_lock:
        kept = _prompts.get(job_id)
    if kept is not None:
        return kept
    try:
        manifest = Manifest.model_validate_json(storage.get(OUTPUTS, manifest_name(job_id)))
    except (BlobNotFound, StorageError, ValueError):
        return ""
    _remember_prompt(job_id, manifest.request.prompt)
    return manifest.request.prompt
