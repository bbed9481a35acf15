"""Tests for tests/fake_ai.py, driven through the real openai and Azure AI Vision SDKs over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, cast

import openai
import pytest
from azure.ai.vision.imageanalysis import ImageAnalysisClient
from azure.ai.vision.imageanalysis.models import VisualFeatures
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceResponseError,
)
from PIL import Image

from tests.fake_ai import Call, FakeAzureAI

USER_MESSAGE: list[Any] = [{"role": "user", "content": "make the dog blue"}]


@pytest.fixture
def fake(fake_server: FakeAzureAI) -> Iterator[FakeAzureAI]:
    """The session's fake, reset, at the sizes clients ask for (the shared fixture shrinks images)."""
    fake_server.reset()
    yield fake_server
    fake_server.reset()


def make_openai(fake: FakeAzureAI, max_retries: int = 2, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.openai_base_url, api_key="test-key", max_retries=max_retries, timeout=timeout)


def make_vision(fake: FakeAzureAI, **kwargs: Any) -> ImageAnalysisClient:
    return ImageAnalysisClient(endpoint=fake.vision_endpoint, credential=AzureKeyCredential("k"), **kwargs)


def png_bytes(size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (200, 30, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def decode_png(b64: str | None) -> Image.Image:
    assert b64 is not None
    raw = base64.b64decode(b64)
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(raw))
    image.load()
    return image


def analyze(client: ImageAnalysisClient, data: bytes) -> Any:
    return client.analyze(
        image_data=data,
        visual_features=[VisualFeatures.CAPTION, VisualFeatures.TAGS],
        gender_neutral_caption=True,
    )


def only_call(fake: FakeAzureAI, route: str) -> Call:
    calls = [c for c in fake.calls if c.route == route]
    assert len(calls) == 1, calls
    return calls[0]


# -- chat ------------------------------------------------------------------------------------------------------------


def test_chat_with_an_image_is_a_caption_call(fake: FakeAzureAI) -> None:
    fake.caption_text = "a cat on a red sofa"
    data_url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    with make_openai(fake) as client:
        reply = client.chat.completions.create(
            model="gpt-4o",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Describe this image."},
                        {"type": "image_url", "image_url": {"url": data_url}},
                    ],
                }
            ],
        )
    assert reply.choices[0].message.content == "a cat on a red sofa"
    assert reply.choices[0].finish_reason == "stop"
    call = only_call(fake, "chat")
    assert call.status == 200 and call.fault is None
    assert call.headers["authorization"] == "Bearer test-key"
    assert call.json is not None
    assert call.json["messages"][0]["content"][1]["image_url"]["url"] == data_url
    assert call.started <= call.finished


def test_chat_without_an_image_is_a_compose_call_with_the_default_reply(fake: FakeAzureAI) -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"verdict": {"type": "string"}}, "required": ["verdict"]}
    with make_openai(fake) as client:
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "system", "content": "You compose prompts."}, *USER_MESSAGE],
            response_format={"type": "json_schema", "json_schema": {"name": "compose", "schema": schema}},
        )
    assert reply.model == "gpt-4o-mini"
    assert reply.object == "chat.completion"
    assert reply.usage is not None
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    body = json.loads(reply.choices[0].message.content or "")
    assert body == {
        "verdict": "allow",
        "reason": "The request is a harmless restyle.",
        "output_prompt": "Restyled image: make the dog blue",
        "style": None,
        "add": [],
        "remove": [],
        "background": None,
    }
    body = only_call(fake, "chat").json
    assert body is not None and body["response_format"]["type"] == "json_schema"


def test_compose_reply_hook_builds_the_reply_from_the_messages(fake: FakeAzureAI) -> None:
    seen: list[list[dict[str, Any]]] = []

    def compose(messages: list[dict[str, Any]]) -> dict[str, Any]:
        seen.append(messages)
        return {"verdict": "deny", "reason": f"{len(messages)} messages"}

    fake.compose_reply = compose
    with make_openai(fake) as client:
        reply = client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
    assert json.loads(reply.choices[0].message.content or "") == {"verdict": "deny", "reason": "1 messages"}
    assert seen == [USER_MESSAGE]


# -- images ----------------------------------------------------------------------------------------------------------


def test_generate_returns_n_distinct_pngs_of_the_requested_size(fake: FakeAzureAI) -> None:
    with make_openai(fake) as client:
        first = client.images.generate(model="gpt-image-1", prompt="a blue dog", n=2, size="1536x1024", quality="low")
        second = client.images.generate(model="gpt-image-1", prompt="a blue dog", size="1024x1536")
    assert first.data is not None and second.data is not None
    assert len(first.data) == 2 and len(second.data) == 1
    images = [decode_png(d.b64_json) for d in [*first.data, *second.data]]
    assert [im.size for im in images] == [(1536, 1024), (1536, 1024), (1024, 1536)]
    colors = {im.convert("RGB").getpixel((0, 0)) for im in images}
    assert len(colors) == 3, "every generated image differs"
    assert first.size == "1536x1024" and first.quality == "low" and first.output_format == "png"
    assert first.usage is not None and first.usage.total_tokens > 0
    call = fake.calls[0]
    assert call.json == {"model": "gpt-image-1", "prompt": "a blue dog", "n": 2, "size": "1536x1024", "quality": "low"}
    assert fake.count("images.generate") == fake.paid("images.generate") == 2


def test_image_size_override_and_auto_size(fake: FakeAzureAI) -> None:
    with make_openai(fake) as client:
        auto = client.images.generate(model="gpt-image-1", prompt="x", size="auto")
        fake.image_size_override = (64, 48)
        small = client.images.generate(model="gpt-image-1", prompt="x", size="1536x1024")
    assert auto.data is not None and small.data is not None
    assert decode_png(auto.data[0].b64_json).size == (1024, 1024)
    assert decode_png(small.data[0].b64_json).size == (64, 48)
    assert small.size == "64x48"


