"""Fake Azure OpenAI + Azure AI Vision server on 127.0.0.1 that the real SDKs talk to over HTTP in tests.

Start it with ``with FakeAzureAI() as fake:`` and point the clients at it::

    openai.OpenAI(base_url=fake.openai_base_url, api_key="test-key")
    ImageAnalysisClient(endpoint=fake.vision_endpoint, credential=AzureKeyCredential("k"))

Every request is recorded in ``fake.calls`` (a ``Call`` each, in arrival order) just before its answer is sent, so
it is already there when the SDK call returns.  A call records what was asked (``model``, and for images ``size`` and
``quality``) and whether Azure would bill it (``billed``; ``fake.billed(route)`` counts them, ``fake.paid(route)``
counts 2xx answers).  Tests steer the fake with ``latency``, ``fail_next`` (queued faults with Azure's wire shapes:
every fault and the routes it applies to are in FAULT_ROUTES, each shape in ``_fault_reply`` with its source),
``limit_images`` (a rate limit), ``hold`` (calls left in flight until ``release()``), and the reply knobs
``caption_text``, ``tags``, ``compose_reply`` and ``image_size_override``.  Image calls also log their rendering
options (``input_fidelity``, ``output_format``, ``output_compression``, ``background``, ``stream``,
``partial_images``); JPEG is answered as JPEG, and a call with ``stream`` answers ``text/event-stream`` in OpenAI's
wire format (``_stream_events``): coarse partial images, then the completed image, ``latency`` spread across them.
The ``mid-stream`` fault ends such a stream with an error event (or a dropped connection) after some partials.
``reset()`` puts all of that back to the defaults.  Image sizes are checked as Azure checks them: the three
gpt-image-1 sizes, or the gpt-image-2 rules for a deployment whose name contains "gpt-image-2".

How one request is handled (``_Handler._serve``): read the body -> pick the route -> check the credentials ->
count the arrival (``arrived``) and wait while it is held -> wait ``latency[route]`` (a stream spreads it across its
events instead) -> apply the next queued fault for the route, if any -> apply the image rate limit -> answer the
route.  Standard library only, plus Pillow for the images.
"""

from __future__ import annotations

import base64
import bisect
import io
import json
import logging
import math
import select
import socket
import socketserver
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from PIL import Image, ImageOps

log = logging.getLogger(__name__)

ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/openai/v1/chat/completions"): "chat",
    ("POST", "/openai/v1/images/generations"): "images.generate",
    ("POST", "/openai/v1/images/edits"): "images.edit",
    ("POST", "/computervision/imageanalysis:analyze"): "vision.analyze",
}
IMAGE_ROUTES = frozenset({"images.generate", "images.edit"})
OPENAI_ROUTES = frozenset({"chat", *IMAGE_ROUTES})
VISION_ROUTES = frozenset({"vision.analyze"})
ALL_ROUTES = OPENAI_ROUTES | VISION_ROUTES

# Every fault `fail_next` knows, and the routes it applies to (the shapes are in _fault_reply, each with its source).
FAULT_ROUTES: dict[str, frozenset[str]] = {
    # any route
    "429": ALL_ROUTES,  # retry-after (seconds) only
    "429-ms": ALL_ROUTES,  # retry-after-ms only
    "500": ALL_ROUTES,
    "502": ALL_ROUTES,
    "503": ALL_ROUTES,
    "504": ALL_ROUTES,
    "401": ALL_ROUTES,  # wrong key or endpoint
    "permission": ALL_ROUTES,  # PermissionDenied: the principal lacks the role (401; status=403 for the 403 form)
    "403": ALL_ROUTES,  # network rules deny the caller
    "404": ALL_ROUTES,  # OpenAI: DeploymentNotFound; Vision: resource not found
    "timeout": ALL_ROUTES,
    "reset": ALL_ROUTES,
    "malformed": ALL_ROUTES,
    # Azure OpenAI
    "429-full": OPENAI_ROUTES,  # retry-after, retry-after-ms and the x-ratelimit-* headers
    "403-blocked": OPENAI_ROUTES,  # the resource is temporarily blocked after repeated policy violations
    # chat
    "content_filter": frozenset({"chat"}),  # 400: the prompt was filtered
    "content_filter-200": frozenset({"chat"}),  # 200: the completion was filtered (finish_reason content_filter)
    "refusal": frozenset({"chat"}),  # 200: a structured-outputs refusal (message.refusal)
    "length": frozenset({"chat"}),  # 200: a reasoning model spent the whole budget on reasoning; empty content
    "empty": frozenset({"chat"}),  # 200: empty content, finish_reason stop
    # images
    "no-image": IMAGE_ROUTES,
    "content_policy_violation": IMAGE_ROUTES,
    "contentFilter": IMAGE_ROUTES,
    "moderation_blocked": IMAGE_ROUTES,
    "minor": frozenset({"images.edit"}),  # edits of photos of minors are refused by default
    # A failure after the stream has started (200, some partial images sent): options error=<another fault, the
    # failure's body: "500" by default; "reset" drops the connection>, after=<partial images sent first, 1>,
    # shape="nested" ({"type": "error", "error": {...}}, the default) or "flat" (the error's fields at the top).
    # A call that does not stream gets the error's own HTTP answer instead.
    "mid-stream": IMAGE_ROUTES,
    # AI Vision
    "InvalidImageSize": VISION_ROUTES,
    "NotSupportedImage": VISION_ROUTES,
    "no-caption": VISION_ROUTES,  # 200 without captionResult
}
FAULTS = frozenset(FAULT_ROUTES)
RATE_LIMIT_FAULT = "rate-limit"  # Call.fault of a 429 produced by limit_images()

# What Azure bills, as the fake models it (a test can override it per fault: fail_next(..., billed=True)):
# - every 200 answer is billed, whatever it holds: Microsoft bills a filtered completion (finish_reason
#   content_filter) like any other, and a refusal, a reasoning-starved or empty completion, a 200 without an image
#   or caption, or a body broken on the way back were all produced (and metered) by the service;
# - a 4xx or 5xx answer is not billed (a prompt refused by the input filter never reaches the model);
# - a call the client gave up on ("timeout") is billed: the service does not cancel a non-streaming generation when
#   the client hangs up, it finishes and meters it.  Microsoft does not document this; it is the conservative choice
#   for "nothing is paid twice" (an image call that timed out and is retried may be paid for twice);
# - a reset connection ("reset") is not billed: the fake models a connection dropped in front of the service, before
#   the model ran.  Pass billed=True to model a reset after the work was done.
BILLED_FAULTS = frozenset(
    {"timeout", "malformed", "no-image", "no-caption", "content_filter-200", "refusal", "length", "empty"}
)

DEFAULT_CAPTION = "a dog sitting on a green lawn"
DEFAULT_TAGS = ("dog", "grass", "outdoor")
DEFAULT_IMAGE_SIZE = (1024, 1024)  # what size "auto" (or no size) gives
DEFAULT_MAX_COMPLETION_TOKENS = 4096  # the budget a "length" answer spends when the request names none
REGION = "East US 2"

