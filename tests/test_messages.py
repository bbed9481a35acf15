"""Final messages are true when read: the check every manifest of the test session goes through.

tests/conftest.py collects every manifest the session's tests write and fails the run if one
says it will retry, shows a Python repr, or names an upload by its sha256 where the user gave a
name. These tests show the check catches each case, and lets a true message through.
"""

from __future__ import annotations

from shared.core.models import BlobRef, JobRequest, Manifest, Variation
from tests.conftest import untrue_messages

SHA = "ab" * 32


def _manifest(message: str, reason: str | None = None, filename: str | None = "cat.jpg") -> Manifest:
    request = JobRequest(
        job_id="http-" + "0" * 32,
        source=BlobRef(container="uploads", name=f"{SHA}.jpg"),
        prompt="as a watercolour",
        filename=filename,
    )
    variations = [Variation(index=0, status="failed", provider="azure-openai-gpt-image", reason=reason)]
    return Manifest(job_id=request.job_id, status="failed", message=message, request=request,
                    variations=variations, finished_at="now")  # fmt: skip


def test_a_true_message_passes() -> None:
    assert untrue_messages([_manifest("cat.jpg is 30.0 MB; the limit is 20 MB. Send a smaller image.")]) == []


def test_a_promised_retry_in_a_final_manifest_is_caught() -> None:
    assert untrue_messages([_manifest("The image model is rate limited; the job will retry.")]) != []


def test_a_python_repr_is_caught_in_the_message_and_in_a_variation_reason() -> None:
    assert untrue_messages([_manifest("The image is damaged (<_io.BytesIO object at 0x7f00c7fe89f0>).")]) != []
    assert untrue_messages([_manifest("1 of 1 failed", reason="cannot identify <object at 0x7f00>")]) != []


def test_a_hash_where_the_user_gave_a_name_is_caught() -> None:
    assert untrue_messages([_manifest(f"{SHA}.jpg: Not an image: it is a PDF document.")]) != []
    # No name of the user's: the blob's own name is all there is to show.
    assert untrue_messages([_manifest(f"{SHA}.jpg: Not an image.", filename=None)]) == []
    # The user's own file name may itself be hex.
    assert untrue_messages([_manifest(f"{SHA}.jpg: Not an image.", filename=f"{SHA}.jpg")]) == []