def test_edit_receives_the_upload_and_returns_an_image_derived_from_it(fake: FakeAzureAI) -> None:
    source = png_bytes((32, 32), (200, 30, 10))
    with make_openai(fake) as client:
        reply = client.images.edit(
            model="gpt-image-1",
            image=("dog.png", source, "image/png"),
            prompt="make it blue",
            size="1024x1536",
            input_fidelity="high",
            quality="high",
        )
    assert reply.data is not None and len(reply.data) == 1
    out = decode_png(reply.data[0].b64_json).convert("RGB")
    assert out.size == (1024, 1536)
    assert out.getpixel((10, 10)) == (55, 225, 245), "colours of the source, inverted"
    call = only_call(fake, "images.edit")
    assert call.files["image"] == [source]
    assert call.form["prompt"] == "make it blue"
    assert call.form["input_fidelity"] == "high" and call.form["size"] == "1024x1536"
    assert (call.model, call.size, call.quality) == ("gpt-image-1", "1024x1536", "high")
    assert call.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert call.json is None and call.status == 200


def test_edit_with_several_images_and_a_mask(fake: FakeAzureAI) -> None:
    first, second = png_bytes(color=(0, 0, 0)), png_bytes(color=(9, 9, 9))
    transparent = io.BytesIO()
    Image.new("RGBA", (40, 30), (0, 0, 0, 0)).save(transparent, format="PNG")  # the whole picture may change
    mask = transparent.getvalue()
    fake.image_size_override = (16, 16)
    with make_openai(fake) as client:
        reply = client.images.edit(
            model="gpt-image-1",
            image=[("a.png", first, "image/png"), ("b.png", second, "image/png")],
            mask=("mask.png", mask, "image/png"),
            prompt="merge them",
            n=2,
        )
    call = only_call(fake, "images.edit")
    assert call.files == {"image[]": [first, second], "mask": [mask]}
    assert call.form["n"] == "2"
    assert reply.data is not None and len(reply.data) == 2
    assert decode_png(reply.data[0].b64_json).convert("RGB").getpixel((0, 0)) == (255, 255, 255)


def test_a_masked_edit_is_soft_and_a_mask_of_another_size_is_a_400(fake: FakeAzureAI) -> None:
    """Like GPT-image, the fake redraws inside the mask and changes the kept pixels too; it checks the mask's size."""
    fake.image_size_override = None
    picture = png_bytes(size=(64, 32), color=(40, 120, 200))
    half = Image.new("RGBA", (64, 32), (0, 0, 0, 255))
    half.paste((0, 0, 0, 0), (0, 0, 32, 32))  # the left half may change
    mask = io.BytesIO()
    half.save(mask, format="PNG")
    with make_openai(fake) as client:
        reply = client.images.edit(
            model="gpt-image-1", image=("p.png", picture, "image/png"), mask=("m.png", mask.getvalue(), "image/png"),
            prompt="p", size="1024x1024",
        )  # fmt: skip
        drawn = decode_png(reply.data[0].b64_json if reply.data else None).convert("RGB").resize((64, 32))
        left, right = drawn.getpixel((8, 16)), drawn.getpixel((56, 16))
        assert left == (215, 135, 55)  # redrawn: inverted
        assert right != (40, 120, 200) and right != left  # kept, yet changed: a soft mask
        small = io.BytesIO()
        half.resize((32, 16)).save(small, format="PNG")
        with pytest.raises(openai.BadRequestError, match="same dimensions"):
            client.images.edit(
                model="gpt-image-1",
                image=("p.png", picture, "image/png"),
                mask=("m.png", small.getvalue(), "image/png"),
                prompt="p",
            )


def test_edit_with_an_undecodable_image_is_a_400(fake: FakeAzureAI) -> None:
    with make_openai(fake) as client, pytest.raises(openai.BadRequestError) as info:
        client.images.edit(model="gpt-image-1", image=("x.png", b"not a png", "image/png"), prompt="p")
    assert info.value.code == "invalid_image_format"


# -- vision ----------------------------------------------------------------------------------------------------------


def test_vision_caption_tags_and_metadata(fake: FakeAzureAI) -> None:
    fake.tags = ["cat", "sofa"]
    with make_vision(fake) as client:
        result = analyze(client, png_bytes((40, 30)))
    assert result.caption.text == "a dog sitting on a green lawn"
    assert result.caption.confidence == pytest.approx(0.91)
    assert [t.name for t in result.tags.list] == ["cat", "sofa"]
    assert (result.metadata.width, result.metadata.height) == (40, 30)
    assert result.model_version == "2023-10-01"
    call = only_call(fake, "vision.analyze")
    assert call.query == {"api-version": "2023-10-01", "features": "caption,tags", "gender-neutral-caption": "true"}
    assert call.headers["ocp-apim-subscription-key"] == "k"
    assert call.files["body"] == [png_bytes((40, 30))]


def test_vision_returns_only_the_requested_features(fake: FakeAzureAI) -> None:
    with make_vision(fake) as client:
        result = client.analyze(image_data=png_bytes(), visual_features=[VisualFeatures.TAGS])
    assert result.caption is None
    assert result.tags is not None


def test_vision_rejects_a_body_that_is_not_an_image(fake: FakeAzureAI) -> None:
    with make_vision(fake, retry_total=0) as client, pytest.raises(HttpResponseError) as info:
        analyze(client, b"definitely not an image")
    assert info.value.status_code == 400
    assert info.value.error is not None and info.value.error.code == "InvalidRequest"


