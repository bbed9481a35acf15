"""Settings: defaults, provider resolution, errors that name the setting, and the documented contract."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.adapters.services import build_services
from shared.config import (
    README_END,
    README_START,
    SETTING_NAMES,
    SETTINGS,
    ConfigError,
    Settings,
    local_settings_example,
    main,
    readme_with_table,
    write_docs,
)
from shared.core.jobs import is_job_id
from tests.support import REPO


def test_nothing_configured_means_offline_and_local() -> None:
    settings = Settings.from_env({})
    assert (settings.caption_provider, settings.compose_provider, settings.image_provider) == ("offline",) * 3
    assert settings.storage == "local" and settings.local_dir == ".varia"
    assert settings.default_variations == 2 and settings.max_variations == 4


def test_azure_endpoints_select_azure_providers_and_storage() -> None:
    settings = Settings.from_env(
        {
            "AZURE_OPENAI_ENDPOINT": "https://varia.openai.azure.com/",
            "AZURE_VISION_ENDPOINT": "https://varia-vision.cognitiveservices.azure.com",
            "AzureWebJobsStorage__accountName": "variastore",
        }
    )
    assert (settings.caption_provider, settings.compose_provider, settings.image_provider) == (
        "vision",
        "chat",
        "gpt-image",
    )
    assert settings.openai_endpoint == "https://varia.openai.azure.com"
    assert settings.storage == "blob" and settings.storage_blob_uri == "https://variastore.blob.core.windows.net"


def test_chat_caption_fallback_without_vision() -> None:
    settings = Settings.from_env({"AZURE_OPENAI_ENDPOINT": "https://varia.openai.azure.com"})
    assert settings.caption_provider == "chat"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"VARIA_MAX_VARIATIONS": "eleven"}, "VARIA_MAX_VARIATIONS"),
        ({"VARIA_MAX_VARIATIONS": "11"}, "VARIA_MAX_VARIATIONS"),
        ({"VARIA_DEFAULT_VARIATIONS": "5"}, "VARIA_DEFAULT_VARIATIONS"),
        ({"VARIA_IMAGE_PROVIDER": "dalle-3"}, "VARIA_IMAGE_PROVIDER"),
        ({"VARIA_IMAGE_PROVIDER": "gpt-image"}, "AZURE_OPENAI_ENDPOINT"),
        ({"VARIA_CAPTION_PROVIDER": "vision"}, "AZURE_VISION_ENDPOINT"),
        ({"VARIA_STORAGE": "blob"}, "AzureWebJobsStorage"),
        ({"AZURE_OPENAI_ENDPOINT": "http://varia.example.com"}, "AZURE_OPENAI_ENDPOINT"),
        ({"VARIA_IMAGE_QUALITY": "ultra"}, "VARIA_IMAGE_QUALITY"),
    ],
)
def test_bad_settings_fail_with_the_setting_named(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_every_bad_setting_is_reported_at_once() -> None:
    env = {
        "VARIA_MAX_VARIATIONS": "eleven",
        "VARIA_IMAGE_QUALITY": "ultra",
        "AZURE_OPENAI_ENDPOINT": "http://x.example",
    }
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    message = str(raised.value)
    assert message.startswith("3 bad settings: ")
    assert "AZURE_OPENAI_ENDPOINT='http://x.example': must be an https:// endpoint" in message
    assert "VARIA_IMAGE_QUALITY='ultra': Input should be 'low', 'medium', 'high' or 'auto'" in message
    assert "VARIA_MAX_VARIATIONS='eleven': Input should be a valid integer" in message
    assert message.endswith("local.settings.json under func start, or the environment, then restart.")


def test_settings_that_depend_on_each_other_are_reported_together() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"VARIA_IMAGE_PROVIDER": "gpt-image", "VARIA_DEFAULT_VARIATIONS": "5"})
    assert str(raised.value).startswith(
        "2 bad settings: VARIA_IMAGE_PROVIDER=gpt-image needs AZURE_OPENAI_ENDPOINT or VARIA_IMAGE_DEPLOYMENTS; "
        "VARIA_DEFAULT_VARIATIONS=5 is more than VARIA_MAX_VARIATIONS=4."
    )


def test_the_example_file_is_generated_from_the_declaration() -> None:
    assert (REPO / "local.settings.json.example").read_text() == local_settings_example()
    values = json.loads(local_settings_example())["Values"]
    assert [name for name in values if name in SETTING_NAMES] == list(SETTING_NAMES)
    assert all(values[spec.name] == spec.default for spec in SETTINGS)


def test_the_readme_table_is_generated_from_the_declaration() -> None:
    readme = (REPO / "README.md").read_text()
    assert readme_with_table(readme) == readme, "run `python -m shared.config --write`"
    documented = re.findall(
        r"^\| `([A-Za-z_]+)` \| (.*?) \|", readme.split(README_START)[1].split(README_END)[0], flags=re.M
    )
    assert [(name, default) for name, default in documented] == [
        (spec.name, f"`{spec.default}`" if spec.default else "(empty)") for spec in SETTINGS
    ]


def test_a_setting_added_to_the_declaration_shows_in_both_generated_docs(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(f"intro\n{README_START}\nold table\n{README_END}\nrest\n")
    assert main(["--write"], write=lambda _: write_docs(tmp_path)) == 0
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith(f"intro\n{README_START}\n| setting | default | what it does |")
    assert readme.endswith(f"{README_END}\nrest\n") and "old table" not in readme
    assert (tmp_path / "local.settings.json.example").read_text() == local_settings_example()
    assert main([]) == 2


def test_offline_mode_builds_no_azure_credential_or_client(tmp_path: Path) -> None:
    def no_credential() -> object:
        raise AssertionError("offline mode asked for an Azure credential")

    services = build_services(Settings.from_env({"VARIA_LOCAL_DIR": str(tmp_path)}), no_credential)
    assert services.providers.names() == {"caption": "offline", "compose": "offline", "image": "offline"}
    assert services.providers.paid() == {"caption": False, "compose": False, "image": False, "moderation": False}


def test_keyless_azure_asks_for_one_credential_and_no_token_at_build_time(tmp_path: Path) -> None:
    built: list[object] = []

    class CountingCredential:
        def get_token(self, *scopes: str, **kwargs: object) -> object:
            raise AssertionError("no token may be requested while building clients")

    def factory() -> object:
        built.append(CountingCredential())
        return built[-1]

    env = {
        "AZURE_OPENAI_ENDPOINT": "https://varia.openai.azure.com",
        "AZURE_VISION_ENDPOINT": "https://varia.cognitiveservices.azure.com",
        "VARIA_LOCAL_DIR": str(tmp_path),
    }
    services = build_services(Settings.from_env(env), factory)
    assert services.providers.names()["image"] == "azure-openai-gpt-image"
    assert services.providers.paid() == {"caption": True, "compose": True, "image": True, "moderation": False}
    assert len(built) == 1  # one credential shared by Vision and OpenAI


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("http-" + "0" * 32, True),
        ("blob-" + "a1" * 16, True),
        ("http-" + "0" * 32 + "\n", False),  # `$` alone would accept the newline
        ("http-" + "0" * 31, False),
        ("HTTP-" + "0" * 32, False),
        ("http-" + "٠" * 32, False),  # Arabic-Indic zeros are digits to \d, not to Varia
    ],
)
def test_job_ids_are_matched_whole(value: str, valid: bool) -> None:
    assert is_job_id(value) is valid


def test_image_deployments_are_a_json_list_each_with_its_own_quota() -> None:
    raw = (
        '[{"endpoint": "https://varia-sweden.openai.azure.com/", "deployment": "gpt-image-2", "rpm": 6},'
        ' {"endpoint": "https://varia-poland.openai.azure.com", "deployment": "gpt-image-2", "rpm": 12}]'
    )
    settings = Settings.from_env({"VARIA_IMAGE_DEPLOYMENTS": raw})
    assert settings.image_provider == "gpt-image"
    assert [(d.key, d.rpm) for d in settings.image_deployments] == [
        ("varia-sweden.openai.azure.com/gpt-image-2", 6),
        ("varia-poland.openai.azure.com/gpt-image-2", 12),
    ]
    # Without the list, the one deployment of AZURE_OPENAI_ENDPOINT, at VARIA_IMAGE_REQUESTS_PER_MINUTE.
    one = Settings.from_env(
        {"AZURE_OPENAI_ENDPOINT": "https://varia.openai.azure.com", "VARIA_IMAGE_REQUESTS_PER_MINUTE": "9"}
    )
    assert [(d.endpoint, d.deployment, d.rpm) for d in one.image_deployments] == [
        ("https://varia.openai.azure.com", "gpt-image-2", 9)
    ]
    assert Settings.from_env({}).image_deployments == ()


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("{", "is not JSON"),
        ('{"endpoint": "https://a.openai.azure.com"}', "must be a JSON list"),
        ('[{"endpoint": "http://a.example", "deployment": "d", "rpm": 6}]', "must be an https:// endpoint"),
        ('[{"endpoint": "https://a.openai.azure.com", "deployment": "d", "rpm": 0}]', "greater than or equal to 1"),
        (
            '[{"endpoint": "https://a.openai.azure.com", "deployment": "d", "rpm": 6},'
            ' {"endpoint": "https://a.openai.azure.com/", "deployment": "d", "rpm": 6}]',
            "names one deployment twice",
        ),
    ],
)
def test_a_bad_deployment_list_is_named_with_what_is_wrong(raw: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"VARIA_IMAGE_DEPLOYMENTS": raw})
    assert "VARIA_IMAGE_DEPLOYMENTS" in str(raised.value) and says in str(raised.value)
