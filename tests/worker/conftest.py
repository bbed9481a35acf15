"""The host-contract suite: Varia loaded and invoked by the Python worker Azure runs.

It runs under Python 3.13 with `azure-functions-runtime` (the `.venv-worker` that `make test`
builds), once per environment, as the host starts one worker process per app:

    AZURE_FUNCTIONS_ENVIRONMENT=Production  .venv-worker/bin/python -m pytest tests/worker
    AZURE_FUNCTIONS_ENVIRONMENT=Development .venv-worker/bin/python -m pytest tests/worker

Under any other Python the suite is not collected (the machine's python3 runs the rest of the
tests); `make test` fails, never skips, when Python 3.13 is missing.

One worker per session, as in Azure: its settings come from the environment this conftest sets
before the worker's first invocation. Storage is a real Azurite (its debug log records every
request) behind a latency relay; the AI services are the fake server with API keys.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import Azurite
from tests.fake_ai import FakeAzureAI
from tests.support import REPO, azure_env
from tests.worker.durable import FakeDurableExtension
from tests.worker.host import WorkerHost, compile_protos
from tests.worker.latency import LatencyProxy

if sys.version_info < (3, 13):  # azure-functions-runtime is the worker for Python 3.13+
    collect_ignore_glob = ["test_*.py"]

ENVIRONMENT = os.environ.get("AZURE_FUNCTIONS_ENVIRONMENT") or "Production"


class Stack:
    """Everything one worker session talks to."""

    def __init__(self, azurite: Azurite, proxy: LatencyProxy, fake: FakeAzureAI) -> None:
        self.azurite, self.proxy, self.fake = azurite, proxy, fake

    @property
    def direct_connection_string(self) -> str:
        """Azurite without the relay: for tests that set up or inspect storage themselves."""
        return self.azurite.connection_string

    @property
    def app_connection_string(self) -> str:
        """What the app's AzureWebJobsStorage holds: Azurite through the latency relay."""
        return self.azurite.connection_string.replace(
            f"127.0.0.1:{self.azurite.blob_port}/", f"127.0.0.1:{self.proxy.port}/"
        )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("azurite")
    azurite = Azurite(workdir, debug_log=workdir / "requests.log")
    azurite.start()
    proxy = LatencyProxy(azurite.blob_port)
    with FakeAzureAI() as fake:
        fake.image_size_override = (96, 64)
        yield Stack(azurite, proxy, fake)
    proxy.close()
    azurite.stop()


@pytest.fixture(scope="session")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerHost]:
    """Azure's Python worker with function_app.py indexed, validated and every function loaded."""
    env = azure_env(
        stack.fake,
        stack.app_connection_string,
        FUNCTIONS_WORKER_RUNTIME="python",
        AZURE_FUNCTIONS_ENVIRONMENT=ENVIRONMENT,
    )
    os.environ.update(env)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # the host starts the worker in the app's folder
    os.chdir(REPO)
    host = WorkerHost(REPO, compile_protos(tmp_path_factory.mktemp("protos")))
    host.start()
    yield host
    host.close()


@pytest.fixture(scope="session")
def durable(worker: WorkerHost) -> Iterator[FakeDurableExtension]:
    extension = FakeDurableExtension(worker)
    yield extension
    extension.close()


@pytest.fixture
def fake(stack: Stack) -> Iterator[FakeAzureAI]:
    stack.fake.reset()
    stack.fake.image_size_override = (96, 64)
    yield stack.fake
    stack.proxy.delay_s = 0.0
