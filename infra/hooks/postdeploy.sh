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
# AZURE_FUNCTION_APP_URL, AZURE_RESOURCE_GROUP, AZURE_STORAGE_SYSTEM_TOPIC_NAME,
# AZURE_STORAGE_DEADLETTER_CONTAINER_ID; AZURE_SUBSCRIPTION_ID is azd's own (the subscription it
# deployed to). Every az call names that subscription, whatever `az account show` says.
#
# postdeploy.ps1 does the same on Windows: keep the two in step (tests/test_infra.py checks both).
set -eu

need() {
    eval "value=\${$1:-}"
    if [ -z "$value" ]; then
        echo "postdeploy: $1 is not set. Run this hook through azd (azd up or azd deploy), after azd provision." >&2
        exit 1
    fi
}
for name in AZURE_SUBSCRIPTION_ID BLOB_TRIGGER_FUNCTION_NAME BLOB_TRIGGER_CONTAINER_NAME AZURE_FUNCTION_APP_NAME \
    AZURE_FUNCTION_APP_URL AZURE_RESOURCE_GROUP AZURE_STORAGE_SYSTEM_TOPIC_NAME AZURE_STORAGE_DEADLETTER_CONTAINER_ID; do
    need "$name"
done
command -v az >/dev/null 2>&1 || {
    echo "postdeploy: the Azure CLI (az) is required; install it and run 'az login', then 'azd deploy'." >&2
    exit 1
}

subscription_name="${BLOB_TRIGGER_CONTAINER_NAME}-blob-created"
subject_prefix="/blobServices/default/containers/${BLOB_TRIGGER_CONTAINER_NAME}/"
# Event Grid retries a failed delivery with back-off and dead-letters the event after this many
# attempts or this many minutes, whichever comes first (allowed: 1-30 attempts, 1-1440 minutes;
# Event Grid docs, "Set dead-letter location and retry policy"). The blob trigger itself retries a
# failing function 5 times and then writes to its poison queue: these limits only cover an app
# that cannot be reached (stopped, failing to start, key rotated before this hook ran again).
max_delivery_attempts=10
event_ttl_minutes=1440
key_attempts=12
retry_seconds="${POSTDEPLOY_RETRY_SECONDS:-10}"
# Answers of the keys API while the Functions host is still starting; they go away by themselves
# ("Encountered an error (ServiceUnavailable) from host runtime", "Operation returned an invalid
# status 'Bad Request'": azure-cli #20892). Any other az failure stops the hook at once.
host_starting_pattern='from host runtime|invalid status .Bad Request.|ServiceUnavailable|BadGateway|GatewayTimeout'

az_error=$(mktemp)
trap 'rm -f "$az_error"' EXIT
trap 'exit 130' INT TERM
key=""

# az's messages can quote a request: the key must never reach the log.
redact() {
    if [ -n "$key" ]; then
        POSTDEPLOY_SECRET="$key" awk '{
            secret = ENVIRON["POSTDEPLOY_SECRET"]
            while ((at = index($0, secret)) > 0) $0 = substr($0, 1, at - 1) "***" substr($0, at + length(secret))
            print
        }'
    else
        cat
    fi
}

# What to do about the az error in $az_error.
next_step() {
    if grep -Eqi "az login|not logged in|AADSTS|token.*expired|expired.*token|interactive authentication" "$az_error"; then
        echo "Sign in with 'az login' (the account azd uses), then run 'azd deploy' again."
    elif grep -Eqi "subscription.*(not found|could not be found|doesn't exist|does not exist)|SubscriptionNotFound|InvalidSubscriptionId" "$az_error"; then
        echo "Subscription $AZURE_SUBSCRIPTION_ID is not visible to your 'az login' account: check 'az account list --output table' and 'azd env get-value AZURE_SUBSCRIPTION_ID', then run 'azd deploy' again."
    elif grep -Eqi "AuthorizationFailed|does not have authorization|Forbidden|LinkedAuthorizationFailed" "$az_error"; then
        echo "Your account lacks a role on resource group $AZURE_RESOURCE_GROUP: Contributor (or Owner) is needed to read the app's keys and create the Event Grid subscription. Get it, then run 'azd deploy' again."
    elif grep -Eqi "not registered to use namespace|MissingSubscriptionRegistration" "$az_error"; then
        echo "Register the Event Grid provider: 'az provider register --namespace Microsoft.EventGrid --subscription $AZURE_SUBSCRIPTION_ID --wait', then run 'azd deploy' again."
    elif grep -Eqi "ResourceGroupNotFound|ResourceNotFound|was not found|could not be found|NotFound" "$az_error"; then
        echo "Resource group $AZURE_RESOURCE_GROUP or its resources are missing from subscription $AZURE_SUBSCRIPTION_ID: run 'azd provision' (or check 'azd env get-values'), then 'azd deploy'."
    elif grep -Eqi "validation handshake|webhook validation" "$az_error"; then
        echo "The function app did not answer Event Grid's validation request: check that '$BLOB_TRIGGER_FUNCTION_NAME' is listed by 'az functionapp function list', then run 'azd deploy' again."
    else
        echo "Fix the cause above, then run 'azd deploy' again."
    fi
}

