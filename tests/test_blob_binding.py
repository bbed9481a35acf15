"""The blob trigger's SDK-type binding, with the identity-based settings the Bicep writes.

In Azure the app has no storage connection string: infra/modules/functionapp.bicep writes
AzureWebJobsStorage__blobServiceUri, __credential and __clientId for the user-assigned identity.
The binding (azurefunctions-extensions-bindings-blob) must build its BlobClient from exactly
those, with a managed identity credential for that client id. Building it asks for no token.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from azure.identity import ManagedIdentityCredential
from azure.storage.blob import BlobClient as StorageBlobClient
from azurefunctions.extensions.base import Datum
from azurefunctions.extensions.bindings.blob import BlobClient, BlobClientConverter

from tests.support import REPO

BICEP = REPO / "infra" / "modules" / "functionapp.bicep"


def test_the_bicep_writes_the_identity_settings_the_binding_reads() -> None:
    written = set(re.findall(r"^\s*(AzureWebJobsStorage__\w+):", BICEP.read_text(), re.M))
    assert {"AzureWebJobsStorage__blobServiceUri", "AzureWebJobsStorage__credential"} <= written
    assert "AzureWebJobsStorage__clientId" in written


def test_the_trigger_binding_builds_a_keyless_blob_client_for_the_apps_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.setenv("AzureWebJobsStorage__blobServiceUri", "https://variastore.blob.core.windows.net/")
    monkeypatch.setenv("AzureWebJobsStorage__credential", "managedidentity")
    monkeypatch.setenv("AzureWebJobsStorage__clientId", "11111111-2222-3333-4444-555555555555")
    reference = SimpleNamespace(
        version="1.0",
        source="AzureStorageBlobs",
        content_type="application/json",
        content=json.dumps({"Connection": "AzureWebJobsStorage", "ContainerName": "inputs", "BlobName": "cat.png"}),
    )

    client = BlobClientConverter.decode(Datum(reference, "model_binding_data"), trigger_metadata={}, pytype=BlobClient)

    assert isinstance(client, StorageBlobClient)
    assert client.url == "https://variastore.blob.core.windows.net/inputs/cat.png"
    assert isinstance(client.credential, ManagedIdentityCredential)
