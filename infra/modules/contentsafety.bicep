// Azure AI Content Safety: harm ratings of the request, the composed prompt and each kids image,
// and Prompt Shields on the request and the caption. Keyless: local (API key) auth is off, so
// callers need the Cognitive Services User role.

@description('Account name; also its custom subdomain (<name>.cognitiveservices.azure.com), which Entra ID auth requires.')
param name string

@description('Must be a region that serves text and image analysis and Prompt Shields (main.bicep restricts it).')
param location string

param tags object = {}

resource account 'Microsoft.CognitiveServices/accounts@2024-10-01' = {
  // checkov:skip=CKV_AZURE_134:No virtual network in this template: the Flex Consumption app calls the public endpoint, and disableLocalAuth makes every call need an Entra ID token.
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
    // Reached from the Flex Consumption app, which has no virtual network in this template.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
    }
  }
}

output name string = account.name
output endpoint string = account.properties.endpoint