def test_vision_without_api_version_is_a_400(fake: FakeAzureAI) -> None:
    request = urllib.request.Request(
        f"{fake.url}/computervision/imageanalysis:analyze?features=caption",
        data=png_bytes(),
        headers={"Ocp-Apim-Subscription-Key": "k", "Content-Type": "application/octet-stream"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 400
    assert json.loads(info.value.read())["error"]["code"] == "InvalidRequest"


def test_vision_429_is_an_http_response_error_when_retries_are_off(fake: FakeAzureAI) -> None:
    fake.fail_next("vision.analyze", "429")
    with make_vision(fake, retry_total=0) as client, pytest.raises(HttpResponseError) as info:
        analyze(client, png_bytes())
    assert info.value.status_code == 429
    assert info.value.error is not None and info.value.error.code == "429"
    response: Any = info.value.response  # an azure.core HttpResponse
    assert response.headers["retry-after"] == "1"
    assert fake.count("vision.analyze") == 1 and fake.paid("vision.analyze") == 0


def test_vision_sdk_retries_a_post_only_when_retry_after_is_present(fake: FakeAzureAI) -> None:
    # azure-core retries a POST on 500/503/504, or on any status carrying Retry-After; a 429 with only
    # retry-after-ms is final.
    fake.fail_next("vision.analyze", "503")
    with make_vision(fake) as client:
        assert analyze(client, png_bytes()).caption is not None
        fake.fail_next("vision.analyze", "429-ms", retry_after_ms=50)
        with pytest.raises(HttpResponseError) as info:
            analyze(client, png_bytes())
    assert info.value.status_code == 429
    assert [(c.status, c.fault) for c in fake.calls] == [(503, "503"), (200, None), (429, "429-ms")]


def test_vision_reset_is_a_service_response_error(fake: FakeAzureAI) -> None:
    fake.fail_next("vision.analyze", "reset")
    with make_vision(fake) as client, pytest.raises(ServiceResponseError):
        analyze(client, png_bytes())
    assert fake.calls[0].status == 0


# -- faults through the openai SDK -----------------------------------------------------------------------------------


def test_429_with_retry_after_is_retried_after_the_delay(fake: FakeAzureAI) -> None:
    fake.fail_next("images.generate", "429")
    started = time.monotonic()
    with make_openai(fake) as client:
        reply = client.images.generate(model="gpt-image-1", prompt="p", size="1024x1024")
    assert reply.data and reply.data[0].b64_json
    assert time.monotonic() - started >= 0.95, "the SDK waited the 1 s of retry-after"
    assert fake.count("images.generate") == 2 and fake.paid("images.generate") == 1
    assert [c.fault for c in fake.calls] == ["429", None]


def test_429_ms_is_retried_after_the_millisecond_delay(fake: FakeAzureAI) -> None:
    fake.fail_next("chat", "429-ms", retry_after_ms=700)
    started = time.monotonic()
    with make_openai(fake) as client:
        client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
    # The SDK's own first back-off is at most 0.5 s, so waiting >= 0.65 s shows it honoured retry-after-ms.
    assert time.monotonic() - started >= 0.65
    assert fake.count("chat") == 2 and fake.paid("chat") == 1


def test_429_without_retries_is_a_rate_limit_error(fake: FakeAzureAI) -> None:
    fake.fail_next("chat", "429", retry_after=3)
    with make_openai(fake, max_retries=0) as client, pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
    err = info.value
    assert err.status_code == 429 and err.code == "429"
    assert err.response.headers["retry-after"] == "3"
    assert "retry-after-ms" not in err.response.headers
    assert isinstance(err.body, dict) and "exceeded rate limit" in err.body["message"]


def test_content_policy_violation_is_a_bad_request_and_not_retried(fake: FakeAzureAI) -> None:
    fake.fail_next("images.generate", "content_policy_violation")
    with make_openai(fake) as client, pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="gpt-image-1", prompt="p")
    err = info.value
    assert err.status_code == 400 and err.code == "content_policy_violation" and err.type == "invalid_request_error"
    assert isinstance(err.body, dict)
    assert err.body["inner_error"]["code"] == "ResponsibleAIPolicyViolation"
    assert err.body["inner_error"]["content_filter_results"]["violence"] == {"filtered": True, "severity": "high"}
    assert fake.count("images.generate") == 1 and fake.paid("images.generate") == 0


def test_content_filter_on_images_is_a_bad_request_without_inner_error(fake: FakeAzureAI) -> None:
    fake.fail_next("images.edit", "contentFilter")
    fake.fail_next("images.edit", "contentFilter", stage="output")
    with make_openai(fake) as client:
        messages = []
        for _ in range(2):
            with pytest.raises(openai.BadRequestError) as info:
                client.images.edit(model="gpt-image-1", image=("a.png", png_bytes(), "image/png"), prompt="p")
            assert info.value.code == "contentFilter" and isinstance(info.value.body, dict)
            assert "inner_error" not in info.value.body and "innererror" not in info.value.body
            messages.append(info.value.message)
    assert "Your task failed as a result of our safety system." in messages[0]
    assert "Generated image was filtered as a result of our safety system." in messages[1]
    assert fake.count("images.edit") == 2 and fake.billed("images.edit") == 0


def test_401_is_an_authentication_error_and_not_retried(fake: FakeAzureAI) -> None:
    fake.fail_next("chat", "401")
    with make_openai(fake) as client, pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
    assert info.value.status_code == 401 and info.value.code == "401"
    assert "Access denied" in info.value.message
    assert fake.count("chat") == 1


def test_requests_without_credentials_get_401(fake: FakeAzureAI) -> None:
    request = urllib.request.Request(
        f"{fake.openai_base_url}chat/completions",
        data=json.dumps({"model": "m", "messages": USER_MESSAGE}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 401
    assert json.loads(info.value.read())["error"]["code"] == "401"
    assert only_call(fake, "chat").status == 401


def test_api_key_header_alone_is_accepted(fake: FakeAzureAI) -> None:
    request = urllib.request.Request(
        f"{fake.openai_base_url}chat/completions",
        data=json.dumps({"model": "m", "messages": USER_MESSAGE}).encode(),
        headers={"Content-Type": "application/json", "api-key": "x"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read())["object"] == "chat.completion"
    call = only_call(fake, "chat")
    assert call.status == 200 and call.headers["api-key"] == "x" and "authorization" not in call.headers


def test_500_is_retried_and_503_surfaces_without_retries(fake: FakeAzureAI) -> None:
    fake.fail_next("chat", "500")
    with make_openai(fake) as client:
        client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
    assert fake.count("chat") == 2 and fake.paid("chat") == 1
    fake.fail_next("chat", "503")
    with make_openai(fake, max_retries=0) as client, pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
    assert info.value.status_code == 503 and info.value.code == "ServiceUnavailable"


def test_faults_are_queued_per_route_first_in_first_out(fake: FakeAzureAI) -> None:
    fake.fail_next("chat", "500")
    fake.fail_next("chat", "429-ms", retry_after_ms=10)
    fake.fail_next("images.generate", "no-image", times=2)
    with make_openai(fake, max_retries=3) as client:
        client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
        empty = client.images.generate(model="gpt-image-1", prompt="p")
    assert [(c.route, c.fault, c.status) for c in fake.calls] == [
        ("chat", "500", 500),
        ("chat", "429-ms", 429),
        ("chat", None, 200),
        ("images.generate", "no-image", 200),
    ]
    assert empty.data == [], "no-image is a 200 with no data: the SDK does not raise"
    with make_openai(fake) as client:
        assert client.images.generate(model="gpt-image-1", prompt="p").data == []  # the second queued no-image
        assert client.images.generate(model="gpt-image-1", prompt="p").data


def test_malformed_json_raises_a_json_decode_error(fake: FakeAzureAI) -> None:
    # openai-python does not wrap this: a 200 whose JSON body does not parse is a plain json.JSONDecodeError.
    fake.fail_next("chat", "malformed")
    with make_openai(fake) as client, pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
    assert fake.count("chat") == 1 and fake.calls[0].status == 200


def test_reset_is_a_connection_error_and_is_retried(fake: FakeAzureAI) -> None:
    fake.fail_next("chat", "reset")
    with make_openai(fake, max_retries=0) as client, pytest.raises(openai.APIConnectionError) as info:
        client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
    assert not isinstance(info.value, openai.APITimeoutError)
    assert (fake.calls[0].status, fake.calls[0].fault) == (0, "reset")
    fake.fail_next("chat", "reset")
    with make_openai(fake, max_retries=1) as client:
        client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
    assert fake.count("chat") == 3 and fake.paid("chat") == 1


def test_timeout_is_an_api_timeout_error(fake: FakeAzureAI) -> None:
    fake.fail_next("chat", "timeout", seconds=3)
    started = time.monotonic()
    with make_openai(fake, max_retries=0, timeout=0.3) as client, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
    assert time.monotonic() - started < 1.5
    # The fake notices that the client hung up and logs the call with status 0, shortly after.
    assert fake.wait_calls("chat", 1)
    assert (fake.calls[0].fault, fake.calls[0].status) == ("timeout", 0)


def test_timeout_fault_answers_normally_when_the_client_waits(fake: FakeAzureAI) -> None:
    fake.fail_next("chat", "timeout", seconds=0.3)
    started = time.monotonic()
    with make_openai(fake, max_retries=0, timeout=5) as client:
        client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
    assert time.monotonic() - started >= 0.3
    assert (fake.calls[0].fault, fake.calls[0].status) == ("timeout", 200)


def test_latency_delays_the_answer(fake: FakeAzureAI) -> None:
    fake.latency["chat"] = 0.3
    with make_openai(fake) as client:
        client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
    call = only_call(fake, "chat")
    assert call.finished - call.started >= 0.3


def test_unknown_route_is_a_404(fake: FakeAzureAI) -> None:
    with make_openai(fake) as client, pytest.raises(openai.NotFoundError):
        client.models.list()
    assert fake.calls[0].route == "unknown" and fake.calls[0].status == 404


def test_fail_next_rejects_unknown_faults_and_routes(fake: FakeAzureAI) -> None:
    with pytest.raises(ValueError):
        fake.fail_next("chat", "418")
    with pytest.raises(ValueError):
        fake.fail_next("images.create", "500")
    with pytest.raises(ValueError):
        fake.fail_next("chat", "no-image")


# -- rate limit and concurrency --------------------------------------------------------------------------------------


def test_limit_images_answers_429_beyond_the_limit_within_a_window(fake: FakeAzureAI) -> None:
    fake.image_size_override = (8, 8)
    fake.limit_images(2, 1.0)
    with make_openai(fake, max_retries=0) as client:
        client.images.generate(model="gpt-image-1", prompt="p")
        client.images.edit(model="gpt-image-1", image=("a.png", png_bytes(), "image/png"), prompt="p")
        with pytest.raises(openai.RateLimitError) as info:
            client.images.generate(model="gpt-image-1", prompt="p")
    headers = info.value.response.headers
    assert headers["retry-after"] == "1"
    assert 0 < int(headers["retry-after-ms"]) <= 1000
    assert fake.calls[-1].fault == "rate-limit"
    # With retries on, the SDK gets one more 429 (still in the window), waits for the window to end (it prefers
    # retry-after-ms) and gets through.
    with make_openai(fake, max_retries=2) as client:
        client.images.generate(model="gpt-image-1", prompt="p")
    assert [c.status for c in fake.calls] == [200, 200, 429, 429, 200]
    assert fake.paid("images.generate") + fake.paid("images.edit") == 3
    fake.reset()
    fake.image_size_override = (8, 8)
    with make_openai(fake, max_retries=0) as client:  # reset() removed the limit
        for _ in range(3):
            client.images.generate(model="gpt-image-1", prompt="p")


def test_the_quota_counts_a_call_when_it_arrives_not_when_its_body_has_been_read(fake: FakeAzureAI) -> None:
    """A call whose body comes slowly is counted at its arrival, and one counted later may have arrived earlier.

    The first call sends its headers, then its body 1.4 s later; a second call arrives whole 1.2 s
    after the first one. In a 1 s window they are apart, so both get through. Counted when the
    body was read, the first would have been counted 0.2 s after the second and refused.
    """
    import socket
    from urllib.parse import urlsplit

    fake.image_size_override = (8, 8)
    fake.limit_images(1, 1.0)
    body = json.dumps({"model": "gpt-image-1", "prompt": "p"}).encode()
    url = urlsplit(fake.openai_base_url)
    head = (
        f"POST {url.path}images/generations HTTP/1.1\r\nHost: {url.netloc}\r\napi-key: test-key\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as slow:
        slow.sendall(head)
        time.sleep(1.2)
        with make_openai(fake, max_retries=0) as client:
            client.images.generate(model="gpt-image-1", prompt="p")  # arrived 1.2 s after the first: its own window
        time.sleep(0.2)
        slow.sendall(body)
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") or answer.startswith(b"HTTP/1.0 200"), answer[:200]
    assert sorted(c.status for c in fake.calls) == [200, 200]
    first, second = sorted(fake.calls, key=lambda c: c.started)
    assert second.counted - first.counted >= 1.0  # counted at arrival: 1.2 s apart
    assert first.finished > second.finished  # though the first was read (and answered) last


def test_each_deployment_has_its_own_quota_counted_by_request_or_by_image(fake: FakeAzureAI) -> None:
    """Azure's quota is per deployment: a limit on one leaves the other free; per_image counts n images as n."""
    fake.image_size_override = (8, 8)
    fake.limit_images(1, 5.0, deployment="sweden")
    fake.limit_images(3, 5.0, deployment="poland", per_image=True)
    with make_openai(fake, max_retries=0) as client:
        client.images.generate(model="sweden", prompt="p", n=4)  # one request: counted once
        with pytest.raises(openai.RateLimitError):
            client.images.generate(model="sweden", prompt="p")
        client.images.generate(model="poland", prompt="p", n=2)  # two of poland's three images
        with pytest.raises(openai.RateLimitError):
            client.images.generate(model="poland", prompt="p", n=2)
        client.images.generate(model="poland", prompt="p", n=1)
        client.images.generate(model="elsewhere", prompt="p", n=4)  # no limit on it
    assert [(c.model, c.status) for c in fake.calls] == [
        ("sweden", 200), ("sweden", 429), ("poland", 200), ("poland", 429), ("poland", 200), ("elsewhere", 200)
    ]  # fmt: skip


def test_concurrent_calls_are_all_logged_in_arrival_order(fake: FakeAzureAI) -> None:
    fake.latency["images.generate"] = 0.3
    fake.image_size_override = (8, 8)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with make_openai(fake, max_retries=0) as client:
                client.images.generate(model="gpt-image-1", prompt="p")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert errors == []
    assert time.monotonic() - started < 8 * 0.3, "requests were served in parallel"
    assert fake.paid("images.generate") == 8
    arrivals = [c.started for c in fake.calls]
    assert arrivals == sorted(arrivals)


def test_stop_does_not_wait_for_a_stalled_request() -> None:
    fake = FakeAzureAI().start()
    fake.fail_next("chat", "timeout", seconds=30)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            with make_openai(fake, max_retries=0, timeout=20) as client:
                client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    time.sleep(0.2)
    started = time.monotonic()
    fake.stop()
    worker.join(timeout=5)
    assert time.monotonic() - started < 2
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], openai.APIConnectionError)


def test_a_crashing_compose_reply_is_answered_with_a_500(fake: FakeAzureAI) -> None:
    def broken(messages: list[dict[str, Any]]) -> dict[str, Any]:
        raise KeyError("verdict")

    fake.compose_reply = broken
    with make_openai(fake, max_retries=0) as client, pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGE)
    assert info.value.code == "FakeServerError" and "KeyError" in info.value.message


# -- Azure's "no" answers and failures, through the real SDKs (one answer per call: retries off) --------------------


def sdk_error(fake: FakeAzureAI, route: str, fault: str, **options: Any) -> openai.APIStatusError:
    """Queue `fault` on `route`, make the route's call with retries off, and return what the openai SDK raised."""
    fake.fail_next(route, fault, **options)
    with make_openai(fake, max_retries=0) as client, pytest.raises(openai.APIStatusError) as info:
        if route == "chat":
            client.chat.completions.create(model="gpt-4.1-mini", messages=USER_MESSAGE)
        elif route == "images.generate":
            client.images.generate(model="gpt-image-1-mini", prompt="p", size="1024x1024", quality="low")
        else:
            client.images.edit(
                model="gpt-image-1-mini", image=("a.png", png_bytes(), "image/png"), prompt="p", size="1024x1024"
            )
    assert only_call(fake, route).fault == fault
    return info.value


def error_body(err: openai.APIStatusError) -> dict[str, Any]:
    """The SDK's exc.body: the "error" object of Azure's answer."""
    assert isinstance(err.body, dict), err.body
    return err.body


def test_chat_400_content_filter_carries_the_filter_result(fake: FakeAzureAI) -> None:
    err = sdk_error(fake, "chat", "content_filter")
    assert isinstance(err, openai.BadRequestError) and err.status_code == 400
    assert err.code == "content_filter" and err.param == "prompt"
    body = error_body(err)
    assert body["status"] == 400 and "content management policy" in body["message"]
    inner = body["innererror"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    assert inner["content_filter_result"]["violence"] == {"filtered": True, "severity": "medium"}
    assert inner["content_filter_result"]["jailbreak"] == {"filtered": False, "detected": False}
    assert fake.billed("chat") == 0, "a prompt refused by the input filter is not billed"


def test_chat_200_content_filter_has_no_content_and_is_billed(fake: FakeAzureAI) -> None:
    fake.fail_next("chat", "content_filter-200")
    with make_openai(fake, max_retries=0) as client:
        reply = client.chat.completions.create(model="gpt-4.1-mini", messages=USER_MESSAGE)
    choice = reply.choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content is None and choice.message.refusal is None
    extra: Any = choice.model_extra  # Azure's annotations are fields the openai types do not declare
    assert extra["content_filter_results"]["sexual"] == {"filtered": True, "severity": "medium"}
    assert reply.model_extra is not None and reply.model_extra["prompt_filter_results"][0]["prompt_index"] == 0
    assert fake.paid("chat") == fake.billed("chat") == 1


def test_chat_refusal_is_a_200_with_message_refusal(fake: FakeAzureAI) -> None:
    fake.fail_next("chat", "refusal", refusal="I can't help with that.")
    with make_openai(fake, max_retries=0) as client:
        reply = client.chat.completions.create(
            model="gpt-4.1-mini",
            messages=USER_MESSAGE,
            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": {"type": "object"}}},
        )
    message = reply.choices[0].message
    assert message.refusal == "I can't help with that." and message.content is None
    assert reply.choices[0].finish_reason == "stop"
    assert fake.billed("chat") == 1


def test_chat_length_is_a_reasoning_model_that_spent_its_budget(fake: FakeAzureAI) -> None:
    fake.fail_next("chat", "length")
    with make_openai(fake, max_retries=0) as client:
        reply = client.chat.completions.create(model="gpt-5-mini", messages=USER_MESSAGE, max_completion_tokens=120)
    assert reply.choices[0].finish_reason == "length" and reply.choices[0].message.content == ""
    usage = reply.usage
    assert usage is not None and usage.completion_tokens == 120
    assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 120
    assert fake.billed("chat") == 1


def test_chat_empty_content_with_finish_reason_stop(fake: FakeAzureAI) -> None:
    fake.fail_next("chat", "empty")
    with make_openai(fake, max_retries=0) as client:
        reply = client.chat.completions.create(model="gpt-4.1-mini", messages=USER_MESSAGE)
    assert (reply.choices[0].finish_reason, reply.choices[0].message.content) == ("stop", "")
    assert fake.billed("chat") == 1


def test_a_normal_chat_answer_carries_azure_annotations_and_token_details(fake: FakeAzureAI) -> None:
    with make_openai(fake, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4.1-mini", messages=USER_MESSAGE)
    reply = raw.parse()
    assert raw.headers["x-ms-region"] == "East US 2"
    assert raw.headers["apim-request-id"] == only_call(fake, "chat").request_id
    assert reply.choices[0].message.refusal is None and reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens_details is not None
    assert reply.usage.completion_tokens_details.reasoning_tokens == 0
    extra: Any = reply.choices[0].model_extra
    assert extra["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"}


@pytest.mark.parametrize("route", ["images.generate", "images.edit"])
def test_image_content_policy_violation_uses_inner_error(fake: FakeAzureAI, route: str) -> None:
    err = sdk_error(fake, route, "content_policy_violation")
    assert isinstance(err, openai.BadRequestError)
    assert err.code == "content_policy_violation" and err.type == "invalid_request_error"
    inner = error_body(err)["inner_error"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    assert inner["content_filter_results"]["violence"] == {"filtered": True, "severity": "high"}
    assert fake.billed(route) == 0


@pytest.mark.parametrize("route", ["images.generate", "images.edit"])
def test_image_moderation_blocked_is_gpt_image_own_moderation(fake: FakeAzureAI, route: str) -> None:
    err = sdk_error(fake, route, "moderation_blocked", categories=["sexual"])
    assert isinstance(err, openai.BadRequestError)
    assert err.code == "moderation_blocked" and err.type == "image_generation_user_error"
    message = error_body(err)["message"]
    assert message.startswith("Your request was rejected by the safety system.")
    assert "safety_violations=[sexual]" in message
    assert only_call(fake, route).request_id in message, "the message names the request id, as Azure's does"
    assert fake.billed(route) == 0


def test_edit_of_a_photo_of_a_minor_is_a_content_policy_400(fake: FakeAzureAI) -> None:
    err = sdk_error(fake, "images.edit", "minor")
    assert isinstance(err, openai.BadRequestError) and err.code == "content_policy_violation"
    assert err.param == "image" and "minor" in error_body(err)["message"]
    assert error_body(err)["inner_error"]["code"] == "ResponsibleAIPolicyViolation"
    with pytest.raises(ValueError):
        fake.fail_next("images.generate", "minor")  # only an edit has an input photo


def test_resource_blocked_for_policy_violations_is_a_403_forbidden(fake: FakeAzureAI) -> None:
    err = sdk_error(fake, "images.edit", "403-blocked")
    assert isinstance(err, openai.PermissionDeniedError) and err.status_code == 403
    assert err.code == "Forbidden" and "temporarily blocked" in err.message
    assert "content policy" in err.message and fake.billed("images.edit") == 0


def test_permission_denied_is_401_by_default_and_403_on_request(fake: FakeAzureAI) -> None:
    err = sdk_error(fake, "chat", "permission")
    assert isinstance(err, openai.AuthenticationError) and err.code == "PermissionDenied"
    assert "Principal does not have access" in err.message
    fake.reset()
    err = sdk_error(fake, "images.generate", "permission", status=403)
    assert isinstance(err, openai.PermissionDeniedError) and err.code == "PermissionDenied"


def test_403_network_rules_and_404_deployment_not_found(fake: FakeAzureAI) -> None:
    err = sdk_error(fake, "images.generate", "403")
    assert isinstance(err, openai.PermissionDeniedError) and err.code == "403"
    assert "Virtual Network/Firewall" in err.message
    fake.reset()
    err = sdk_error(fake, "chat", "404")
    assert isinstance(err, openai.NotFoundError) and err.code == "DeploymentNotFound"
    assert "deployment for this resource does not exist" in err.message
    assert fake.billed("chat") == 0


def test_429_full_has_every_rate_limit_header(fake: FakeAzureAI) -> None:
    err = sdk_error(fake, "images.edit", "429-full", retry_after_ms=2500)
    assert isinstance(err, openai.RateLimitError) and err.code == "429"
    headers = err.response.headers
    assert (headers["retry-after"], headers["retry-after-ms"]) == ("3", "2500")
    assert headers["x-ratelimit-remaining-requests"] == "0" and headers["x-ratelimit-limit-requests"] == "6"
    assert "x-ratelimit-remaining-tokens" in headers and "apim-request-id" in headers
    assert "Please retry after 3 second(s)" in err.message
    assert fake.billed("images.edit") == 0


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("500", 500, "InternalServerError"),
        ("502", 502, "BadGateway"),
        ("503", 503, "ServiceUnavailable"),
        ("504", 504, "Timeout"),
    ],
)
def test_5xx_are_internal_server_errors_and_not_billed(fake: FakeAzureAI, fault: str, status: int, code: str) -> None:
    err = sdk_error(fake, "images.generate", fault)
    assert isinstance(err, openai.InternalServerError)
    assert (err.status_code, err.code) == (status, code)
    assert fake.billed("images.generate") == 0


def test_a_timed_out_image_call_is_billed(fake: FakeAzureAI) -> None:
    fake.fail_next("images.edit", "timeout", seconds=3)
    with make_openai(fake, max_retries=0, timeout=0.3) as client, pytest.raises(openai.APITimeoutError):
        client.images.edit(model="gpt-image-1", image=("a.png", png_bytes(), "image/png"), prompt="p")
    assert fake.wait_calls("images.edit", 1)
    call = only_call(fake, "images.edit")
    assert (call.status, call.fault, call.billed) == (0, "timeout", True)
    assert fake.paid("images.edit") == 0 and fake.billed("images.edit") == 1


def test_a_reset_is_not_billed_unless_asked(fake: FakeAzureAI) -> None:
    fake.fail_next("images.generate", "reset")
    fake.fail_next("images.generate", "reset", billed=True)
    with make_openai(fake, max_retries=0) as client:
        for _ in range(2):
            with pytest.raises(openai.APIConnectionError):
                client.images.generate(model="gpt-image-1", prompt="p")
    assert [c.billed for c in fake.calls] == [False, True]


def test_malformed_and_no_image_200s_are_billed(fake: FakeAzureAI) -> None:
    fake.fail_next("images.generate", "malformed")
    fake.fail_next("images.generate", "no-image")
    fake.fail_next("images.generate", "no-image", billed=False)
    with make_openai(fake, max_retries=0) as client:
        with pytest.raises(json.JSONDecodeError):
            client.images.generate(model="gpt-image-1", prompt="p")
        assert client.images.generate(model="gpt-image-1", prompt="p").data == []
        assert client.images.generate(model="gpt-image-1", prompt="p").data == []
    assert [c.billed for c in fake.calls] == [True, True, False]


def test_faults_only_apply_where_azure_sends_them(fake: FakeAzureAI) -> None:
    for route, fault in [
        ("chat", "content_policy_violation"),
        ("chat", "moderation_blocked"),
        ("images.edit", "refusal"),
        ("images.generate", "content_filter-200"),
        ("vision.analyze", "429-full"),
        ("vision.analyze", "403-blocked"),
        ("chat", "no-caption"),
        ("images.edit", "InvalidImageSize"),
    ]:
        with pytest.raises(ValueError, match="only applies"):
            fake.fail_next(route, fault)


# -- GPT-image sizes and quality -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["1920x1088", "3840x2160", "2048x2048", "1024x1024", "1536x1024", "2400x800", "auto"])
def test_gpt_image_2_takes_any_size_within_its_rules(fake: FakeAzureAI, size: str) -> None:
    fake.image_size_override = (16, 16)
    with make_openai(fake, max_retries=0) as client:
        reply = client.images.generate(model="my-gpt-image-2-deployment", prompt="p", size=cast(Any, size))
    assert reply.data
    call = only_call(fake, "images.generate")
    assert (call.model, call.size, call.status) == ("my-gpt-image-2-deployment", size, 200)


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ("1000x1000", "multiples of 16"),
        ("2560x800", "aspect ratio"),  # 3.2:1
        ("512x512", "pixels"),  # 262,144 px
        ("4096x2048", "pixels"),  # 8,388,608 px
        ("3856x1920", "long edge"),
        ("wide", "WIDTHxHEIGHT"),
    ],
)
def test_gpt_image_2_refuses_sizes_outside_its_rules(fake: FakeAzureAI, size: str, reason: str) -> None:
    with make_openai(fake, max_retries=0) as client, pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="gpt-image-2", prompt="p", size=cast(Any, size))
    assert info.value.code == "invalid_value" and info.value.param == "size"
    assert reason in info.value.message
    assert only_call(fake, "images.generate").size == size and fake.billed("images.generate") == 0