# GPT-image sizes.  gpt-image-1, -1-mini and -1.5 take three sizes (Microsoft, "How to use Azure OpenAI image
# generation models", articles/ai-foundry/openai/how-to/dall-e.md: "Must be one of 1024x1024, 1024x1536, or
# 1536x1024").  gpt-image-2 takes any WxH with both edges multiples of 16, a ratio of at most 3:1, 655,360 to
# 8,294,400 pixels and a long edge of at most 3,840 (the same page's gpt-image-2 column and the model retirement
# table; see shared/FACTS.md "Models, quota, prices").  The fake tells them apart by the deployment name (the
# request's `model` on the v1 endpoint): a name containing "gpt-image-2" gets the gpt-image-2 rules.
GPT_IMAGE_1_SIZES = ("1024x1024", "1024x1536", "1536x1024")
GPT_IMAGE_2_PIXELS = (655_360, 8_294_400)
GPT_IMAGE_2_MAX_RATIO = 3
GPT_IMAGE_2_MAX_EDGE = 3840
GPT_IMAGE_QUALITIES = ("low", "medium", "high", "auto")
# Rendering options of the Images API as Azure takes them (the openai SDK's images.edit / images.generate reference;
# Azure outputs PNG or JPEG, not WEBP, see shared/FACTS.md): output_compression 0-100 and for JPEG only, a transparent
# background only where the format has alpha (PNG), partial_images 0-3 (previews of a streamed image).
GPT_IMAGE_FORMATS = ("png", "jpeg")
GPT_IMAGE_BACKGROUNDS = ("transparent", "opaque", "auto")
GPT_IMAGE_MAX_PARTIALS = 3

ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "
    "active subscription and use a correct regional API endpoint for your resource."
)


def _categories(**filtered: str) -> dict[str, Any]:
    """Content-filter results for the four harm categories: safe unless named (category="severity": filtered)."""
    return {
        name: {"filtered": name in filtered, "severity": filtered.get(name, "safe")}
        for name in ("hate", "self_harm", "sexual", "violence")
    }


# Chat, prompt filtered: 400 content_filter.  Microsoft, "Content filtering" (concepts/content-filter.md, scenario
# "inappropriate input prompt") documents the outer fields; the innererror with content_filter_result (singular)
# is what Azure sends, e.g. Azure-Samples/chat-with-your-data-solution-accelerator#1529 and simonw/research#16.
CHAT_CONTENT_FILTER: dict[str, Any] = {
    "error": {
        "message": (
            "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please "
            "modify your prompt and retry. To learn more about our content filtering policies please read our "
            "documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
        ),
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {
                **_categories(violence="medium"),
                "jailbreak": {"filtered": False, "detected": False},
            },
        },
    }
}
# Images, prompt filtered: 400 content_policy_violation.  The Azure OpenAI inference spec's dalleErrorResponse
# (error.code, message, param, type, inner_error {code ResponsibleAIPolicyViolation, content_filter_results,
# revised_prompt}); note `inner_error` with an underscore, unlike chat's `innererror`.
CONTENT_POLICY_VIOLATION: dict[str, Any] = {
    "error": {
        "code": "content_policy_violation",
        "inner_error": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_results": _categories(violence="high"),
        },
        "message": (
            "Your request was rejected as a result of our safety system. Your prompt may contain text that is not "
            "allowed by our safety system."
        ),
        "param": None,
        "type": "invalid_request_error",
    }
}
OPERATION_NAMES = {
    "chat": "ChatCompletions_Create",
    "images.generate": "Images_Generate",
    "images.edit": "Images_Edit",
    "vision.analyze": "ImageAnalysis_Analyze",
}

ComposeReply = Callable[[list[dict[str, Any]]], dict[str, Any]]


_NOT_COUNTED = object()  # Call.quota_key of a call no image quota counted


@dataclass
class Call:
    """One request the fake received, and what it answered."""

    route: str  # "chat", "images.generate", "images.edit", "vision.analyze" or "unknown"
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    json: Any | None  # parsed JSON body for JSON requests
    form: dict[str, str]  # multipart text fields (images.edit)
    files: dict[str, list[bytes]]  # multipart files by field name; vision.analyze: the raw body under "body"
    status: int  # status code answered (0 if no response was sent: "reset", or the client hung up first)
    started: float  # time.monotonic() at arrival
    finished: float  # time.monotonic() when answered
    fault: str | None  # fault applied, if any ("rate-limit" for a 429 from limit_images)
    request_id: str = ""  # the apim-request-id / x-request-id the answer carries
    model: str | None = None  # the request's `model` (the deployment name on the v1 endpoint)
    size: str | None = None  # image calls: the size asked for, as sent ("1536x1024", "auto"), None if not sent
    quality: str | None = None  # image calls: the quality asked for, None if not sent
    # Image calls: the rendering options as sent (None if not sent).
    input_fidelity: str | None = None
    output_format: str | None = None
    output_compression: str | None = None
    background: str | None = None
    stream: bool = False  # the call asked for a stream (stream=true)
    partial_images: str | None = None
    events: list[str] = field(default_factory=list)  # a stream's events, in the order they are sent
    fault_options: dict[str, Any] = field(default_factory=dict, repr=False)  # the options of `fault`
    billed: bool = False  # whether Azure would bill this call (see BILLED_FAULTS)
    quota_key: Any = field(default=_NOT_COUNTED, repr=False)  # the image quota that counted it, if any
    counted: float = 0.0  # time.monotonic() of the arrival an image quota counted (0.0: not counted)


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    # A stream instead of `body`: (seconds to wait first, SSE event name, data) per event; the name "reset" drops
    # the connection there instead.
    events: list[tuple[float, str, dict[str, Any]]] | None = None


def _json_reply(status: int, obj: Any, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(obj).encode(), headers or {})


def _error(status: int, code: str, message: str, **extra: Any) -> _Reply:
    return _json_reply(status, {"error": {"code": code, "message": message, **extra}})


def _rate_limited(route: str, headers: dict[str, str], seconds: float) -> _Reply:
    wait = max(1, math.ceil(seconds))
    if route in VISION_ROUTES:
        # The API Management throttling answer of Azure AI services (Computer Vision, Face...), as observed.
        return _json_reply(
            429, {"error": {"code": "429", "message": f"Rate limit is exceeded. Try again in {wait} seconds."}}, headers
        )
    # Azure OpenAI's 429, as observed (e.g. learn.microsoft.com/answers/questions/2140040).
    message = (
        f"Requests to the {OPERATION_NAMES.get(route, route)} Operation under Azure OpenAI API version v1 have "
        f"exceeded rate limit of your current AIServices S0 pricing tier. "
        f"Please retry after {wait} second(s)."
    )
    return _json_reply(429, {"error": {"code": "429", "message": message}}, headers)


