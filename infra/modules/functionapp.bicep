// The Flex Consumption (FC1, Linux) function app that runs Varia, with its plan.
// It holds no secret: storage, Application Insights and the AI services are all reached with the
// user-assigned managed identity.

param name string
param planName string
param location string
param tags object = {}

@description('Service name in azure.yaml: azd deploys the code to the app carrying this tag.')
param serviceName string

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('Client id of that identity: selects it wherever a host setting or SDK could pick another.')
param identityClientId string

param storageAccountName string

@description('Container that holds the deployment package (Flex Consumption deploys from blob storage).')
param deploymentContainerName string

param applicationInsightsName string

// Python versions Flex Consumption runs (Microsoft's supported-versions table): 3.13 until
// 2029-10-30, 3.12 until 2028-10-30, 3.11 until 2027-10-30.
@description('Python version of the worker; it must match the version the code and requirements are tested with.')
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
param pythonVersion string

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

// Bounds from Microsoft's Flex Consumption page ("the lowest maximum scale is currently 1, the
// highest supported value is 1000"); values below 40 are accepted only in the regions where that
// change has rolled out (azure-functions-host #10523). main.bicep picks a default of 40.
@description('Upper bound on scale-out, per function group (HTTP, blob and Durable functions scale separately). 1-1000; below 40 only in some regions.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@description('The settings the app\'s code reads (shared/config.py), merged with the host settings below.')
param appSettings object

@description('Durable activities one instance runs at once (overrides host.json), sized from the image quota.')
@minValue(1)
param maxConcurrentActivityFunctions int

@description('VNet mode: the subnet (delegated to Microsoft.App/environments) the app sends its outbound traffic through; empty for none.')
param virtualNetworkSubnetId string = ''

@description('Durable Task Scheduler backend: the scheduler\'s endpoint; empty keeps host.json\'s default, Azure Storage.')
param durableTaskSchedulerEndpoint string = ''

@description('The scheduler\'s task hub (with durableTaskSchedulerEndpoint).')
param durableTaskHubName string = ''

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Settings read by the Functions host, not by Varia's code.
var hostSettings = {
  // Identity-based host storage. Durable Functions needs all three services: queues for its
  // messages, tables for history and instance state, blobs for leases and large payloads.
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // The connection string only says where to send telemetry; with local auth disabled on the
  // component, the authentication string makes the host sign in with the app's identity.
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // host.json sets telemetryMode OpenTelemetry. With this, the Python worker passes each invocation
  // the host's trace context and sends the app's telemetry itself (shared/telemetry.py sets up the
  // Azure Monitor exporter, keyless with the authentication string above) instead of the host
  // forwarding its logs twice.
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
  AzureFunctionsJobHost__extensions__durableTask__maxConcurrentActivityFunctions: string(maxConcurrentActivityFunctions)
}

// The Durable Task Scheduler backend, written only when there is one. host.json is the same file in
// both modes (Azure Storage, its default provider): these host.json overrides switch the provider
// to azureManaged (Durable extension in bundle 4.32.0 and later; host.json asks for the newest 4.x)
// and point it at the scheduler's task hub. The connection holds no secret: the app signs in with
// its identity, which has Durable Task Data Contributor on the scheduler.
var durableTaskSchedulerSettings = empty(durableTaskSchedulerEndpoint) ? {} : {
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
  AzureFunctionsJobHost__extensions__durableTask__hubName: durableTaskHubName
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${durableTaskSchedulerEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}'
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption exists in some regions only and needs always-ready instances that bill at idle; the storage account is locally redundant anyway.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    // Linux.
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17:Callers are browsers and Event Grid, which present no client certificate.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero; always-ready instances would bill around the clock for a demo-sized load.
  // checkov:skip=CKV_AZURE_213:Flex Consumption does not support the App Service health check; the platform replaces failed instances.
  // checkov:skip=CKV_AZURE_222:The HTTP API and the Event Grid webhook must be reachable from the internet; no virtual network here.
  // checkov:skip=CKV_AZURE_78:This check wants siteConfig.ftpsState, which Flex Consumption rejects (ARM error 51021); FTP cannot be used: the 'ftp' basicPublishingCredentialsPolicies resource below (allow false) refuses the publishing credentials it needs.
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    // VNet mode: every outbound call (storage, the AI accounts) leaves through this subnet and
    // reaches the private endpoints; null leaves the app without VNet integration.
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    httpsOnly: true
    // Client certificates off: the callers are browsers and Event Grid, which present none.
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      // No ftpsState (nor linuxFxVersion, alwaysOn, use32BitWorkerProcess, netFrameworkVersion,
      // functionAppScaleLimit, preWarmedInstanceCount, functionsRuntimeScaleMonitoringEnabled):
      // Flex Consumption rejects them (ARM error 51021), and tests/test_infra.py keeps them out.
      // FTP is off anyway: the ftp publishing-credentials policy below refuses what FTP needs.
      http20Enabled: true
      // Set with the site, not in a later config resource, so the host never starts without them.
      // No FUNCTIONS_WORKER_RUNTIME or FUNCTIONS_EXTENSION_VERSION: Flex Consumption rejects them
      // (the runtime comes from functionAppConfig).
      appSettings: [for setting in items(union(hostSettings, durableTaskSchedulerSettings, appSettings)): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// Deployments and tooling authenticate with Entra ID; publishing passwords are refused.
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output uri string = 'https://${app.properties.defaultHostName}'
