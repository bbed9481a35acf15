// More GPT-image quota: one Azure OpenAI account with one GPT-image deployment in each extra
// region. Quota is per region, per subscription and per model, so each region adds its own
// requests per minute; the app spreads its image calls over all of them (VARIA_IMAGE_DEPLOYMENTS).
// The main region's image deployment stays in modules/openai.bicep, next to the chat model.
// Keyless like the main account: local (API key) auth is off, and the callers get the Cognitive
// Services OpenAI User role on each account, here, where the accounts are made.
// The loops are resource loops over `regions` (not a module loop): Bicep cannot gather a module
// loop's outputs into one value (no module collection in a lambda, no runtime value in a variable
// loop), and main.bicep needs them all in one app setting.

// The regions that serve the GPT-image models with Global Standard deployments (the image
// how-to's region list; the same five as main.bicep's openAiLocation). ARM checks every item.
@description('Regions to create an image account in, each once; the main Azure OpenAI region is not among them.')
@allowed([
  'eastus2'
  'polandcentral'
  'swedencentral'
  'uaenorth'
  'westus3'
])
param regions array

@description('Start of each account name; the account in region R is <namePrefix>-<R>, also its custom subdomain (Entra ID auth requires one).')
param namePrefix string

param tags object = {}

@description('Enabled without a virtual network; Disabled in VNet mode (vnetEnabled), where the app reaches the account through a private endpoint.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Enabled'

@description('Log Analytics workspace that receives the account\'s logs and metrics (diagnostic settings).')
param logAnalyticsWorkspaceId string

param deploymentName string
param modelName string
param modelVersion string

@description('Capacity of each deployment in units of 3 requests per minute (the default GPT-image quota is 2 units per region).')
@minValue(1)
param capacity int

@description('Principal (object) id of the app\'s managed identity.')
param appPrincipalId string

@description('Object id of the deploying user or pipeline to grant the same role; empty for none.')
param userPrincipalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
param userPrincipalType string = 'User'

// Cognitive Services OpenAI User: chat completions and image calls; it cannot read keys or change deployments.
var openAiUserRole = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource accounts 'Microsoft.CognitiveServices/accounts@2024-10-01' = [for region in regions: {
  // checkov:skip=CKV_AZURE_134:Public mode only (vnetEnabled false): without a virtual network the Flex Consumption app calls the public endpoint, and disableLocalAuth makes every call need an Entra ID token. VNet mode disables it.
  // checkov:skip=CKV_AZURE_238:The account calls no other resource, so it needs no managed identity of its own.
  name: '${namePrefix}-${region}'
  location: region
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  properties: {
    customSubDomainName: '${namePrefix}-${region}'
    disableLocalAuth: true
    // Enabled: reached from the Flex Consumption app over the internet, with an Entra ID token.
    // Disabled (VNet mode): only through the private endpoint in the app's virtual network.
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: (publicNetworkAccess == 'Enabled') ? 'Allow' : 'Deny'
    }
  }
}]

resource imageDeployments 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = [for (region, i) in regions: {
  parent: accounts[i]
  name: deploymentName
  sku: {
    name: 'GlobalStandard'
    capacity: capacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
  }
}]

resource appOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (region, i) in regions: {
  name: guid(accounts[i].id, appPrincipalId, openAiUserRole)
  scope: accounts[i]
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiUserRole)
  }
}]

// The deploying user, so a local run against the deployed services can use every image deployment.
resource userOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for (region, i) in regions: if (!empty(userPrincipalId)) {
  name: guid(accounts[i].id, userPrincipalId, openAiUserRole)
  scope: accounts[i]
  properties: {
    principalId: userPrincipalId
    principalType: userPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', openAiUserRole)
  }
}]

// Audit, request and trace logs and every metric, in the workspace Application Insights uses.
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = [for (region, i) in regions: {
  name: 'to-log-analytics'
  scope: accounts[i]
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}]

// One entry per region, in the order of `regions`, as VARIA_IMAGE_DEPLOYMENTS lists them.
// One capacity unit of a GPT-image deployment is 3 requests per minute.
output deployments array = [for (region, i) in regions: {
  endpoint: accounts[i].properties.endpoint
  deployment: imageDeployments[i].name
  rpm: capacity * 3
}]

output names array = [for (region, i) in regions: accounts[i].name]
// VNet mode: one private endpoint per account, in the shape modules/network.bicep takes.
output privateEndpoints array = [for (region, i) in regions: {
  name: accounts[i].name
  resourceId: accounts[i].id
  groupId: 'account'
  zone: 'openai'
}]