def _completion(
    call: Call, message: dict[str, Any], finish_reason: str, completion_tokens: int, reasoning_tokens: int = 0
) -> dict[str, Any]:
    """An Azure chat completion: one choice, the filter annotations Azure adds, usage with the token details."""
    body: dict[str, Any] = call.json if isinstance(call.json, dict) else {}
    raw_messages = body.get("messages")
    messages: list[Any] = raw_messages if isinstance(raw_messages, list) else []
    prompt_tokens = 10 + sum(len(_text_of(m.get("content")).split()) for m in messages if isinstance(m, dict))
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "gpt-4o")),
        "system_fingerprint": "fp_fake",
        "prompt_filter_results": [
            {
                "prompt_index": 0,
                "content_filter_results": {**_categories(), "jailbreak": {"filtered": False, "detected": False}},
            }
        ],
        "choices": [
            {
                "index": 0,
                "finish_reason": finish_reason,
                "logprobs": None,
                "message": {"role": "assistant", "refusal": None, "annotations": [], **message},
                "content_filter_results": _categories(),
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0},
            "completion_tokens_details": {
                "accepted_prediction_tokens": 0,
                "audio_tokens": 0,
                "reasoning_tokens": reasoning_tokens,
                "rejected_prediction_tokens": 0,
            },
        },
    }


def _token_budget(call: Call) -> int:
    body = call.json if isinstance(call.json, dict) else {}
    budget = body.get("max_completion_tokens") or body.get("max_tokens")
    return budget if isinstance(budget, int) and budget > 0 else DEFAULT_MAX_COMPLETION_TOKENS


def _fault_reply(call: Call, fault: str, options: dict[str, Any]) -> _Reply | None:
    """The answer for a queued fault; None means drop the connection ("reset")."""
    route = call.route
    if fault == "reset":
        return None
    # -- throttling.  retry-after / retry-after-ms / x-ratelimit-*: Microsoft, "Azure OpenAI quotas and limits"
    # (how-to/quota.md) and the openai SDK's _calculate_retry_timeout, which reads retry-after-ms first.
    if fault == "429":
        seconds = options.get("retry_after", 1)
        return _rate_limited(route, {"retry-after": str(seconds)}, float(seconds))
    if fault == "429-ms":
        ms = options.get("retry_after_ms", 200)
        return _rate_limited(route, {"retry-after-ms": str(ms)}, float(ms) / 1000)
    if fault == "429-full":
        ms = int(options.get("retry_after_ms", 1000))
        headers = {
            "retry-after": str(max(1, math.ceil(ms / 1000))),
            "retry-after-ms": str(ms),
            "x-ratelimit-limit-requests": str(options.get("limit_requests", 6)),
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-limit-tokens": str(options.get("limit_tokens", 6000)),
            "x-ratelimit-remaining-tokens": str(options.get("remaining_tokens", 0)),
        }
        return _rate_limited(route, headers, ms / 1000)
    # -- server side.  Microsoft documents no body for these; the shapes are the {"error": {code, message}} Azure
    # answers with, as observed ("The operation was timeout." is Azure OpenAI's gateway timeout text).
    if fault == "500":
        return _error(500, "InternalServerError", "The server had an error while processing your request. Sorry!")
    if fault == "502":
        return _error(502, "BadGateway", "The service received an invalid response from the upstream server.")
    if fault == "503":
        return _error(503, "ServiceUnavailable", "The service is temporarily unable to process your request.")
    if fault == "504":
        return _error(504, "Timeout", "The operation was timeout.")
    # -- credentials and configuration
    if fault == "401":
        return _error(401, "401", ACCESS_DENIED)
    if fault == "permission":
        # Keyless (Entra ID) caller without the role: "Principal does not have access to API/Operation." with code
        # PermissionDenied, answered as 401 (MicrosoftDocs/azure-docs#114370, microsoft/semantic-kernel#10020,
        # Azure-Samples/azure-ai-studio-secure-bicep#17).  status=403 gives the same body with a 403.
        status = int(options.get("status", 401))
        return _error(status, "PermissionDenied", "Principal does not have access to API/Operation.")
    if fault == "403":
        # Network rules deny the caller (Azure-Samples/azure-sql-db-chatbot#3; "Configure Virtual Networks for Azure
        # AI services").
        return _error(403, "403", "Access denied due to Virtual Network/Firewall rules.")
    if fault == "403-blocked":
        # Repeated policy violations: the resource (not the caller) is blocked for a while; an administrator must act
        # (pollinations/pollinations#8837, #9319, #12446: every prompt fails until Azure lifts the block).
        message = (
            "Your resource has been temporarily blocked because we detected behavior that may violate our content "
            "policy. For more details on Azure OpenAI service content policy, please visit "
            "https://aka.ms/aoaicodeofconduct"
        )
        return _error(403, "Forbidden", message)
    if fault == "404":
        if route in VISION_ROUTES:
            return _error(404, "404", "Resource not found")
        # Wrong deployment name (microsoft/azure-openai-in-a-day-workshop#8, Azure/openai-at-scale#48).
        message = (
            "The API deployment for this resource does not exist. If you created the deployment within the last 5 "
            "minutes, please wait a moment and try again."
        )
        return _error(404, "DeploymentNotFound", message)
    # -- broken answers
    if fault == "malformed":
        return _Reply(200, b'{"id": "chatcmpl-broken", "choices": [ <<not json')
    if fault == "no-image":
        return _json_reply(200, {"created": int(time.time()), "data": []})
    # -- chat "no" answers
    if fault == "content_filter":
        return _json_reply(400, CHAT_CONTENT_FILTER)
    if fault == "content_filter-200":
        # The completion was filtered: content null, finish_reason content_filter, the filtered category in the
        # choice's content_filter_results (Microsoft, "Content filtering", concepts/content-filter.md: "Non-streaming
        # completions calls don't return any content when the content is filtered"; content-filter-annotations.md for
        # the annotation fields).  Billed like any completion.
        completion = _completion(call, {"content": None}, "content_filter", completion_tokens=12)
        completion["choices"][0]["content_filter_results"] = _categories(sexual="medium")
        return _json_reply(200, completion)
    if fault == "refusal":
        # Structured outputs: the model declines and says so in message.refusal; content is null (OpenAI, "Structured
        # Outputs", refusals; Microsoft, how-to/structured-outputs.md).
        refusal = str(options.get("refusal", "I'm sorry, I can't help with that request."))
        return _json_reply(200, _completion(call, {"content": None, "refusal": refusal}, "stop", completion_tokens=9))
    if fault == "length":
        # A reasoning model spends max_completion_tokens on reasoning and has nothing left for the answer: empty
        # content, finish_reason length, completion_tokens == reasoning_tokens (Microsoft, how-to/reasoning.md:
        # max_completion_tokens covers reasoning tokens; OpenAI, "Reasoning models", allocating space for reasoning).
        budget = _token_budget(call)
        completion = _completion(call, {"content": ""}, "length", completion_tokens=budget, reasoning_tokens=budget)
        return _json_reply(200, completion)
    if fault == "empty":
        return _json_reply(200, _completion(call, {"content": ""}, "stop", completion_tokens=0))
    # -- image "no" answers
    if fault == "content_policy_violation":
        return _json_reply(400, CONTENT_POLICY_VIOLATION)
    if fault == "contentFilter":
        # Microsoft, how-to/dall-e.md, "API call rejection": the prompt, or with stage="output" the generated image.
        message = (
            "Generated image was filtered as a result of our safety system."
            if options.get("stage") == "output"
            else "Your task failed as a result of our safety system."
        )
        return _json_reply(400, {"created": int(time.time()), "error": {"code": "contentFilter", "message": message}})
    if fault == "moderation_blocked":
        # GPT-image's own moderation (input or output), as Azure relays it for gpt-image-2 (jeffstric/ZJT#480; the
        # same fields as OpenAI's, GooeyAI/gooey-server#1091): type image_generation_user_error.
        categories = options.get("categories", ["violence"])
        message = (
            "Your request was rejected by the safety system. If you believe this is an error, contact us at Azure "
            f"support ticket and include the request ID {call.request_id}. safety_violations=[{', '.join(categories)}]."
        )
        error = {"message": message, "type": "image_generation_user_error", "param": None, "code": "moderation_blocked"}
        return _json_reply(400, {"error": error})
    if fault == "minor":
        # Azure refuses edits of photos of minors unless the customer is approved ("Certain Enterprise Agreement (EA)
        # customers ... may also be eligible to enable photo transformations (i.e. applying image edits) to images
        # containing minors. If you're approved, such images will not be automatically blocked", how-to/dall-e.md;
        # the gpt-image-1 model card blocks "image input with photorealistic depictions of minors").  The exact
        # answer is not documented: modelled as the content-policy 400 with a message naming the minor.
        body = json.loads(json.dumps(CONTENT_POLICY_VIOLATION))
        body["error"]["message"] = (
            "Your request was rejected as a result of our safety system. The input image contains a photorealistic "
            "depiction of a minor, and editing images of minors is not enabled for this resource."
        )
        body["error"]["param"] = "image"
        body["error"]["inner_error"]["content_filter_results"] = _categories()
        return _json_reply(400, body)
    # -- AI Vision (Image Analysis 4.0).  The error body of the REST API and azure-ai-vision-imageanalysis:
    # {"error": {"code": "InvalidRequest", "message", "innererror": {"code", "message"}}} (learn.microsoft.com/answers
    # /questions/1688452 shows InvalidImageSize verbatim; the inner codes are the ComputerVisionInnerError list).
    if fault == "InvalidImageSize":
        message = "The image dimension is not allowed to be smaller than 50 and larger than 16000."
        return _error(400, "InvalidRequest", message, innererror={"code": "InvalidImageSize", "message": message})
    if fault == "NotSupportedImage":
        message = "The input image is not supported."  # the inner code is documented, this text is not
        return _error(400, "InvalidRequest", message, innererror={"code": "NotSupportedImage", "message": message})
    raise AssertionError(f"unhandled fault {fault!r}")


