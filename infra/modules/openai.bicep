// Azure OpenAI: one account, two deployments. The chat model composes the output prompt (and can
// caption where Vision cannot); the GPT-image model draws the variations.
// Keyless: local (API key) auth is off, so callers need the Cognitive Services OpenAI User role.

@description('Account name; also its custom subdomain (<name>.openai.azure.com), which Entra ID auth requires.')
param name string

param location string
param tags object = {}

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
  // checkov:skip=CKV_AZURE_134:No virtual network in this template: the Flex Consumption app calls the public endpoint, and disableLocalAuth makes every call need an Entra ID token.
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
    // Reached from the Flex Consumption app, which has no virtual network in this template.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
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

output name string = account.name
output endpoint string = account.properties.endpoint
output chatDeploymentName string = chatDeployment.name
output imageDeploymentName string = imageDeployment.name