# $1: what failed. Prints az's own error text (key redacted) and a next step, and stops the hook.
fail_az() {
    echo "postdeploy: $1 failed. The Azure CLI said:" >&2
    redact <"$az_error" | sed 's/^/    /' >&2
    echo "postdeploy: $(next_step)" >&2
    exit 1
}

# The host creates the key when it first starts after the deployment: wait up to two minutes.
# Only an empty answer or a host-starting error waits; any other az error stops the hook at once.
attempt=1
while :; do
    if key=$(az functionapp keys list --subscription "$AZURE_SUBSCRIPTION_ID" \
        --name "$AZURE_FUNCTION_APP_NAME" --resource-group "$AZURE_RESOURCE_GROUP" \
        --query "systemKeys.blobs_extension" --output tsv 2>"$az_error"); then
        [ -n "$key" ] && break
        reason="the host has not created it yet"
    elif grep -Eqi "$host_starting_pattern" "$az_error"; then
        key=""
        reason="the host is still starting"
    else
        key=""
        fail_az "Reading the system keys of $AZURE_FUNCTION_APP_NAME"
    fi
    if [ "$attempt" -ge "$key_attempts" ]; then
        echo "postdeploy: $AZURE_FUNCTION_APP_NAME has no blobs_extension system key ($reason). Check that the" >&2
        echo "deployment succeeded and that function '$BLOB_TRIGGER_FUNCTION_NAME' is listed (az functionapp function list)," >&2
        echo "then run 'azd deploy' again." >&2
        if [ -s "$az_error" ]; then
            echo "postdeploy: the last Azure CLI answer was:" >&2
            redact <"$az_error" | sed 's/^/    /' >&2
        fi
        exit 1
    fi
    echo "postdeploy: waiting for the blobs_extension key of $AZURE_FUNCTION_APP_NAME: $reason ($attempt/$key_attempts)..."
    sleep "$retry_seconds"
    attempt=$((attempt + 1))
done

# The key is a secret: it goes to Event Grid, never to the log.
endpoint="${AZURE_FUNCTION_APP_URL}/runtime/webhooks/blobs?functionName=Host.Functions.${BLOB_TRIGGER_FUNCTION_NAME}&code=${key}"

# Dead-lettering uses Event Grid's own identity (no identity on the system topic, no role to grant):
# the REST reference for deadLetterDestination says so, and the core CLI's system-topic command
# offers no --deadletter-identity. A firewalled storage account would need the topic's
# system-assigned identity instead (deadLetterWithResourceIdentity).
echo "postdeploy: subscribing $BLOB_TRIGGER_FUNCTION_NAME to BlobCreated in container '$BLOB_TRIGGER_CONTAINER_NAME'..."
if ! az eventgrid system-topic event-subscription create \
    --subscription "$AZURE_SUBSCRIPTION_ID" \
    --name "$subscription_name" \
    --resource-group "$AZURE_RESOURCE_GROUP" \
    --system-topic-name "$AZURE_STORAGE_SYSTEM_TOPIC_NAME" \
    --endpoint-type webhook \
    --endpoint "$endpoint" \
    --included-event-types Microsoft.Storage.BlobCreated \
    --subject-begins-with "$subject_prefix" \
    --max-delivery-attempts "$max_delivery_attempts" \
    --event-ttl "$event_ttl_minutes" \
    --deadletter-endpoint "$AZURE_STORAGE_DEADLETTER_CONTAINER_ID" \
    --output none 2>"$az_error"; then
    fail_az "Creating the Event Grid subscription '$subscription_name'"
fi
# Warnings (preview arguments and the like) still reach the user, without the key.
if [ -s "$az_error" ]; then
    redact <"$az_error" >&2
fi
echo "postdeploy: done. Upload an image to the '$BLOB_TRIGGER_CONTAINER_NAME' container to start a job."
echo "postdeploy: events Event Grid cannot deliver go to $AZURE_STORAGE_DEADLETTER_CONTAINER_ID."
