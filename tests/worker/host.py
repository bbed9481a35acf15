"""The Functions host's side of the worker protocol, driving Azure's Python worker in this process.

`azure-functions-runtime` is the Python worker Azure runs for Python 3.13+. The host's proxy
imports it and hands it each request from the host together with the host's protobuf module
(`request.properties["protos"]`). `WorkerHost` does what that proxy does: it compiles the
contract in `function_rpc.proto`, then sends worker init (which indexes `function_app.py` and
validates every function), the functions-metadata request, one load request per function and
invocation requests, on one event loop of its own, as the worker has in Azure.

The builders below make the payloads the host sends for each binding Varia uses: HTTP requests
(RpcHttp), the durable client binding's JSON, the orchestration context, activity inputs and the
SDK-type blob trigger's reference (ModelBindingData).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

PROTO = Path(__file__).with_name("function_rpc.proto")
T = TypeVar("T")


@functools.cache
def compile_protos(out_dir: Path) -> ModuleType:
    """The host's protobuf module, compiled from function_rpc.proto with grpcio-tools' protoc."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO.parent}", f"--python_out={out_dir}", PROTO.name],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(out_dir))
    return importlib.import_module("function_rpc_pb2")


class _Message:
    """The proxy's request wrapper: `.request` holds the protobuf oneof, `.properties` the extras."""

    def __init__(self, properties: Mapping[str, Any] | None = None, **request: Any) -> None:
        self.request = type("StreamingMessage", (), request)()
        self.properties = dict(properties or {})


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class InvocationFailed(AssertionError):
    """The worker answered an invocation with StatusResult.Failure (the host logs it and fails the call)."""


class WorkerHost:
    """Azure's Python worker, loaded with the app in `app_dir` and driven as the host drives it."""

    def __init__(self, app_dir: Path, protos: ModuleType) -> None:
        from azure_functions_runtime import handle_event

        self.worker = handle_event
        self.protos = protos
        self.app_dir = app_dir
        self.function_ids: dict[str, str] = {}
        self.metadata: dict[str, Any] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="worker-loop", daemon=True)
        self._thread.start()

    # ---- the protocol --------------------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Run a coroutine on the worker's event loop, from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> Any:
        """Worker init (indexes and validates the app), functions metadata, then a load per function.

        Returns the WorkerInitResponse; raises with the worker's message if init failed.
        """
        p = self.protos
        init = p.WorkerInitRequest(
            host_version="4.1044.0",
            capabilities={"RpcHttpBodyOnly": "true", "TypedDataCollection": "true"},
            worker_directory=str(self.app_dir),
            function_app_directory=str(self.app_dir),
        )
        response = self.run(
            self.worker.worker_init_request(_Message({"host": "127.0.0.1", "protos": p}, worker_init_request=init))
        )
        if response.result.status != p.StatusResult.Success:
            raise InvocationFailed(f"worker init failed: {response.result.exception.message}")
        listing = self.run(
            self.worker.functions_metadata_request(
                _Message(
                    functions_metadata_request=p.FunctionsMetadataRequest(function_app_directory=str(self.app_dir))
                )
            )
        )
        for meta in listing.function_metadata_results:
            load = p.FunctionLoadRequest(function_id=meta.function_id, metadata=meta)
            loaded = self.run(self.worker.function_load_request(_Message(function_load_request=load)))
            if loaded.result.status != p.StatusResult.Success:
                raise InvocationFailed(f"{meta.name} did not load: {loaded.result.exception.message}")
            self.function_ids[meta.name] = meta.function_id
            self.metadata[meta.name] = meta
        return response

    def raw_bindings(self, function: str) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.metadata[function].raw_bindings]

    async def invoke(
        self, function: str, inputs: Mapping[str, Any], trigger_metadata: Mapping[str, Any] | None = None
    ) -> Any:
        """One invocation request; the InvocationResponse, or InvocationFailed with the worker's message."""
        p = self.protos
        request = p.InvocationRequest(
            invocation_id=str(uuid.uuid4()),
            function_id=self.function_ids[function],
            input_data=[p.ParameterBinding(name=name, data=data) for name, data in inputs.items()],
            trigger_metadata=dict(trigger_metadata or {}),
        )
        response = await self.worker.invocation_request(_Message(invocation_request=request))
        if response.result.status != p.StatusResult.Success:
            raise InvocationFailed(f"{function} failed: {response.result.exception.message}")
        return response

    # ---- payloads, as the host builds them -------------------------------------------------------
    def http(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        """An HTTP trigger's input: RpcHttp with the raw body bytes (the worker asks for RawHttpBodyBytes)."""
        p = self.protos
        all_headers = {"host": "localhost:7071", **{k.lower(): v for k, v in (headers or {}).items()}}
        if body:
            all_headers.setdefault("content-length", str(len(body)))
        http = p.RpcHttp(
            method=method,
            url=f"http://localhost:7071{path}",
            headers=all_headers,
            params=dict(params or {}),
            query=dict(query or {}),
            nullable_headers={k: p.NullableString(value=v) for k, v in all_headers.items()},
            nullable_params={k: p.NullableString(value=v) for k, v in (params or {}).items()},
            nullable_query={k: p.NullableString(value=v) for k, v in (query or {}).items()},
        )
        if body:
            http.body.CopyFrom(p.TypedData(bytes=body))
        return p.TypedData(http=http)

    def string(self, value: str) -> Any:
        return self.protos.TypedData(string=value)

    def json_data(self, value: str) -> Any:
        return self.protos.TypedData(json=value)

    def blob_reference(self, container: str, name: str, connection: str = "AzureWebJobsStorage") -> Any:
        """What the host sends an SDK-type blob binding: a reference (ParameterBindingData), no content."""
        content = json.dumps({"Connection": connection, "ContainerName": container, "BlobName": name})
        data = self.protos.ModelBindingData(
            version="1.0", source="AzureStorageBlobs", content_type="application/json", content=content.encode()
        )
        return self.protos.TypedData(model_binding_data=data)

    def blob_trigger_metadata(
        self, container: str, name: str, url: str, properties: Mapping[str, Any], metadata: Mapping[str, str]
    ) -> dict[str, Any]:
        """The blob trigger's binding data. The host serializes BlobProperties with Newtonsoft, so the
        ETag may be a string or an empty object."""
        p = self.protos
        return {
            "BlobTrigger": p.TypedData(string=f"{container}/{name}"),
            "Uri": p.TypedData(string=url),
            "Properties": p.TypedData(json=json.dumps(properties)),
            "Metadata": p.TypedData(json=json.dumps(dict(metadata))),
            "name": p.TypedData(string=name),
        }

    # ---- answers ---------------------------------------------------------------------------------
    def http_answer(self, response: Any) -> HttpAnswer:
        """The HTTP response the worker returned as `$return`."""
        http = response.return_value.http
        kind = http.body.WhichOneof("data")
        body = b"" if kind is None else getattr(http.body, kind)
        return HttpAnswer(int(http.status_code), dict(http.headers), body.encode() if isinstance(body, str) else body)

    def returned_json(self, response: Any) -> Any:
        """A `json` return value (orchestrator state, activity result), decoded."""
        value = response.return_value
        assert value.WhichOneof("data") == "json", value
        return json.loads(value.json)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
