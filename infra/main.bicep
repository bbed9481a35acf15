// Varia on Azure, provisioned by `azd up`: a Flex Consumption function app (Durable Functions),
// its storage account, Application Insights, Azure OpenAI (chat + GPT-image, and optionally more
// GPT-image deployments in other regions), Azure AI Vision and Azure AI Content Safety.
// Everything is keyless: the app uses a user-assigned managed identity and role assignments, and
// no resource accepts API keys or storage account keys.

targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------
// Parameters (azd fills them from infra/main.parameters.json and `azd env set`)
// ---------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the azd environment: names the resource group and seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region of the function app, its storage and monitoring. It must offer Flex Consumption: az functionapp list-flexconsumption-locations.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

// The GPT-image models (gpt-image-2, gpt-image-1.5) are served with Global Standard deployments
// from these five regions only (README, "Models": the image how-to's region list); the chat
// model default (gpt-5.4-mini, Global Standard) is served from all of them.
// No default here nor in main.parameters.json, so that `azd up` asks for it when
// AZURE_OPENAI_LOCATION is not set: azd's location prompt then lists only the allowed regions where
// the subscription has this much quota left for each usage (azd docs, "Work with Azure Developer CLI
// metadata", usageName), with eastus2 first. The numbers are the default chatCapacity and
// imageCapacity (azd reads literals only); infra/hooks/preflight.py checks the real settings.
@description('Region of the Azure OpenAI account: one that serves the GPT-image models.')
@allowed([
  'eastus2'
  'polandcentral'
  'swedencentral'
  'uaenorth'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
    default: 'eastus2'
    usageName: [
      'OpenAI.GlobalStandard.gpt-5.4-mini,30'
      'OpenAI.GlobalStandard.gpt-image-2,2'
    ]
  }
})
param openAiLocation string

// Image Analysis 4.0 captions are served only from these regions.
@description('Region of the Azure AI Vision account: one that serves Image Analysis 4.0 captions.')
@allowed([
  'eastus'
  'westus'
  'francecentral'
  'northeurope'
  'westeurope'
  'southeastasia'
  'eastasia'
  'koreacentral'
])
param visionLocation string = 'eastus'

// Azure AI Content Safety regions that serve content harms (text and image analysis) and Prompt
// Shields: "Region availability and service limits", Guardrails in Azure AI Content Safety
// (learn.microsoft.com/azure/ai-services/content-safety/region-availability, 2026-09).
@description('Region of the Azure AI Content Safety account: one that serves text and image analysis and Prompt Shields.')
@allowed([
  'brazilsouth'
  'canadacentral'
  'canadaeast'
  'centralus'
  'eastus'
  'eastus2'
  'northcentralus'
  'southcentralus'
  'westus'
  'westus2'
  'westus3'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'polandcentral'
  'spaincentral'
  'swedencentral'
  'switzerlandnorth'
  'switzerlandwest'
  'uksouth'
  'westeurope'
  'australiaeast'
  'japaneast'
  'koreacentral'
  'southeastasia'
  'southindia'
  'southafricanorth'
  'uaenorth'
])
param contentSafetyLocation string = 'eastus'

@description('Deployment name of the chat model that composes prompts (AZURE_OPENAI_CHAT_DEPLOYMENT).')
param chatDeploymentName string = 'gpt-5.4-mini'

// gpt-5.4-mini: GA, no access form, retires 2027-09-21 (retirement table of 2026-09-02).
// gpt-4.1-mini, the earlier default, is Legacy and closed to new customers after its deprecation.
// The app reads the model (AZURE_OPENAI_CHAT_MODEL) to decide whether to send reasoning_effort.
@description('Chat model to deploy (AZURE_OPENAI_CHAT_MODEL).')
param chatModelName string = 'gpt-5.4-mini'

@description('Version of the chat model.')
param chatModelVersion string = '2026-03-17'

@description('Chat deployment capacity, in thousands of tokens per minute.')
@minValue(1)
param chatCapacity int = 30

@description('Deployment name of the GPT-image model that draws the variations (AZURE_OPENAI_IMAGE_DEPLOYMENT).')
param imageDeploymentName string = 'gpt-image-2'

