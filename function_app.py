"""Varia's Azure Functions app: registers the orchestrator, the activities and the triggers.

`AZURE_FUNCTIONS_ENVIRONMENT=Development` (set by local.settings.json for `func start` with
Azurite) registers the polling blob trigger and anonymous API routes; Azure gets neither.
"""

import os

import azure.durable_functions as df

from activities import BLUEPRINTS
from shared import functions

DEVELOPMENT = os.environ.get("AZURE_FUNCTIONS_ENVIRONMENT", "") == "Development"

app = df.DFApp()
app.register_functions(functions.orchestrator_blueprint())
for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)
app.register_functions(functions.http_blueprint(DEVELOPMENT))
app.register_functions(functions.blob_blueprint(DEVELOPMENT))
app.register_functions(functions.web_blueprint(DEVELOPMENT))
