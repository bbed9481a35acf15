# azd postdeploy hook (Windows): subscribe the blob trigger to BlobCreated events of the inputs
# container. Same steps as postdeploy.sh; see there for why this is a hook and not Bicep.
#
# Names come from the outputs of infra/main.bicep, which azd puts in the environment:
# BLOB_TRIGGER_FUNCTION_NAME, BLOB_TRIGGER_CONTAINER_NAME, AZURE_FUNCTION_APP_NAME,
# AZURE_FUNCTION_APP_URL, AZURE_RESOURCE_GROUP, AZURE_STORAGE_SYSTEM_TOPIC_NAME.
$ErrorActionPreference = 'Stop'

$required = @(
    'BLOB_TRIGGER_FUNCTION_NAME', 'BLOB_TRIGGER_CONTAINER_NAME', 'AZURE_FUNCTION_APP_NAME',
    'AZURE_FUNCTION_APP_URL', 'AZURE_RESOURCE_GROUP', 'AZURE_STORAGE_SYSTEM_TOPIC_NAME'
)
foreach ($name in $required) {
    if ([string]::IsNullOrEmpty([Environment]::GetEnvironmentVariable($name))) {
        Write-Error "postdeploy: $name is not set. Run this hook through azd (azd up or azd deploy), after azd provision."
    }
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Write-Error "postdeploy: the Azure CLI (az) is required; install it and run 'az login', then 'azd deploy'."
}

$functionName = $env:BLOB_TRIGGER_FUNCTION_NAME
$container = $env:BLOB_TRIGGER_CONTAINER_NAME
$subscriptionName = "$container-blob-created"
$subjectPrefix = "/blobServices/default/containers/$container/"

# The host creates the key when it first starts after the deployment: wait up to two minutes.
$key = ''
for ($attempt = 1; $attempt -le 12; $attempt++) {
    $key = az functionapp keys list --name $env:AZURE_FUNCTION_APP_NAME --resource-group $env:AZURE_RESOURCE_GROUP `
        --query "systemKeys.blobs_extension" --output tsv 2>$null
    if ($LASTEXITCODE -eq 0 -and -not [string]::IsNullOrWhiteSpace($key)) { break }
    Write-Host "postdeploy: waiting for the blobs_extension key of $($env:AZURE_FUNCTION_APP_NAME) ($attempt/12)..."
    Start-Sleep -Seconds 10
}
if ([string]::IsNullOrWhiteSpace($key)) {
    Write-Error ("postdeploy: $($env:AZURE_FUNCTION_APP_NAME) has no blobs_extension system key. Check that the " +
        "deployment succeeded and that function '$functionName' is listed (az functionapp function list), " +
        "then run 'azd deploy' again.")
}

# The key is a secret: it goes to Event Grid, never to the log.
$endpoint = "$($env:AZURE_FUNCTION_APP_URL)/runtime/webhooks/blobs?functionName=Host.Functions.$functionName&code=$($key.Trim())"

Write-Host "postdeploy: subscribing $functionName to BlobCreated in container '$container'..."
# The endpoint holds '&': quote it for the az.cmd wrapper, which goes through cmd.exe on Windows.
az eventgrid system-topic event-subscription create `
    --name $subscriptionName `
    --resource-group $env:AZURE_RESOURCE_GROUP `
    --system-topic-name $env:AZURE_STORAGE_SYSTEM_TOPIC_NAME `
    --endpoint-type webhook `
    --endpoint "`"$endpoint`"" `
    --included-event-types Microsoft.Storage.BlobCreated `
    --subject-begins-with $subjectPrefix `
    --output none
if ($LASTEXITCODE -ne 0) {
    Write-Error "postdeploy: creating the Event Grid subscription '$subscriptionName' failed (see the az error above)."
}
Write-Host "postdeploy: done. Upload an image to the '$container' container to start a job."