// gpt-image-2 (2026-04-21): GA, deployable without an access form, retires 2027-10-21, and takes
// any size (a real 16:9 for the classroom). gpt-image-1-mini and gpt-image-1.5 need the limited
// access form, and gpt-image-1-mini retires 2027-04-07. DALL-E 3 is retired on Azure.
// The app reads the model (AZURE_OPENAI_IMAGE_MODEL) to choose sizes and timeouts.
@description('GPT-image model to deploy (AZURE_OPENAI_IMAGE_MODEL); gpt-image-1.5 and gpt-image-1-mini need Microsoft\'s limited access approval.')
@allowed([
  'gpt-image-2'
  'gpt-image-1.5'
  'gpt-image-1-mini'
])
param imageModelName string = 'gpt-image-2'

@description('Version of the GPT-image model: 2026-04-21 for gpt-image-2, 2025-12-16 for gpt-image-1.5, 2025-10-06 for gpt-image-1-mini.')
param imageModelVersion string = '2026-04-21'

@description('Image deployment capacity, in units of 3 requests per minute; lower it to 1 if the deployment fails for quota.')
@minValue(1)
param imageCapacity int = 2

// Quota is per region, per subscription and per model: each region listed here gets an account of
// its own with an image deployment of imageCapacity units, and the app spreads its image calls over
// all of them (VARIA_IMAGE_DEPLOYMENTS). A string, not an array, so that `azd env set
// AZURE_OPENAI_IMAGE_REGIONS swedencentral,westus3` works on every azd version and shell.
// modules/openai-images.bicep refuses a region outside openAiLocation's five (@allowed).
@description('Regions with a GPT-image deployment, comma-separated (e.g. \'eastus2,swedencentral,westus3\'), each one of openAiLocation\'s five. openAiLocation always has one, listed or not; empty: only openAiLocation.')
param imageRegions string = ''

@description('GPT-image quality (VARIA_IMAGE_QUALITY): low is the cheapest per image.')
@allowed([
  'low'
  'medium'
  'high'
  'auto'
])
param imageQuality string = 'low'

@description('Safety profile every job runs under, whatever a request asks (VARIA_ENFORCED_PROFILE): kids locks a classroom; empty lets each job choose.')
@allowed([
  ''
  'general'
  'kids'
])
param enforcedProfile string = ''

// Flex Consumption runs Python 3.11, 3.12 and 3.13; 3.13 is supported the longest (end of life
// 2029-10-30, against 2028-10-30 for 3.12 and 2027-10-30 for 3.11).
@description('Python version of the function app (functionAppConfig.runtime.version).')
@allowed([
  '3.11'
  '3.12'
  '3.13'
])
param pythonVersion string = '3.13'

@description('Memory of each function app instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// Microsoft documents 1 to 1000 (Flex Consumption plan page, "Considerations"), but values below 40
// are accepted only in the regions where that change has rolled out: the event-driven scaling page
// still gives 40 as the lowest, and azure-functions-host #10523 (2026-01) lists West Europe,
// Australia East and West US 2 as the first regions to allow less. 40 deploys in every Flex region.
// The limit applies per function group: HTTP, blob (Event Grid) and Durable functions scale apart.
@description('Largest number of instances per function group (1-1000). The default, 40, is the lowest value every Flex Consumption region accepts; lower values fail to deploy where the rollout has not reached.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Days after which blobs in uploads/ and work/ are deleted by the lifecycle rule.')
@minValue(1)
@maxValue(365)
param intermediateRetentionDays int = 7

@description('Object id of the deploying user (azd sets AZURE_PRINCIPAL_ID).')
param principalId string = ''

@description('Grant the deploying user the app\'s data roles, so the CLI and func start can use the deployed resources keyless.')
param grantUserAccess bool = true

@description('Kind of principal behind principalId: a person, or a service principal when azd runs in a pipeline.')
@allowed([
  'User'
  'ServicePrincipal'
])
param principalType string = 'User'

// VNet mode, as the Flex Consumption azd samples offer it: the app's outbound traffic goes through a
// virtual network, and storage and every AI account accept calls only from their private endpoints
// in it (public network access disabled). The app's own endpoint stays public: browsers, callers
// of the API and Event Grid's webhook reach it from the internet.
@description('Private networking (VNET_ENABLED): a virtual network, private endpoints and private DNS zones for storage and the AI accounts, whose public access is then disabled.')
param vnetEnabled bool = false

// 'storage' keeps Durable Functions' state in the storage account (queues, tables, blobs: the
// default, nothing more to pay for); 'dts' moves it to a Durable Task Scheduler (README, "Durable
// Task Scheduler").
@description('Durable Functions backend (DURABLE_BACKEND): storage (the storage account) or dts (a Durable Task Scheduler, with its dashboard).')
@allowed([
  'storage'
  'dts'
])
param durableBackend string = 'storage'

@description('SKU of the Durable Task Scheduler when durableBackend is dts: Consumption (per action) or Dedicated (capacity units by the hour).')
@allowed([
  'Consumption'
  'Dedicated'
])
param durableTaskSchedulerSku string = 'Consumption'

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}

