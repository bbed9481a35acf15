"""The things every step needs (settings, storage, providers, presets), built once per process."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared.adapters.providers import CredentialFactory, Providers, build_providers, default_credential
from shared.adapters.storage import BlobStorage, LocalStorage, Storage
from shared.config import Settings, get_settings

if TYPE_CHECKING:
    from shared.adapters.quota import ImageQuota

PRESETS_FILE = Path(__file__).parent.parent / "data" / "presets.json"


@functools.cache
def load_presets() -> dict[str, str]:
    """Preset name -> modification prompt, from the one data file in the repo."""
    presets: dict[str, str] = json.loads(PRESETS_FILE.read_text(encoding="utf-8"))
    return presets


@dataclass(frozen=True)
class Services:
    settings: Settings
    storage: Storage
    providers: Providers

    @functools.cached_property
    def quota(self) -> ImageQuota | None:
        """The shared schedule of image calls (shared/adapters/quota.py); None when images cost nothing."""
        from shared.adapters.quota import ImageQuota

        if not self.providers.generator.paid or not self.settings.image_deployments:
            return None
        return ImageQuota(self.storage, self.settings.image_deployments, unit=self.settings.image_quota_unit)


def build_storage(settings: Settings, credential_factory: CredentialFactory | None = None) -> Storage:
    if settings.storage == "local":
        return LocalStorage(settings.local_dir)
    credential = None
    if not settings.storage_connection:
        credential = (credential_factory or (lambda: default_credential(settings)))()
    return BlobStorage.from_settings(settings.storage_connection, settings.storage_blob_uri, credential)


def build_services(settings: Settings, credential_factory: CredentialFactory | None = None) -> Services:
    return Services(
        settings, build_storage(settings, credential_factory), build_providers(settings, credential_factory)
    )


@functools.cache
def get_services() -> Services:
    """The process-wide services of the Functions app, from the environment, on first use."""
    return build_services(get_settings())