@pytest.mark.parametrize("model", ["gpt-image-1", "gpt-image-1-mini", "images"])
def test_other_deployments_take_only_the_three_gpt_image_1_sizes(fake: FakeAzureAI, model: str) -> None:
    fake.image_size_override = (16, 16)
    with make_openai(fake, max_retries=0) as client:
        for size in ("1024x1024", "1024x1536", "1536x1024", "auto"):
            client.images.generate(model=model, prompt="p", size=cast(Any, size))
        with pytest.raises(openai.BadRequestError) as info:
            client.images.edit(
                model=model, image=("a.png", png_bytes(), "image/png"), prompt="p", size=cast(Any, "1920x1088")
            )
    assert info.value.param == "size" and "Supported values are" in info.value.message
    assert [c.size for c in fake.calls] == ["1024x1024", "1024x1536", "1536x1024", "auto", "1920x1088"]


def test_quality_is_low_medium_high_or_auto(fake: FakeAzureAI) -> None:
    fake.image_size_override = (16, 16)
    with make_openai(fake, max_retries=0) as client:
        for quality in ("low", "medium", "high", "auto"):
            client.images.generate(model="gpt-image-2", prompt="p", quality=cast(Any, quality))
        with pytest.raises(openai.BadRequestError) as info:
            client.images.generate(model="gpt-image-2", prompt="p", quality=cast(Any, "hd"))
    assert info.value.param == "quality"
    assert [c.quality for c in fake.calls] == ["low", "medium", "high", "auto", "hd"]
    assert [c.size for c in fake.calls] == [None] * 5