// The image regions besides openAiLocation (whose account, modules/openai.bicep, already has an
// image deployment next to the chat model): spaces dropped, lower case, each once (union() keeps the
// first of equal items), empty items and openAiLocation left out. The default makes none.
var extraImageRegions = filter(union(split(replace(toLower(imageRegions), ' ', ''), ','), []), region => (region != '') && (region != openAiLocation))

// One capacity unit of a GPT-image deployment is 3 requests per minute; every image deployment
// gets imageCapacity units, so the app can draw this many image requests a minute in all.
var imageRequestsPerMinute = imageCapacity * 3
var totalImageRequestsPerMinute = imageRequestsPerMinute * (1 + length(extraImageRegions))

// The service name in azure.yaml; azd finds the app to deploy to by this tag.
var serviceName = 'api'

// The blob trigger: the one place for the names the postdeploy hook needs (it reads the outputs).
// They must match the Event Grid blob trigger the app registers (shared/blob_trigger.py);
// tests/test_infra.py checks them against the app's function metadata.
var blobTriggerFunctionName = 'start_job_from_blob'
var inputsContainerName = 'inputs'

// The app's containers (shared/storage.py). uploads/ and work/ are temporary.
var appContainerNames = [
  inputsContainerName
  'uploads'
  'outputs'
  'work'
]
var expiringContainerNames = [
  'uploads'
  'work'
]
var deploymentContainerName = 'app-package'
// Events Event Grid could not deliver to the blob trigger (after the retries the postdeploy hook
// sets) land here as JSON blobs; the hook reads the container's id from the outputs.
var deadLetterContainerName = 'eventgrid-deadletter'

// host.json's extensions.durableTask.hubName; the scheduler's task hub has the same name.
var durableTaskHubName = 'VariaHub'
var useDurableTaskScheduler = durableBackend == 'dts'

// VNet mode closes the public endpoints of storage and the AI accounts.
var publicNetworkAccess = vnetEnabled ? 'Disabled' : 'Enabled'

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-varia-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-varia-${resourceToken}'
    applicationInsightsName: 'appi-varia-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    containerNames: concat(appContainerNames, [deploymentContainerName])
    deadLetterContainerName: deadLetterContainerName
    expiringContainerNames: expiringContainerNames
    retentionDays: intermediateRetentionDays
    systemTopicName: 'evgt-varia-${resourceToken}'
    publicNetworkAccess: publicNetworkAccess
    // Trusted Azure services (the Event Grid system topic) still pass the Deny.
    networkDefaultAction: vnetEnabled ? 'Deny' : 'Allow'
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

