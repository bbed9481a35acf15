// Azure AI Content Safety: harm ratings of the request, the composed prompt and each kids image,
// and Prompt Shields on the request and the caption. Keyless: local (API key) auth is off, so
// callers need the Cognitive Services User role.

@description('Account name; also its custom subdomain (<name>.cognitiveservices.azure.com), which Entra ID auth requires.')
param name string

@description('Must be a region that serves text and image analysis and Prompt Shields (main.bicep restricts it).')
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

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  // checkov:skip=CKV_AZURE_134:Public mode only (vnetEnabled false): without a virtual network the Flex Consumption app calls the public endpoint, and disableLocalAuth makes every call need an Entra ID token. VNet mode disables it.
  // checkov:skip=CKV_AZURE_238:The account calls no other resource, so it needs no managed identity of its own.
  name: name
  location: location
  tags: tags
  kind: 'ContentSafety'
  sku: {
    // F0 allows one free account per subscription and 5 calls a second; S0 is billed per call.
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