# -- AI Vision's failures, through azure-ai-vision-imageanalysis ----------------------------------------------------


def vision_error(fake: FakeAzureAI, fault: str, **options: Any) -> HttpResponseError:
    fake.fail_next("vision.analyze", fault, **options)
    with make_vision(fake, retry_total=0) as client, pytest.raises(HttpResponseError) as info:
        analyze(client, png_bytes())
    assert only_call(fake, "vision.analyze").fault == fault
    return info.value


@pytest.mark.parametrize("inner", ["InvalidImageSize", "NotSupportedImage"])
def test_vision_400_invalid_request_with_its_inner_code(fake: FakeAzureAI, inner: str) -> None:
    err = vision_error(fake, inner)
    assert err.status_code == 400
    assert err.error is not None and err.error.code == "InvalidRequest"
    assert err.error.innererror["code"] == inner  # azure-core keeps the innererror as a dict
    assert fake.billed("vision.analyze") == 0


@pytest.mark.parametrize(
    ("fault", "status", "exception", "code"),
    [
        ("401", 401, ClientAuthenticationError, "401"),
        ("permission", 401, ClientAuthenticationError, "PermissionDenied"),
        ("403", 403, HttpResponseError, "403"),
        ("404", 404, ResourceNotFoundError, "404"),
        ("500", 500, HttpResponseError, "InternalServerError"),
        ("503", 503, HttpResponseError, "ServiceUnavailable"),
    ],
)
def test_vision_errors_reach_the_sdk_with_their_code(
    fake: FakeAzureAI, fault: str, status: int, exception: type[HttpResponseError], code: str
) -> None:
    err = vision_error(fake, fault)
    assert isinstance(err, exception) and err.status_code == status
    assert err.error is not None and err.error.code == code
    assert fake.billed("vision.analyze") == 0