module openAi 'modules/openai.bicep' = {
  name: 'openai'
  scope: rg
  params: {
    name: 'oai-varia-${resourceToken}'
    location: openAiLocation
    tags: tags
    chatDeploymentName: chatDeploymentName
    chatModelName: chatModelName
    chatModelVersion: chatModelVersion
    chatCapacity: chatCapacity
    imageDeploymentName: imageDeploymentName
    imageModelName: imageModelName
    imageModelVersion: imageModelVersion
    imageCapacity: imageCapacity
    publicNetworkAccess: publicNetworkAccess
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

// One account and one image deployment in each extra region, keyless, each with the Cognitive
// Services OpenAI User role for the app (and for the user, as the main account's roles in rbac.bicep).
module imageRegionAccounts 'modules/openai-images.bicep' = {
  name: 'openai-images'
  scope: rg
  params: {
    regions: extraImageRegions
    namePrefix: 'oai-varia-${resourceToken}'
    tags: tags
    deploymentName: imageDeploymentName
    modelName: imageModelName
    modelVersion: imageModelVersion
    capacity: imageCapacity
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: grantUserAccess ? principalId : ''
    userPrincipalType: principalType
    publicNetworkAccess: publicNetworkAccess
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

module vision 'modules/vision.bicep' = {
  name: 'vision'
  scope: rg
  params: {
    name: 'cv-varia-${resourceToken}'
    location: visionLocation
    tags: tags
    publicNetworkAccess: publicNetworkAccess
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

module contentSafety 'modules/contentsafety.bicep' = {
  name: 'contentsafety'
  scope: rg
  params: {
    name: 'cs-varia-${resourceToken}'
    location: contentSafetyLocation
    tags: tags
    publicNetworkAccess: publicNetworkAccess
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

module appRoles 'modules/rbac.bicep' = {
  name: 'app-roles'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    principalType: 'ServicePrincipal'
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    openAiAccountName: openAi.outputs.name
    visionAccountName: vision.outputs.name
    contentSafetyAccountName: contentSafety.outputs.name
  }
}

module userRoles 'modules/rbac.bicep' = if (grantUserAccess && !empty(principalId)) {
  name: 'user-roles'
  scope: rg
  params: {
    principalId: principalId
    principalType: principalType
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    openAiAccountName: openAi.outputs.name
    visionAccountName: vision.outputs.name
    contentSafetyAccountName: contentSafety.outputs.name
  }
}

// VNet mode: one private endpoint per storage service the host and the app use, and one per AI
// account (each regional image account too), all in the function app's region.
// (Listed one by one: Bicep refuses a runtime value in a variable's for-loop.)
var storagePrivateEndpoints = [
  {
    name: '${storage.outputs.name}-blob'
    resourceId: storage.outputs.id
    groupId: 'blob'
    zone: 'blob'
  }
  {
    name: '${storage.outputs.name}-queue'
    resourceId: storage.outputs.id
    groupId: 'queue'
    zone: 'queue'
  }
  {
    name: '${storage.outputs.name}-table'
    resourceId: storage.outputs.id
    groupId: 'table'
    zone: 'table'
  }
]
var aiPrivateEndpoints = [
  {
    name: openAi.outputs.name
    resourceId: openAi.outputs.id
    groupId: 'account'
    zone: 'openai'
  }
  {
    name: vision.outputs.name
    resourceId: vision.outputs.id
    groupId: 'account'
    zone: 'cognitiveservices'
  }
  {
    name: contentSafety.outputs.name
    resourceId: contentSafety.outputs.id
    groupId: 'account'
    zone: 'cognitiveservices'
  }
]

module network 'modules/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-varia-${resourceToken}'
    location: location
    tags: tags
    endpoints: concat(storagePrivateEndpoints, aiPrivateEndpoints, imageRegionAccounts.outputs.privateEndpoints)
  }
}

module durableTaskScheduler 'modules/durabletask.bicep' = if (useDurableTaskScheduler) {
  name: 'durabletask'
  scope: rg
  params: {
    name: 'dts-varia-${resourceToken}'
    location: location
    tags: tags
    skuName: durableTaskSchedulerSku
    taskHubName: durableTaskHubName
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: grantUserAccess ? principalId : ''
    userPrincipalType: principalType
  }
}

// Every image deployment with its quota, as VARIA_IMAGE_DEPLOYMENTS lists them (keyless: no
// api_key): the main region's first, then one per extra region.
var imageDeployments = concat([
  {
    endpoint: openAi.outputs.endpoint
    deployment: openAi.outputs.imageDeploymentName
    rpm: imageRequestsPerMinute
  }
], imageRegionAccounts.outputs.deployments)

// Every setting the code reads (shared/config.py SETTINGS) except the local-only ones: no API
// keys (the app is keyless) and no local storage folder. tests/test_infra.py keeps this in step.
var appSettings = {
  AZURE_CLIENT_ID: identity.outputs.clientId
  AZURE_OPENAI_ENDPOINT: openAi.outputs.endpoint
  AZURE_OPENAI_CHAT_DEPLOYMENT: openAi.outputs.chatDeploymentName
  // The models behind the deployments: the app picks reasoning options, sizes and timeouts by model.
  AZURE_OPENAI_CHAT_MODEL: chatModelName
  VARIA_CHAT_REASONING_EFFORT: 'auto'
  AZURE_OPENAI_IMAGE_DEPLOYMENT: openAi.outputs.imageDeploymentName
  AZURE_OPENAI_IMAGE_MODEL: imageModelName
  AZURE_VISION_ENDPOINT: vision.outputs.endpoint
  AZURE_CONTENT_SAFETY_ENDPOINT: contentSafety.outputs.endpoint
  // Explicit providers rather than 'auto': in Azure a missing endpoint must fail at start-up
  // with a message naming it, not fall back silently to the offline providers.
  VARIA_CAPTION_PROVIDER: 'vision'
  VARIA_COMPOSE_PROVIDER: 'chat'
  VARIA_IMAGE_PROVIDER: 'gpt-image'
  VARIA_MODERATION_PROVIDER: 'content-safety'
  VARIA_IMAGE_QUALITY: imageQuality
  VARIA_DEFAULT_PROFILE: 'general'
  VARIA_ENFORCED_PROFILE: enforcedProfile
  VARIA_DEFAULT_PRESET: 'watercolor'
  VARIA_DEFAULT_VARIATIONS: '2'
  VARIA_MAX_VARIATIONS: '4'
  VARIA_PREVIEW_IMAGES: '1'
  VARIA_MAX_UPLOAD_MB: '20'
  VARIA_SERVICE_TIMEOUT_SECONDS: '120'
  // What the main region's image deployment allows (the app's fallback when the list is empty).
  VARIA_IMAGE_REQUESTS_PER_MINUTE: string(imageRequestsPerMinute)
  VARIA_IMAGE_DEPLOYMENTS: string(imageDeployments)
  // The code's defaults (shared/config.py): Microsoft's quota table counts GPT-image limits in
  // requests a minute, and a caller may have 4 jobs in flight through the HTTP API.
  VARIA_IMAGE_QUOTA_UNIT: 'request'
  VARIA_MAX_JOBS_PER_CALLER: '4'
  VARIA_PRICES_USD: 'caption=0.0015,compose=0.004,image=0.01,image.medium=0.04,image.high=0.17,moderation=0.00075'
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    // host.json's maxConcurrentActivityFunctions follows the image quota of every deployment
    // together, as the code's activity_concurrency() does for the local runtime:
    // max(4, min(32, ceil(rpm / 2))).
    maxConcurrentActivityFunctions: max(4, min(32, (totalImageRequestsPerMinute + 1) / 2))
    name: 'func-varia-${resourceToken}'
    planName: 'plan-varia-${resourceToken}'
    location: location
    tags: tags
    serviceName: serviceName
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    pythonVersion: pythonVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appSettings: appSettings
    virtualNetworkSubnetId: vnetEnabled ? network.outputs.appSubnetId : ''
    durableTaskSchedulerEndpoint: useDurableTaskScheduler ? durableTaskScheduler.outputs.endpoint : ''
    durableTaskHubName: useDurableTaskScheduler ? durableTaskScheduler.outputs.taskHubName : ''
  }
  // The host reaches storage with the identity as soon as it starts: grant the roles first (and,
  // in VNet mode, let the private endpoints and their DNS records exist before it starts).
  dependsOn: [
    appRoles
    network
  ]
}

// ---------------------------------------------------------------------------------------------
// Outputs: azd stores them in .azure/<env>/.env; the hooks and `azd env get-values` read them.
// The AZURE_OPENAI_* and AZURE_VISION_* names are the app's own settings, so
// `azd env get-values > .env` points a local run at the deployed services. Nothing secret.
// ---------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = functionApp.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_STORAGE_SYSTEM_TOPIC_NAME string = storage.outputs.systemTopicName
output AZURE_STORAGE_DEADLETTER_CONTAINER_ID string = storage.outputs.deadLetterContainerId
output AZURE_OPENAI_ENDPOINT string = openAi.outputs.endpoint
output AZURE_OPENAI_CHAT_DEPLOYMENT string = openAi.outputs.chatDeploymentName
output AZURE_OPENAI_IMAGE_DEPLOYMENT string = openAi.outputs.imageDeploymentName
output VARIA_IMAGE_DEPLOYMENTS string = string(imageDeployments)
output AZURE_OPENAI_CHAT_MODEL string = chatModelName
output AZURE_OPENAI_IMAGE_MODEL string = imageModelName
output AZURE_VISION_ENDPOINT string = vision.outputs.endpoint
output AZURE_CONTENT_SAFETY_ENDPOINT string = contentSafety.outputs.endpoint
output BLOB_TRIGGER_FUNCTION_NAME string = blobTriggerFunctionName
output BLOB_TRIGGER_CONTAINER_NAME string = inputsContainerName
output VNET_ENABLED bool = vnetEnabled
output DURABLE_BACKEND string = durableBackend
// The scheduler's dashboard for the task hub (dts only; your user has the role unless AZURE_GRANT_USER_ACCESS is false).
output DURABLE_TASK_SCHEDULER_DASHBOARD_URL string = useDurableTaskScheduler ? durableTaskScheduler.outputs.dashboardUrl : ''
