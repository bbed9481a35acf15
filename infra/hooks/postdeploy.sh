#!/bin/sh
# azd postdeploy hook: subscribe the blob trigger to BlobCreated events of the inputs container.
#
# Why a hook and not Bicep: the webhook URL carries the function app's blobs_extension system key,
# which exists only once the code is deployed and the host has started. azd runs this after every
# `azd deploy` / `azd up`; it is safe to run again (create updates an existing subscription, so a
# rotated key is picked up).
#
# Names come from the outputs of infra/main.bicep, which azd puts in the environment:
# BLOB_TRIGGER_FUNCTION_NAME, BLOB_TRIGGER_CONTAINER_NAME, AZURE_FUNCTION_APP_NAME,
# AZURE_FUNCTION_APP_URL, AZURE_RESOURCE_GROUP, AZURE_STORAGE_SYSTEM_TOPIC_NAME.
set -eu

need() {
    eval "value=\${$1:-}"
    if [ -z "$value" ]; then
        echo "postdeploy: $1 is not set. Run this hook through azd (azd up or azd deploy), after azd provision." >&2
        exit 1
    fi
}
for name in BLOB_TRIGGER_FUNCTION_NAME BLOB_TRIGGER_CONTAINER_NAME AZURE_FUNCTION_APP_NAME \
    AZURE_FUNCTION_APP_URL AZURE_RESOURCE_GROUP AZURE_STORAGE_SYSTEM_TOPIC_NAME; do
    need "$name"
done
command -v az >/dev/null 2>&1 || {
    echo "postdeploy: the Azure CLI (az) is required; install it and run 'az login', then 'azd deploy'." >&2
    exit 1
}

subscription_name="${BLOB_TRIGGER_CONTAINER_NAME}-blob-created"
subject_prefix="/blobServices/default/containers/${BLOB_TRIGGER_CONTAINER_NAME}/"

# The host creates the key when it first starts after the deployment: wait up to two minutes.
key=""
attempt=1
while [ "$attempt" -le 12 ]; do
    key=$(az functionapp keys list --name "$AZURE_FUNCTION_APP_NAME" --resource-group "$AZURE_RESOURCE_GROUP" \
        --query "systemKeys.blobs_extension" --output tsv 2>/dev/null || true)
    [ -n "$key" ] && break
    echo "postdeploy: waiting for the blobs_extension key of $AZURE_FUNCTION_APP_NAME ($attempt/12)..."
    sleep 10
    attempt=$((attempt + 1))
done
if [ -z "$key" ]; then
    echo "postdeploy: $AZURE_FUNCTION_APP_NAME has no blobs_extension system key. Check that the deployment" >&2
    echo "succeeded and that function '$BLOB_TRIGGER_FUNCTION_NAME' is listed (az functionapp function list)," >&2
    echo "then run 'azd deploy' again." >&2
    exit 1
fi

# The key is a secret: it goes to Event Grid, never to the log.
endpoint="${AZURE_FUNCTION_APP_URL}/runtime/webhooks/blobs?functionName=Host.Functions.${BLOB_TRIGGER_FUNCTION_NAME}&code=${key}"

echo "postdeploy: subscribing $BLOB_TRIGGER_FUNCTION_NAME to BlobCreated in container '$BLOB_TRIGGER_CONTAINER_NAME'..."
az eventgrid system-topic event-subscription create \
    --name "$subscription_name" \
    --resource-group "$AZURE_RESOURCE_GROUP" \
    --system-topic-name "$AZURE_STORAGE_SYSTEM_TOPIC_NAME" \
    --endpoint-type webhook \
    --endpoint "$endpoint" \
    --included-event-types Microsoft.Storage.BlobCreated \
    --subject-begins-with "$subject_prefix" \
    --output none
echo "postdeploy: done. Upload an image to the '$BLOB_TRIGGER_CONTAINER_NAME' container to start a job."