def test_vision_429_has_retry_after_and_the_cognitive_services_message(fake: FakeAzureAI) -> None:
    err = vision_error(fake, "429", retry_after=2)
    assert err.status_code == 429 and err.error is not None and err.error.code == "429"
    assert err.error.message == "Rate limit is exceeded. Try again in 2 seconds."
    response: Any = err.response
    assert response.headers["Retry-After"] == "2"


def test_vision_answer_without_a_caption_is_a_billed_200(fake: FakeAzureAI) -> None:
    fake.fail_next("vision.analyze", "no-caption")
    with make_vision(fake, retry_total=0) as client:
        result = analyze(client, png_bytes())
    assert result.caption is None and result.tags is not None
    assert fake.billed("vision.analyze") == 1


def test_vision_echoes_the_client_request_id(fake: FakeAzureAI) -> None:
    seen: list[Any] = []
    with make_vision(fake) as client:
        client.analyze(
            image_data=png_bytes(),
            visual_features=[VisualFeatures.TAGS],
            raw_response_hook=lambda response: seen.append(response.http_response.headers),
        )
    call = only_call(fake, "vision.analyze")
    assert seen[0]["x-ms-client-request-id"] == call.headers["x-ms-client-request-id"]
    assert seen[0]["apim-request-id"] == call.request_id and "x-ms-region" not in seen[0]
    assert call.billed and fake.billed("vision.analyze") == fake.paid("vision.analyze") == 1


