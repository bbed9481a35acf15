"""Varia's Azure Functions app: registers the orchestrator, the activities and the triggers.

`AZURE_FUNCTIONS_ENVIRONMENT=Development` (set by local.settings.json for `func start` with
Azurite) registers the polling blob trigger and anonymous HTTP routes; Azure gets neither.
"""

import os

import azure.durable_functions as df

from activities import BLUEPRINTS
from shared import blob_trigger, http_api, orchestrator, web_ui

DEVELOPMENT = os.environ.get("AZURE_FUNCTIONS_ENVIRONMENT", "") == "Development"

app = df.DFApp()
app.register_functions(orchestrator.bp)
for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)
app.register_functions(http_api.build_blueprint(DEVELOPMENT))
app.register_functions(blob_trigger.build_blueprint(DEVELOPMENT))
app.register_functions(web_ui.build_blueprint(DEVELOPMENT))
