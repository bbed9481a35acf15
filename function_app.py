"""Varia's Azure Functions app: registers the orchestrator, the activities and the triggers.

`AZURE_FUNCTIONS_ENVIRONMENT=Development` (set by local.settings.json for `func start` with
Azurite) registers the polling blob trigger and anonymous API routes; Azure gets neither.

Application Insights (OpenTelemetry, host.json `telemetryMode`) is set up by shared/telemetry.py
when APPLICATIONINSIGHTS_CONNECTION_STRING is set, on the first invocation that records
something: indexing the app imports none of it.
"""

import os

import azure.durable_functions as df

from activities import BLUEPRINTS
from shared.functions import bindings

DEVELOPMENT = os.environ.get("AZURE_FUNCTIONS_ENVIRONMENT", "") == "Development"

app = df.DFApp()
app.register_functions(bindings.orchestrator_blueprint())
for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)
app.register_functions(bindings.http_blueprint(DEVELOPMENT))
app.register_functions(bindings.blob_blueprint(DEVELOPMENT))
app.register_functions(bindings.web_blueprint(DEVELOPMENT))