def _has_credentials(headers: dict[str, str]) -> bool:
    bearer = headers.get("authorization", "")
    return bool(
        headers.get("api-key") or headers.get("ocp-apim-subscription-key") or bearer.lower().startswith("bearer ")
    )


def _parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], dict[str, list[bytes]]]:
    """Split a multipart/form-data body into its text fields and its file parts (those with a filename)."""
    form: dict[str, str] = {}
    files: dict[str, list[bytes]] = {}
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        return form, files
    for part in body.split(b"--" + boundary.encode()):
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, sep, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            continue  # the preamble
        content = content.removesuffix(b"\r\n")
        disposition: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-disposition":
                for item in value.split(";")[1:]:
                    k, _, v = item.strip().partition("=")
                    disposition[k.lower()] = v.strip('"')
        if "filename" in disposition:
            files.setdefault(disposition.get("name", ""), []).append(content)
        else:
            form[disposition.get("name", "")] = content.decode("utf-8", "replace")
    return form, files


def _parse_size(value: Any, model: str) -> tuple[int, int] | str:
    """ "1536x1024" -> (1536, 1024); "auto" or missing -> the default; a size the model refuses -> Azure's message.

    The rules are GPT_IMAGE_1_SIZES, or the gpt-image-2 rules when the deployment name contains "gpt-image-2".
    OpenAI answers an unsupported gpt-image-1 size with this message; the gpt-image-2 text is the fake's own.
    """
    if value in (None, "", "auto"):
        return DEFAULT_IMAGE_SIZE
    text = str(value)
    width_text, sep, height_text = text.partition("x")
    parsed = (int(width_text), int(height_text)) if sep and width_text.isdigit() and height_text.isdigit() else None
    if "gpt-image-2" not in model:
        if text in GPT_IMAGE_1_SIZES and parsed is not None:
            return parsed
        return f"Invalid value: '{text}'. Supported values are: 'auto', '1024x1024', '1024x1536', and '1536x1024'."
    if parsed is None:
        return f"Invalid size '{text}'. The size must be 'auto' or WIDTHxHEIGHT."
    width, height = parsed
    low, high = GPT_IMAGE_2_PIXELS
    problems = [
        "both edges must be multiples of 16" if width % 16 or height % 16 else "",
        f"the aspect ratio must be at most {GPT_IMAGE_2_MAX_RATIO}:1"
        if max(width, height) > GPT_IMAGE_2_MAX_RATIO * min(width, height)
        else "",
        f"the image must have between {low:,} and {high:,} pixels" if not low <= width * height <= high else "",
        f"the long edge must be at most {GPT_IMAGE_2_MAX_EDGE} px" if max(width, height) > GPT_IMAGE_2_MAX_EDGE else "",
    ]
    reasons = [p for p in problems if p]
    return f"Invalid size '{text}': {'; '.join(reasons)}." if reasons else parsed


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and str(value).strip() != "" else None
    except (TypeError, ValueError):
        return None


