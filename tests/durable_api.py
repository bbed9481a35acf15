"""The slice of the Durable extension's HTTP API that the Python Durable client calls, on 127.0.0.1.

`POST {rpcBaseUrl}orchestrators/{name}/{id}` starts an instance: 202 with its management URLs,
or the extension's 500 saying an instance "already exists" while one runs; `GET
{rpcBaseUrl}instances/{id}` answers 404 for an unknown id, else the instance's status. What a
start does and what a status says are the caller's (`start`, `status`), so the same wire format
serves the start-once tests and the host-contract suite's orchestration dispatcher.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.core.jobs import JobAlreadyExists

# start(orchestrator name, instance id, input): raises JobAlreadyExists for a running instance
Start = Callable[[str, str, Any], None]
# status(instance id): the status JSON, or None for an unknown id
Status = Callable[[str], dict[str, Any] | None]


class DurableHttpApi:
    def __init__(self, start: Start, status: Status) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(start, status))
        self.server.daemon_threads = True
        self.rpc_base_url = f"http://127.0.0.1:{self.server.server_address[1]}/runtime/webhooks/durabletask/"
        threading.Thread(target=self.server.serve_forever, daemon=True, name="durable-api").start()

    def client_binding(self) -> str:
        """The JSON the host hands to a function's `durable_client_input` binding."""
        return json.dumps(
            {
                "taskHubName": "VariaHub",
                "creationUrls": {},
                "managementUrls": {},
                "baseUrl": self.rpc_base_url,
                "requiredQueryStringParameters": "code=not-a-real-key",
                "rpcBaseUrl": self.rpc_base_url,
                "httpBaseUrl": self.rpc_base_url,
                "maxGrpcMessageSizeInBytes": 0,
                "grpcHttpClientTimeout": "00:01:40",
            }
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def status_body(
    name: str, instance_id: str, runtime_status: str, input_: Any, custom: Any, output: Any
) -> dict[str, Any]:
    """An instance's status as the extension reports it."""
    return {
        "name": name,
        "instanceId": instance_id,
        "runtimeStatus": runtime_status,
        "input": input_,
        "customStatus": custom,
        "output": output,
        "createdTime": "2026-11-22T00:00:00Z",
        "lastUpdatedTime": "2026-11-22T00:00:00Z",
    }


def _handler(start: Start, status: Status) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            instance_id = self.path.split("?")[0].rstrip("/").split("/")[-1]
            found = status(instance_id)
            self._send(404, None) if found is None else self._send(200, found)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
            if isinstance(body, str):  # the Python client posts the input already JSON-encoded
                body = json.loads(body)
            *_, name, instance_id = self.path.split("?")[0].split("/")
            try:
                start(name, instance_id, body)
            except JobAlreadyExists:
                message = "An Orchestration instance with the status Running already exists."
                self._send(
                    500,
                    {
                        "Message": "Something went wrong while processing your request",
                        "ExceptionMessage": message,
                        "ExceptionType": "System.InvalidOperationException",
                    },
                )
                return  # fmt: skip
            base = self.path.split("orchestrators/")[0] + f"instances/{instance_id}"
            management = {
                "id": instance_id,
                "statusQueryGetUri": base,
                "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}",
                "terminatePostUri": f"{base}/terminate",
                "purgeHistoryDeleteUri": base,
            }
            self._send(202, management)

    return Handler
