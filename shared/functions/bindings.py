"""Which Azure Function listens where: the orchestrator, the HTTP routes, the blob triggers, the page.

This module only declares bindings. Each function imports its handler on first call, so that
indexing the app (every cold start) loads azure-functions, azure-functions-durable and the blob
SDK-type binding (the worker needs its `BlobClient` type to index the trigger) and little else:
pydantic, Pillow, OpenAI and Vision load in the invocation that needs them.

The Python worker runs every `async def` on one event loop. The async functions here are the
ones that await the Durable client; whatever they do that blocks (storage, Pillow, credentials)
runs in a worker thread. Routes that need no Durable client are plain `def`, which the worker
runs in its thread pool.
"""

from __future__ import annotations

import asyncio
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azurefunctions.extensions.bindings.blob import BlobClient

from shared.core.orchestrator import ORCHESTRATOR_NAME, orchestrate_job

BLOB_FUNCTION_NAME = "start_job_from_blob"
POLLING_FUNCTION_NAME = "start_job_from_blob_polling"
BLOB_PATH = "inputs/{name}"  # storage.INPUTS; a literal here so that indexing imports nothing more


def orchestrator_blueprint() -> df.Blueprint:
    bp = df.Blueprint()
    bp.function_name(ORCHESTRATOR_NAME)(bp.orchestration_trigger(context_name="context")(orchestrate_job))
    return bp


def http_blueprint(development: bool) -> df.Blueprint:
    """The job API: anonymous only in local Development; function keys (or Easy Auth) in Azure."""
    bp = df.Blueprint()
    auth = func.AuthLevel.ANONYMOUS if development else func.AuthLevel.FUNCTION

    @bp.route(route="variations", methods=["POST"], auth_level=auth)
    @bp.durable_client_input(client_name="client")
    async def start_variation(req: func.HttpRequest, client: Any) -> func.HttpResponse:
        from shared.adapters.services import get_services
        from shared.core.jobs import DurableJobClient
        from shared.functions.http_api import post_variation

        services = await asyncio.to_thread(get_services)  # the first call builds clients
        return await post_variation(req, DurableJobClient(client), services)

    @bp.route(route="variations/{job_id}", methods=["GET"], auth_level=auth)
    @bp.durable_client_input(client_name="client")
    async def variation_status(req: func.HttpRequest, client: Any) -> func.HttpResponse:
        from shared.adapters.services import get_services
        from shared.core.jobs import DurableJobClient
        from shared.functions.http_api import get_variation

        services = await asyncio.to_thread(get_services)
        return await get_variation(req.route_params["job_id"], DurableJobClient(client), services)

    @bp.route(route="variations/{job_id}/cancel", methods=["POST"], auth_level=auth)
    @bp.durable_client_input(client_name="client")
    async def cancel_variation(req: func.HttpRequest, client: Any) -> func.HttpResponse:
        from shared.adapters.services import get_services
        from shared.core.jobs import DurableJobClient
        from shared.functions import http_api

        services = await asyncio.to_thread(get_services)
        return await http_api.cancel_variation(req.route_params["job_id"], DurableJobClient(client), services)

    @bp.route(route="variations/{job_id}/images/{which}", methods=["GET"], auth_level=auth)
    def variation_image(req: func.HttpRequest) -> func.HttpResponse:
        from shared.adapters.services import get_services
        from shared.functions.http_api import get_image

        download = req.params.get("download") in ("1", "true")
        return get_image(req.route_params["job_id"], req.route_params["which"], get_services(), download)

    return bp


def blob_blueprint(development: bool) -> df.Blueprint:
    """Event Grid blob trigger on `inputs`; in Development also a polling twin (Azurite sends no events).

    The parameter is a `BlobClient` (SDK-type binding): the host passes a reference to the blob,
    never its content, so a multi-GB drop never reaches a 2 GB instance.
    """
    bp = df.Blueprint()

    @bp.function_name(BLOB_FUNCTION_NAME)
    @bp.blob_trigger(
        arg_name="blob", path=BLOB_PATH, connection="AzureWebJobsStorage", source=func.BlobSource.EVENT_GRID
    )
    @bp.durable_client_input(client_name="client")
    async def start_job_from_blob(blob: BlobClient, client: Any) -> None:
        from shared.functions.blob_trigger import from_blob_client

        await from_blob_client(blob, client)

    if development:

        @bp.function_name(POLLING_FUNCTION_NAME)
        @bp.blob_trigger(
            arg_name="blob",
            path=BLOB_PATH,
            connection="AzureWebJobsStorage",
            source=func.BlobSource.LOGS_AND_CONTAINER_SCAN,
        )
        @bp.durable_client_input(client_name="client")
        async def start_job_from_blob_polling(blob: BlobClient, client: Any) -> None:
            from shared.functions.blob_trigger import from_blob_client

            await from_blob_client(blob, client)

    return bp


def web_blueprint(development: bool) -> df.Blueprint:
    """The page's routes. Anonymous even in Azure: the files are public code and carry no data.

    The API they call keeps its function keys; in Azure open the page as /api/ui#code=<key> and
    the page sends the key with each API request.
    """
    bp = df.Blueprint()

    @bp.route(route="ui", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def web_ui_index(req: func.HttpRequest) -> func.HttpResponse:
        from shared.config import get_settings
        from shared.functions.web_ui import serve_ui

        return serve_ui(None, get_settings, development, req.headers.get("if-none-match"))

    @bp.route(route="ui/{file}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def web_ui_file(req: func.HttpRequest) -> func.HttpResponse:
        from shared.config import get_settings
        from shared.functions.web_ui import serve_ui

        name = req.route_params.get("file", "")
        return serve_ui(name, get_settings, development, req.headers.get("if-none-match"))

    return bp