def _flag(value: Any) -> bool | None:
    """A boolean parameter as sent: JSON true/false, or "true"/"false" in a multipart form; None if neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _encode(image: Image.Image, fmt: str, compression: int | None, transparent: bool) -> bytes:
    """The image in the format asked: PNG (with a transparent border as its background when asked), or JPEG at
    output_compression (100 = the least compressed, the API's default)."""
    if fmt == "jpeg":
        out = io.BytesIO()
        quality = max(1, min(95, compression if compression is not None else 95))
        image.convert("RGB").save(out, format="JPEG", quality=quality)
        return out.getvalue()
    if transparent:
        image = image.convert("RGBA")
        alpha = Image.new("L", image.size, 0)
        band_w, band_h = max(1, image.width // 8), max(1, image.height // 8)
        alpha.paste(
            255, (band_w, band_h, max(band_w + 1, image.width - band_w), max(band_h + 1, image.height - band_h))
        )
        image.putalpha(alpha)
    return _png(image)


def _coarse(image: Image.Image, factor: int) -> Image.Image:
    """A preview of `image`: drawn `factor` times coarser, then blurred back to its size."""
    small = image.resize((max(1, image.width // factor), max(1, image.height // factor)), Image.Resampling.BOX)
    return small.resize(image.size, Image.Resampling.BILINEAR)


def _check_rendering(params: dict[str, Any]) -> _Reply | None:
    """The 400 Azure answers for rendering options it does not take (output_format, output_compression,
    background, stream, partial_images), or None.  The messages follow the API's invalid_value answers."""

    def invalid(param: str, message: str) -> _Reply:
        return _error(400, "invalid_value", message, param=param, type="invalid_request_error")

    fmt = params.get("output_format")
    if fmt is not None and fmt not in GPT_IMAGE_FORMATS:
        return invalid("output_format", f"Invalid value: '{fmt}'. Supported values are: 'png' and 'jpeg'.")
    compression = params.get("output_compression")
    if compression is not None:
        level = _int_or_none(compression)
        if level is None or not 0 <= level <= 100:
            return invalid("output_compression", f"Invalid 'output_compression': {compression!r}. Must be 0-100.")
        if fmt != "jpeg":
            return invalid("output_compression", "output_compression is only supported for the jpeg output format.")
    background = params.get("background")
    if background is not None and background not in GPT_IMAGE_BACKGROUNDS:
        message = f"Invalid value: '{background}'. Supported values are: 'transparent', 'opaque', and 'auto'."
        return invalid("background", message)
    if background == "transparent" and fmt == "jpeg":
        return invalid("background", "Transparent background is not supported for the jpeg output format.")
    stream = params.get("stream")
    if stream is not None and _flag(stream) is None:
        return invalid("stream", f"Invalid 'stream': {stream!r}. Expected a boolean.")
    partials = params.get("partial_images")
    if partials is not None:
        count = _int_or_none(partials)
        if count is None or not 0 <= count <= GPT_IMAGE_MAX_PARTIALS:
            message = f"Invalid 'partial_images': {partials!r}. Value must be between 0 and {GPT_IMAGE_MAX_PARTIALS}."
            return invalid("partial_images", message)
    return None


def _text_of(content: Any) -> str:
    """The text of a chat message's content (a string, or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


class FakeAzureAI:
    """The fake service: state, knobs and the log. The HTTP side is in _Handler below."""

    def __init__(self) -> None:
        self.url = ""
        self.openai_base_url = ""
        self.vision_endpoint = ""
        self.calls: list[Call] = []
        self.latency: dict[str, float] = {}
        self.caption_text = DEFAULT_CAPTION
        self.tags: list[str] = list(DEFAULT_TAGS)
        self.compose_reply: ComposeReply | None = None
        self.image_size_override: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._faults: dict[str, deque[tuple[str, dict[str, Any]]]] = {}
        # Image quota, per deployment (None: every deployment together): (requests, window_s, per_image).
        self._limits: dict[str | None, tuple[int, float, bool]] = {}
        # Per quota: (arrival time, images counted) of the image calls let through, newest last.
        self._granted: dict[str | None, deque[tuple[float, int]]] = {}
        self._images_made = 0
        self._arrivals: dict[str, int] = {}
        self._holds: dict[str, set[int]] = {}
        self._release = threading.Event()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> FakeAzureAI:
        if self._server is not None:
            raise RuntimeError("FakeAzureAI is already running")
        self._stopping.clear()
        self._server = _Server(self)
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self.openai_base_url = f"{self.url}/openai/v1/"
        self.vision_endpoint = self.url
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-azure-ai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in latency or a "timeout" fault
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeAzureAI:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- knobs -----------------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Clear the log, queued faults, latency, the rate limit and every reply override."""
        with self._lock:
            self.calls.clear()
            self._faults.clear()
            self._limits.clear()
            self._granted.clear()
            self._arrivals.clear()
            self._holds.clear()
            self._release.set()  # lets any held call go
            self._release = threading.Event()
        self.latency.clear()
        self.caption_text = DEFAULT_CAPTION
        self.tags = list(DEFAULT_TAGS)
        self.compose_reply = None
        self.image_size_override = None

    def fail_next(self, route: str, fault: str, times: int = 1, **options: Any) -> None:
        """Answer the next `times` requests on `route` with `fault` (queued per route, first in first out).

        FAULT_ROUTES lists the faults and where each applies.  Options: retry_after (429), retry_after_ms (429-ms,
        429-full), seconds (timeout), status (permission: 401 or 403), refusal (refusal: the text), stage="output"
        (contentFilter: the generated image was filtered), categories (moderation_blocked), and billed (any fault:
        whether Azure bills the call, overriding BILLED_FAULTS).
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {sorted(FAULTS)}")
        if route not in OPERATION_NAMES:
            raise ValueError(f"unknown route {route!r}; known: {sorted(OPERATION_NAMES)}")
        if route not in FAULT_ROUTES[fault]:
            raise ValueError(f"the {fault!r} fault only applies to {sorted(FAULT_ROUTES[fault])}")
        with self._lock:
            queue = self._faults.setdefault(route, deque())
            queue.extend((fault, dict(options)) for _ in range(times))

    def limit_images(
        self, requests: int, window_s: float, *, deployment: str | None = None, per_image: bool = False
    ) -> None:
        """Allow at most `requests` image calls (generate + edit) in any `window_s` seconds (a sliding window).

        Counted when a call arrives, as Azure does. `deployment` limits that deployment alone (the
        `model` a call names), as each Azure deployment has its own quota; None counts every call
        together. `per_image` counts a call of n images as n (as if the quota counted images).
        """
        if requests < 1 or window_s <= 0:
            raise ValueError("limit_images needs requests >= 1 and window_s > 0")
        with self._lock:
            self._limits[deployment] = (requests, window_s, per_image)
            self._granted[deployment] = deque()

    def hold(self, route: str, *numbers: int) -> None:
        """Leave these arrivals on `route` (1 = the first call) unanswered until `release()`: calls in flight."""
        if route not in OPERATION_NAMES:
            raise ValueError(f"unknown route {route!r}; known: {sorted(OPERATION_NAMES)}")
        with self._lock:
            self._holds.setdefault(route, set()).update(numbers)

    def release(self) -> None:
        """Answer every held call (to a client still waiting, or to nobody)."""
        with self._lock:
            self._release.set()
            self._release = threading.Event()

    # -- the log ---------------------------------------------------------------------------------------------------
    def arrived(self, route: str) -> int:
        """Calls received on a route, held and unanswered ones included (``calls`` logs a call once answered)."""
        with self._lock:
            return self._arrivals.get(route, 0)

    def count(self, route: str) -> int:
        """Calls (every attempt, faulted ones included) for a route."""
        with self._lock:
            return sum(1 for c in self.calls if c.route == route)

    def paid(self, route: str) -> int:
        """Successful (2xx) calls for a route."""
        with self._lock:
            return sum(1 for c in self.calls if c.route == route and 200 <= c.status < 300)

    def billed(self, route: str) -> int:
        """Calls Azure would bill for a route (``Call.billed``): every 200, whatever it holds, and every call the
        client gave up on; no 4xx or 5xx.  See BILLED_FAULTS."""
        with self._lock:
            return sum(1 for c in self.calls if c.route == route and c.billed)

    def wait_calls(self, route: str, n: int, timeout: float = 2.0) -> bool:
        """Wait until `count(route) >= n`; for calls the client gave up on (timeouts), which finish a bit later."""
        deadline = time.monotonic() + timeout
        while self.count(route) < n:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # -- used by the handler ---------------------------------------------------------------------------------------
    def _arrive(self, route: str) -> threading.Event | None:
        """Count an arrival; the event to wait for if this one is held, else None."""
        with self._lock:
            number = self._arrivals[route] = self._arrivals.get(route, 0) + 1
            return self._release if number in self._holds.get(route, set()) else None

    def _record(self, call: Call) -> None:
        with self._lock:
            bisect.insort(self.calls, call, key=lambda c: c.started)

    def _next_fault(self, route: str) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            queue = self._faults.get(route)
            return queue.popleft() if queue else None

    def _take_image_slot(self, call: Call) -> float | None:
        """Count this call under its quota; None if granted, else the seconds until the window has room."""
        params: dict[str, Any] = call.json if isinstance(call.json, dict) else call.form
        try:
            images = max(1, int(params.get("n") or 1))
        except (TypeError, ValueError):
            images = 1
        with self._lock:
            key = call.model if call.model in self._limits else None
            if key not in self._limits:
                return None
            requests, window_s, per_image = self._limits[key]
            count = images if per_image else 1
            granted = self._granted[key]
            # Counted at the call's arrival (its request line and headers), as Azure's front end
            # counts it, not when this server has read the body: under load that takes this
            # process longer than it would take Azure, and a call read late would be counted late.
            # Bodies are read in any order, so a call counted here may have arrived before calls
            # already counted: each grant is kept in arrival order.
            at = call.started
            while granted and granted[0][0] <= min(at, time.monotonic()) - 2 * window_s:
                granted.popleft()
            near = [(t, n) for t, n in granted if at - window_s < t < at + window_s]
            # Every window of window_s seconds that holds `at` must stay within the quota.
            starts = [at - window_s + 1e-9] + [t for t, _ in near if t > at - window_s and t <= at]
            for start in starts:
                used = sum(n for t, n in near if start <= t < start + window_s)
                if used + count > requests:
                    earliest = min(t for t, _ in near)
                    return max(0.0, earliest + window_s - time.monotonic()) or window_s / 10
            bisect.insort(granted, (at, count))
            call.quota_key = key
            call.counted = at
            return None

    def _give_back_image_slot(self, call: Call) -> None:
        with self._lock:
            granted = self._granted.get(call.quota_key) if call.quota_key is not _NOT_COUNTED else None
            if granted:
                for k in range(len(granted) - 1, -1, -1):
                    if granted[k][0] == call.counted:
                        del granted[k]
                        break

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; False if it did."""
        return seconds <= 0 or not self._stopping.wait(seconds)

    def _new_color(self) -> tuple[int, int, int]:
        with self._lock:
            self._images_made += 1
            n = self._images_made
        return (n * 67) % 256, (n * 131 + 40) % 256, (n * 199 + 90) % 256

    # -- the routes: each takes the call and returns the reply -----------------------------------------------------
    def _chat(self, call: Call) -> _Reply:
        body = call.json
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "invalid_request_error", "'messages' is a required property", param="messages")
        messages: list[dict[str, Any]] = [m for m in body["messages"] if isinstance(m, dict)]
        is_caption = any(
            isinstance(m.get("content"), list)
            and any(isinstance(p, dict) and p.get("type") == "image_url" for p in m["content"])
            for m in messages
        )
        if is_caption:
            content = self.caption_text
        elif self.compose_reply is not None:
            content = json.dumps(self.compose_reply(messages))
        else:
            last_user = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
            content = json.dumps(
                {
                    "verdict": "allow",
                    "reason": "The request is a harmless restyle.",
                    "output_prompt": "Restyled image: " + last_user[:300],
                    "style": None,
                    "add": [],
                    "remove": [],
                    "background": None,
                }
            )
        return _json_reply(200, _completion(call, {"content": content}, "stop", completion_tokens=len(content.split())))

    def _images_reply(self, images: list[Image.Image], call: Call, params: dict[str, Any]) -> _Reply:
        """The images, as JSON, or as a stream of events when the call asked for one."""
        width, height = images[0].size
        quality = params.get("quality")
        fmt = str(params.get("output_format") or "png")
        transparent = params.get("background") == "transparent"
        compression = _int_or_none(params.get("output_compression"))
        usage = {
            "input_tokens": 50,
            "input_tokens_details": {"image_tokens": 0, "text_tokens": 50},
            "output_tokens": 1056 * len(images),
            "total_tokens": 50 + 1056 * len(images),
        }
        rendered = {
            "output_format": fmt,
            "size": f"{width}x{height}",  # the size actually produced (image_size_override wins)
            "quality": quality if quality in ("low", "medium", "high") else "medium",
            "background": "transparent" if transparent else "opaque",
        }
        if call.stream:
            return self._stream_events(images, call, params, rendered, usage)
        data = [{"b64_json": _b64(_encode(im, fmt, compression, transparent))} for im in images]
        return _json_reply(200, {"created": int(time.time()), "data": data, "usage": usage, **rendered})

    def _stream_events(
        self,
        images: list[Image.Image],
        call: Call,
        params: dict[str, Any],
        rendered: dict[str, Any],
        usage: dict[str, Any],
    ) -> _Reply:
        """A stream, as OpenAI's Images API sends one (its "Image generation streaming events" and "Image edit
        streaming events" reference): per image, `partial_images` previews (image_edit.partial_image or
        image_generation.partial_image, each with partial_image_index from 0), then its *.completed event with the
        usage.  Each preview is the final image drawn coarser (coarse to fine).  `latency` is spread evenly before
        the events, so every preview arrives before the image it previews.  A `mid-stream` fault cuts the stream
        after its `after` previews with an error event, or drops the connection (error="reset")."""
        prefix = "image_edit" if call.route == "images.edit" else "image_generation"
        partials = _int_or_none(params.get("partial_images")) or 0
        fmt = str(rendered["output_format"])
        compression = _int_or_none(params.get("output_compression"))
        transparent = rendered["background"] == "transparent"
        planned: list[tuple[str, dict[str, Any]]] = []
        for image in images:
            for k in range(partials):
                preview = _coarse(image, 2 ** (partials - k + 1))
                data = {"b64_json": _b64(_encode(preview, fmt, compression, transparent)), "partial_image_index": k}
                planned.append((f"{prefix}.partial_image", data))
            planned.append((f"{prefix}.completed", {"b64_json": _b64(_encode(image, fmt, compression, transparent))}))
        if call.fault == "mid-stream":
            after = int(call.fault_options.get("after", 1))
            cut = next((i for i, (name, _) in enumerate(planned) if not name.endswith(".partial_image")), len(planned))
            ending = "reset" if call.fault_options.get("error") == "reset" else "error"
            planned = planned[: min(after, cut)] + [(ending, self._stream_error(call))]
        step = self.latency.get(call.route, 0.0) / max(1, len(planned))
        events: list[tuple[float, str, dict[str, Any]]] = []
        for name, data in planned:
            if name in ("error", "reset"):
                events.append((step, name, data))
                continue
            body = {"type": name, **data, "created_at": int(time.time()), **rendered}
            if name.endswith(".completed"):
                body["usage"] = {**usage, "output_tokens": 1056, "total_tokens": 50 + 1056}
            events.append((step, name, body))
        call.events = [name for _, name, _ in events]
        return _Reply(200, b"", {"cache-control": "no-cache"}, "text/event-stream", events=events)

    def _stream_error(self, call: Call) -> dict[str, Any]:
        """The error event that ends a stream cut by `mid-stream`: the chosen fault's error, in the shape asked."""
        options = call.fault_options
        fault = str(options.get("error", "500"))
        if fault == "reset":
            return {}
        reply = _fault_reply(call, fault, options)
        body = json.loads(reply.body) if reply is not None else {}
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {"code": fault, "message": "The stream failed."}
        if options.get("shape", "nested") == "flat":  # as the Responses API's error event: the event's type wins
            return {**{k: v for k, v in error.items() if k != "type"}, "type": "error"}
        return {"type": "error", "error": error}

    def _check_image_params(self, params: dict[str, Any]) -> tuple[int, tuple[int, int]] | _Reply:
        """(n, output size) for an image request, or the 400 Azure answers for a bad one."""
        if not str(params.get("prompt") or "").strip():
            return _error(400, "invalid_request_error", "Missing required parameter: 'prompt'.", param="prompt")
        try:
            n = int(params.get("n") or 1)
        except (TypeError, ValueError):
            n = 0
        if not 1 <= n <= 10:
            return _error(400, "invalid_value", f"Invalid 'n': {params.get('n')!r}.", param="n")
        quality = params.get("quality")
        if quality is not None and quality not in GPT_IMAGE_QUALITIES:
            message = f"Invalid value: '{quality}'. Supported values are: 'low', 'medium', 'high', and 'auto'."
            return _error(400, "invalid_value", message, param="quality", type="invalid_request_error")
        size = _parse_size(params.get("size"), str(params.get("model") or ""))
        if isinstance(size, str):
            return _error(400, "invalid_value", size, param="size", type="invalid_request_error")
        problem = _check_rendering(params)
        if problem is not None:
            return problem
        return n, self.image_size_override or size

    def _generate(self, call: Call) -> _Reply:
        params = call.json if isinstance(call.json, dict) else {}
        checked = self._check_image_params(params)
        if isinstance(checked, _Reply):
            return checked
        n, size = checked
        return self._images_reply([Image.new("RGB", size, self._new_color()) for _ in range(n)], call, params)

    def _edit(self, call: Call) -> _Reply:
        checked = self._check_image_params(call.form)
        if isinstance(checked, _Reply):
            return checked
        n, size = checked
        sources = call.files.get("image") or call.files.get("image[]")
        if not sources:
            return _error(400, "invalid_request_error", "Missing required parameter: 'image'.", param="image")
        try:
            with Image.open(io.BytesIO(sources[0])) as source:
                picture = source.convert("RGB")
        except Exception:  # any decoding failure means a bad image from the client
            return _error(400, "invalid_image_format", "Invalid image file or mode for image 1.", param="image")
        fidelity = call.form.get("input_fidelity")
        if fidelity is not None and (fidelity not in ("high", "low") or "mini" in str(call.form.get("model", ""))):
            message = f"Invalid 'input_fidelity': {fidelity!r} (high or low; gpt-image-1-mini takes none)."
            return _error(400, "invalid_value", message, param="input_fidelity")
        masks = call.files.get("mask")
        if not masks:
            return self._images_reply([ImageOps.invert(picture).resize(size) for _ in range(n)], call, call.form)
        try:
            with Image.open(io.BytesIO(masks[0])) as mask_image:
                fmt, mask = mask_image.format, mask_image.convert("RGBA")
        except Exception:  # not an image at all
            return _error(400, "invalid_image_format", "Invalid mask image file.", param="mask")
        if fmt != "PNG" or mask.size != picture.size:
            message = "Invalid mask image: it must be a PNG of the same dimensions as the image."
            return _error(400, "invalid_request_error", message, param="mask")
        return self._images_reply([_soft_masked(picture, mask).resize(size) for _ in range(n)], call, call.form)

    def _analyze(self, call: Call) -> _Reply:
        if not call.query.get("api-version"):
            return _error(400, "InvalidRequest", "The api-version query parameter is missing.")
        features = {f.strip().lower() for f in call.query.get("features", "").split(",") if f.strip()}
        if not features:
            return _error(400, "InvalidRequest", "The features query parameter is missing or empty.")
        try:
            with Image.open(io.BytesIO(call.files["body"][0])) as image:
                width, height = image.size
        except Exception:  # anything Pillow cannot open is not an image
            inner = {"code": "InvalidImageFormat"}
            return _error(400, "InvalidRequest", "Image format is not valid.", innererror=inner)
        result: dict[str, Any] = {"modelVersion": "2023-10-01", "metadata": {"width": width, "height": height}}
        if "caption" in features and call.fault != "no-caption":  # no-caption: a 200 without captionResult
            result["captionResult"] = {"text": self.caption_text, "confidence": 0.91}
        if "tags" in features:
            result["tagsResult"] = {"values": [{"name": t, "confidence": 0.9} for t in self.tags]}
        return _json_reply(200, result)


def _soft_masked(picture: Image.Image, mask: Image.Image) -> Image.Image:
    """A masked edit as GPT-image draws it: redrawn (inverted) inside the mask's transparent area, and
    changed outside it too (posterized toward the redrawn picture, about 40 levels on a photo): its
    masks are soft, the whole picture is drawn again."""
    redrawn = ImageOps.invert(picture)
    drifted = Image.blend(picture, ImageOps.posterize(redrawn, 2), 0.35)
    return Image.composite(drifted, redrawn, mask.getchannel("A"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive connections must not hold up stop()
    allow_reuse_address = True
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, fake: FakeAzureAI) -> None:
        self.fake = fake
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skips HTTPServer's reverse DNS lookup (getfqdn)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.open_connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle keep-alive connection is closed after this

    @property
    def fake(self) -> FakeAzureAI:
        return cast(_Server, self.server).fake

    def setup(self) -> None:
        super().setup()
        server = cast(_Server, self.server)
        with server.connections_lock:
            server.open_connections.add(self.connection)

    def finish(self) -> None:
        server = cast(_Server, self.server)
        with server.connections_lock:
            server.open_connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("fake_ai: " + format, *args)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        started = time.monotonic()
        parts = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        body = self._read_body(headers)
        call = Call(
            route=ROUTES.get((self.command, parts.path), "unknown"),
            method=self.command,
            path=parts.path,
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=headers,
            json=None,
            form={},
            files={},
            status=0,
            started=started,
            finished=0.0,
            fault=None,
            request_id=str(uuid.uuid4()),
        )
        content_type = headers.get("content-type", "")
        if content_type.startswith("application/json"):
            try:
                call.json = json.loads(body)
            except ValueError:
                call.json = None
        elif content_type.startswith("multipart/form-data"):
            call.form, call.files = _parse_multipart(body, content_type)
        elif call.route == "vision.analyze":
            call.files["body"] = [body]
        params: dict[str, Any] = call.json if isinstance(call.json, dict) else call.form
        call.model = str(params["model"]) if params.get("model") is not None else None
        if call.route in IMAGE_ROUTES:
            call.size = str(params["size"]) if params.get("size") is not None else None
            call.quality = str(params["quality"]) if params.get("quality") is not None else None
            for name in ("input_fidelity", "output_format", "output_compression", "background", "partial_images"):
                if params.get(name) is not None:
                    setattr(call, name, str(params[name]))
            call.stream = _flag(params.get("stream")) is True

        reply = self._answer(call)

        call.finished = time.monotonic()
        call.status = reply.status if reply is not None else 0
        self.fake._record(call)  # before sending, so the call is logged when the client sees the answer
        if reply is None:
            self._drop_connection()
        else:
            self._send(reply, call)

    def _answer(self, call: Call) -> _Reply | None:
        """Route, credentials, latency, queued fault, rate limit, then the route itself. None = send nothing."""
        fake = self.fake
        if call.route == "unknown":
            return _error(404, "404", f"Resource not found: {call.method} {call.path}")
        if not _has_credentials(call.headers):
            return _error(401, "401", ACCESS_DENIED)
        held = fake._arrive(call.route)
        while held is not None and not held.wait(0.05):
            if fake._stopping.is_set():
                return None
        if call.route in IMAGE_ROUTES:  # the rate limit counts a call when it arrives
            wait = fake._take_image_slot(call)
            if wait is not None:
                call.fault = RATE_LIMIT_FAULT
                headers = {"retry-after": str(max(1, math.ceil(wait))), "retry-after-ms": str(math.ceil(wait * 1000))}
                return _rate_limited(call.route, headers, wait)
        # A stream's latency is spread across its events (see _stream_events), unless a fault answers instead.
        streaming = call.route in IMAGE_ROUTES and call.stream
        if not streaming and not fake._sleep(fake.latency.get(call.route, 0.0)):
            return None  # the server is stopping
        queued = fake._next_fault(call.route)
        if streaming and queued is not None and queued[0] != "mid-stream":
            if not fake._sleep(fake.latency.get(call.route, 0.0)):
                return None
        billed_as_answered = True  # decide from the answer's status, below
        if queued is not None:
            call.fault, options = queued
            call.fault_options = options
            call.billed = bool(options.get("billed", call.fault in BILLED_FAULTS))
            billed_as_answered = "billed" not in options and call.fault in ("timeout", "no-caption", "mid-stream")
            if call.fault == "timeout":
                if not self._stall(float(options.get("seconds", 5))):
                    return None  # the client gave up (its timeout fired) or the server is stopping
            elif call.fault == "mid-stream" and not streaming:  # the failure's own answer
                error = str(options.get("error", "500"))
                if error == "reset":
                    return None
                return _fault_reply(call, error, options)
            elif call.fault not in ("no-caption", "mid-stream"):  # those are the route's own answer, cut short
                return _fault_reply(call, call.fault, options)
        handlers: dict[str, Callable[[Call], _Reply]] = {
            "chat": fake._chat,
            "images.generate": fake._generate,
            "images.edit": fake._edit,
            "vision.analyze": fake._analyze,
        }
        try:
            reply = handlers[call.route](call)
        except Exception as exc:  # e.g. a broken compose_reply: answer 500 so the test sees why
            log.exception("fake_ai: the %s handler failed", call.route)
            reply = _error(500, "FakeServerError", f"fake_ai {call.route} handler failed: {exc!r}")
        if call.route in IMAGE_ROUTES and not 200 <= reply.status < 300:
            fake._give_back_image_slot(call)
        if billed_as_answered:
            call.billed = 200 <= reply.status < 300
        return reply

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline().strip():  # trailers, up to the blank line
                pass
            return b"".join(chunks)
        length = int(headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _stall(self, seconds: float) -> bool:
        """Wait `seconds` before answering; False if the client hung up or the server stopped meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not self.fake._sleep(min(left, 0.05)):
                return False
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
                if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
                    return False
            except OSError:
                return False
        return True

    def _drop_connection(self) -> None:
        """Close with SO_LINGER 0, so the client gets a TCP RST instead of a response."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _send(self, reply: _Reply, call: Call) -> None:
        """The answer with the headers Azure puts on every answer (request ids, region; the client's own request id
        echoed as azure-core expects)."""
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            if reply.events is None:
                self.send_header("Content-Length", str(len(reply.body)))
            else:
                self.send_header("Transfer-Encoding", "chunked")
            request_id = call.request_id or str(uuid.uuid4())
            self.send_header("x-request-id", request_id)
            self.send_header("apim-request-id", request_id)
            if call.route in OPENAI_ROUTES:
                self.send_header("x-ms-region", REGION)
            if "x-ms-client-request-id" in call.headers:
                self.send_header("x-ms-client-request-id", call.headers["x-ms-client-request-id"])
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if reply.events is None:
                self.wfile.write(reply.body)
            else:
                self._send_events(reply.events)
        except OSError:  # the client went away; nothing left to tell it
            self.close_connection = True

    def _send_events(self, events: list[tuple[float, str, dict[str, Any]]]) -> None:
        """Server-sent events, one HTTP chunk each (`event: <name>` and one `data:` line of JSON), each after its
        wait; "reset" drops the connection instead, as a stream lost on the way does."""
        for wait, name, data in events:
            self.wfile.flush()
            if not self.fake._sleep(wait):
                self._drop_connection()  # the server is stopping
                return
            if name == "reset":
                self._drop_connection()
                return
            chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
