// Azure OpenAI: one account, two deployments. The chat model composes the output prompt (and can
// caption where Vision cannot); the GPT-image model draws the variations.
// Keyless: local (API key) auth is off, so callers need the Cognitive Services OpenAI User role.

@description('Account name; also its custom subdomain (<name>.openai.azure.com), which Entra ID auth requires.')
param name string

param location string
param tags object = {}

@description('Enabled without a virtual network; Disabled in VNet mode (vnetEnabled), where the app reaches the account through a private endpoint.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Enabled'

@description('Log Analytics workspace that receives the account\'s logs and metrics (diagnostic settings).')
param logAnalyticsWorkspaceId string

param chatDeploymentName string
param chatModelName string
param chatModelVersion string

@description('Chat deployment capacity in units of 1,000 tokens per minute (Global Standard).')
@minValue(1)
param chatCapacity int

param imageDeploymentName string
param imageModelName string
param imageModelVersion string

@description('Image deployment capacity in units of 3 requests per minute (the default GPT-image quota is 2 units).')
@minValue(1)
param imageCapacity int

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  // checkov:skip=CKV_AZURE_134:Public mode only (vnetEnabled false): without a virtual network the Flex Consumption app calls the public endpoint, and disableLocalAuth makes every call need an Entra ID token. VNet mode disables it.
  // checkov:skip=CKV_AZURE_238:The account calls no other resource, so it needs no managed identity of its own.
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: 'S0'
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    // Enabled: reached from the Flex Consumption app over the internet, with an Entra ID token.
    // Disabled (VNet mode): only through the private endpoint in the app's virtual network.
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: (publicNetworkAccess == 'Enabled') ? 'Allow' : 'Deny'
    }
  }
}

resource chatDeployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: chatDeploymentName
  sku: {
    name: 'GlobalStandard'
    capacity: chatCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: chatModelName
      version: chatModelVersion
    }
  }
}

resource imageDeployment 'Microsoft.CognitiveServices/accounts/deployments@2024-10-01' = {
  parent: account
  name: imageDeploymentName
  sku: {
    name: 'GlobalStandard'
    capacity: imageCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: imageModelName
      version: imageModelVersion
    }
  }
  // Deployments of one account are created one at a time; in parallel the second one fails.
  dependsOn: [
    chatDeployment
  ]
}

// Audit, request and trace logs and every metric, in the workspace Application Insights uses.
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: account
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
}

output name string = account.name
output id string = account.id
output endpoint string = account.properties.endpoint
output chatDeploymentName string = chatDeployment.name
output imageDeploymentName string = imageDeployment.name
