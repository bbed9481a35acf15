# azd postdeploy hook (Windows): subscribe the blob trigger to BlobCreated events of the inputs
# container. Same steps as postdeploy.sh; see there for why this is a hook and not Bicep, and for
# the reasons behind the retry limits and the dead-letter destination. Keep the two in step
# (tests/test_infra.py checks both).
#
# Names come from the outputs of infra/main.bicep, which azd puts in the environment:
# BLOB_TRIGGER_FUNCTION_NAME, BLOB_TRIGGER_CONTAINER_NAME, AZURE_FUNCTION_APP_NAME,
# AZURE_FUNCTION_APP_URL, AZURE_RESOURCE_GROUP, AZURE_STORAGE_SYSTEM_TOPIC_NAME,
# AZURE_STORAGE_DEADLETTER_CONTAINER_ID; AZURE_SUBSCRIPTION_ID is azd's own (the subscription it
# deployed to). Every az call names that subscription, whatever `az account show` says.
$ErrorActionPreference = 'Stop'

$required = @(
    'AZURE_SUBSCRIPTION_ID', 'BLOB_TRIGGER_FUNCTION_NAME', 'BLOB_TRIGGER_CONTAINER_NAME', 'AZURE_FUNCTION_APP_NAME',
    'AZURE_FUNCTION_APP_URL', 'AZURE_RESOURCE_GROUP', 'AZURE_STORAGE_SYSTEM_TOPIC_NAME', 'AZURE_STORAGE_DEADLETTER_CONTAINER_ID'
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
# Dead-letter after this many delivery attempts or minutes, whichever comes first (see postdeploy.sh).
$maxDeliveryAttempts = 10
$eventTtlMinutes = 1440
$keyAttempts = 12
$retrySeconds = if ($env:POSTDEPLOY_RETRY_SECONDS) { [int]$env:POSTDEPLOY_RETRY_SECONDS } else { 10 }
# Answers of the keys API while the Functions host is still starting (see postdeploy.sh); any other
# az failure stops the hook at once.
$hostStartingPattern = 'from host runtime|invalid status .Bad Request.|ServiceUnavailable|BadGateway|GatewayTimeout'

$azErrorPath = (New-TemporaryFile).FullName
$key = ''

# Runs az with its stderr in $azErrorPath, not on the console: the caller decides what to show (and
# hides the key). 'Continue' in here because under 'Stop' Windows PowerShell turns a native
# command's stderr into a terminating error. $LASTEXITCODE is az's exit code.
function Invoke-Az {
    $ErrorActionPreference = 'Continue'
    az @args 2>$azErrorPath
}

function Get-AzError {
    $text = Get-Content -Raw -LiteralPath $azErrorPath -ErrorAction SilentlyContinue
    if ($null -eq $text) { return '' }
    # az's messages can quote a request: the key must never reach the log.
    if ($key) { $text = $text.Replace($key, '***') }
    return $text.TrimEnd()
}

# What to do about the az error in $azErrorPath (same cases, same order as postdeploy.sh).
function Get-NextStep {
    $text = Get-AzError
    $rg = $env:AZURE_RESOURCE_GROUP
    $sub = $env:AZURE_SUBSCRIPTION_ID
    if ($text -match "az login|not logged in|AADSTS|token.*expired|expired.*token|interactive authentication") {
        return "Sign in with 'az login' (the account azd uses), then run 'azd deploy' again."
    }
    if ($text -match "subscription.*(not found|could not be found|doesn't exist|does not exist)|SubscriptionNotFound|InvalidSubscriptionId") {
        return "Subscription $sub is not visible to your 'az login' account: check 'az account list --output table' and 'azd env get-value AZURE_SUBSCRIPTION_ID', then run 'azd deploy' again."
    }
    if ($text -match "AuthorizationFailed|does not have authorization|Forbidden|LinkedAuthorizationFailed") {
        return "Your account lacks a role on resource group ${rg}: Contributor (or Owner) is needed to read the app's keys and create the Event Grid subscription. Get it, then run 'azd deploy' again."
    }
    if ($text -match "not registered to use namespace|MissingSubscriptionRegistration") {
        return "Register the Event Grid provider: 'az provider register --namespace Microsoft.EventGrid --subscription $sub --wait', then run 'azd deploy' again."
    }
    if ($text -match "ResourceGroupNotFound|ResourceNotFound|was not found|could not be found|NotFound") {
        return "Resource group $rg or its resources are missing from subscription ${sub}: run 'azd provision' (or check 'azd env get-values'), then 'azd deploy'."
    }
    if ($text -match "validation handshake|webhook validation") {
        return "The function app did not answer Event Grid's validation request: check that '$functionName' is listed by 'az functionapp function list', then run 'azd deploy' again."
    }
    return "Fix the cause above, then run 'azd deploy' again."
}

# Prints az's own error text (key hidden) and a next step, and stops the hook with exit code 1.
function Stop-OnAzError([string]$what) {
    $indented = ((Get-AzError) -split "`r?`n" | ForEach-Object { "    $_" }) -join [Environment]::NewLine
    [Console]::Error.WriteLine("postdeploy: $what failed. The Azure CLI said:")
    [Console]::Error.WriteLine($indented)
    [Console]::Error.WriteLine("postdeploy: $(Get-NextStep)")
    exit 1
}

try {
    # The host creates the key when it first starts after the deployment: wait up to two minutes.
    # Only an empty answer or a host-starting error waits; any other az error stops the hook at once.
    for ($attempt = 1; ; $attempt++) {
        $key = Invoke-Az functionapp keys list --subscription $env:AZURE_SUBSCRIPTION_ID `
            --name $env:AZURE_FUNCTION_APP_NAME --resource-group $env:AZURE_RESOURCE_GROUP `
            --query "systemKeys.blobs_extension" --output tsv
        if ($LASTEXITCODE -eq 0) {
            $key = "$key".Trim()
            if ($key) { break }
            $reason = 'the host has not created it yet'
        }
        elseif ((Get-AzError) -match $hostStartingPattern) {
            $key = ''
            $reason = 'the host is still starting'
        }
        else {
            $key = ''
            Stop-OnAzError "Reading the system keys of $($env:AZURE_FUNCTION_APP_NAME)"
        }
        if ($attempt -ge $keyAttempts) {
            $last = Get-AzError
            [Console]::Error.WriteLine(("postdeploy: $($env:AZURE_FUNCTION_APP_NAME) has no blobs_extension system key ($reason). " +
                "Check that the deployment succeeded and that function '$functionName' is listed (az functionapp function list), " +
                "then run 'azd deploy' again."))
            if ($last) { [Console]::Error.WriteLine("postdeploy: the last Azure CLI answer was:`n    $last") }
            exit 1
        }
        Write-Host "postdeploy: waiting for the blobs_extension key of $($env:AZURE_FUNCTION_APP_NAME): $reason ($attempt/$keyAttempts)..."
        Start-Sleep -Seconds $retrySeconds
    }

    # The key is a secret: it goes to Event Grid, never to the log.
    $endpoint = "$($env:AZURE_FUNCTION_APP_URL)/runtime/webhooks/blobs?functionName=Host.Functions.$functionName&code=$key"

    # Dead-lettering uses Event Grid's own identity (see postdeploy.sh).
    Write-Host "postdeploy: subscribing $functionName to BlobCreated in container '$container'..."
    # The endpoint holds '&': quote it for the az.cmd wrapper, which goes through cmd.exe on Windows.
    Invoke-Az eventgrid system-topic event-subscription create `
        --subscription $env:AZURE_SUBSCRIPTION_ID `
        --name $subscriptionName `
        --resource-group $env:AZURE_RESOURCE_GROUP `
        --system-topic-name $env:AZURE_STORAGE_SYSTEM_TOPIC_NAME `
        --endpoint-type webhook `
        --endpoint "`"$endpoint`"" `
        --included-event-types Microsoft.Storage.BlobCreated `
        --subject-begins-with $subjectPrefix `
        --max-delivery-attempts $maxDeliveryAttempts `
        --event-ttl $eventTtlMinutes `
        --deadletter-endpoint $env:AZURE_STORAGE_DEADLETTER_CONTAINER_ID `
        --output none
    if ($LASTEXITCODE -ne 0) {
        Stop-OnAzError "Creating the Event Grid subscription '$subscriptionName'"
    }
    # Warnings (preview arguments and the like) still reach the user, without the key.
    $warnings = Get-AzError
    if ($warnings) { [Console]::Error.WriteLine($warnings) }
    Write-Host "postdeploy: done. Upload an image to the '$container' container to start a job."
    Write-Host "postdeploy: events Event Grid cannot deliver go to $($env:AZURE_STORAGE_DEADLETTER_CONTAINER_ID)."
}
finally {
    Remove-Item -LiteralPath $azErrorPath -Force -ErrorAction SilentlyContinue
}