# -- GPT-image rendering options and streamed previews ---------------------------------------------------------------


def post_json(fake: FakeAzureAI, route: str, body: dict[str, Any]) -> urllib.request.Request:
    return urllib.request.Request(
        f"{fake.openai_base_url}{route}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "api-key": "x"},
    )


def test_a_stream_is_server_sent_events_in_the_images_api_wire_format(fake: FakeAzureAI) -> None:
    fake.image_size_override = (32, 16)
    fake.latency["images.generate"] = 0.6
    body = {"model": "gpt-image-1.5", "prompt": "p", "stream": True, "partial_images": 2, "quality": "low"}
    started = time.monotonic()
    events: list[tuple[float, str, dict[str, Any]]] = []
    with urllib.request.urlopen(post_json(fake, "images/generations", body), timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Transfer-Encoding"] == "chunked"
        name = ""
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((time.monotonic() - started, name, json.loads(line.removeprefix("data: "))))
    names = [name for _, name, _ in events]
    assert names == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    for _, name, data in events:
        assert data["type"] == name
        assert {"b64_json", "created_at", "size", "quality", "background", "output_format"} <= set(data)
        assert (data["size"], data["quality"], data["background"], data["output_format"]) == (
            "32x16",
            "low",
            "opaque",
            "png",
        )
    assert [data.get("partial_image_index") for _, _, data in events] == [0, 1, None]
    usage = events[-1][2]["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    # The latency is spread across the events: the previews come well before the image.
    assert events[0][0] < events[1][0] < events[2][0] and events[2][0] >= 0.55 and events[1][0] < 0.5
    partial, final = (decode_png(data["b64_json"]) for data in (events[0][2], events[2][2]))
    assert partial.size == final.size == (32, 16)
    call = only_call(fake, "images.generate")
    assert call.stream and call.partial_images == "2" and call.events == names and call.billed


def test_a_stream_of_several_images_previews_each_in_turn(fake: FakeAzureAI) -> None:
    fake.image_size_override = (16, 16)
    with make_openai(fake, max_retries=0) as client:
        stream = client.images.edit(
            model="gpt-image-1.5", image=("a.png", png_bytes(), "image/png"), prompt="p", n=2, stream=True,
            partial_images=1,
        )  # fmt: skip
        kinds = [event.type for event in stream]
    assert kinds == ["image_edit.partial_image", "image_edit.completed"] * 2
    call = only_call(fake, "images.edit")
    assert call.form["stream"] == "true" and call.stream and call.events == kinds


def test_rendering_options_are_logged_and_jpeg_is_answered_as_jpeg(fake: FakeAzureAI) -> None:
    fake.image_size_override = (16, 16)
    with make_openai(fake, max_retries=0) as client:
        reply = client.images.generate(
            model="gpt-image-2", prompt="p", output_format="jpeg", output_compression=30, background="opaque"
        )
    assert reply.output_format == "jpeg" and reply.background == "opaque"
    assert reply.data and base64.b64decode(reply.data[0].b64_json or "")[:3] == b"\xff\xd8\xff"
    call = only_call(fake, "images.generate")
    assert (call.output_format, call.output_compression, call.background, call.stream) == (
        "jpeg",
        "30",
        "opaque",
        False,
    )


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"stream": True, "partial_images": 4}, "partial_images"),
        ({"stream": True, "partial_images": -1}, "partial_images"),
        ({"output_format": "webp"}, "output_format"),
        ({"output_format": "jpeg", "output_compression": 101}, "output_compression"),
        ({"output_compression": 80}, "output_compression"),  # PNG takes no compression level
        ({"output_format": "jpeg", "background": "transparent"}, "background"),
        ({"background": "clear"}, "background"),
    ],
)
def test_rendering_options_the_api_refuses_are_a_400(fake: FakeAzureAI, extra: dict[str, Any], param: str) -> None:
    with make_openai(fake, max_retries=0) as client, pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="gpt-image-1.5", prompt="p", **extra)
    assert info.value.code == "invalid_value" and info.value.param == param
    assert only_call(fake, "images.generate").status == 400 and fake.billed("images.generate") == 0


def test_mid_stream_cuts_a_stream_and_is_the_errors_own_answer_otherwise(fake: FakeAzureAI) -> None:
    fake.image_size_override = (16, 16)
    fake.fail_next("images.generate", "mid-stream", error="503")
    fake.fail_next("images.generate", "mid-stream", error="503", after=2)
    with make_openai(fake, max_retries=0) as client:
        with pytest.raises(openai.InternalServerError) as info:
            client.images.generate(model="gpt-image-1.5", prompt="p")
        assert info.value.status_code == 503
        seen: list[str] = []
        with pytest.raises(openai.APIError) as streamed:
            for event in client.images.generate(model="gpt-image-1.5", prompt="p", stream=True, partial_images=3):
                seen.append(event.type)
    assert seen == ["image_generation.partial_image"] * 2
    assert type(streamed.value) is openai.APIError and streamed.value.code == "ServiceUnavailable"
    plain, cut = fake.calls
    assert (plain.status, plain.billed, plain.fault) == (503, False, "mid-stream")
    # A stream answers 200 before it fails: its previews were drawn, so it is billed.
    assert (cut.status, cut.billed, cut.events[-1]) == (200, True, "error")
