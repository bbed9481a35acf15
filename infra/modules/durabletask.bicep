// The Durable Task Scheduler backend (main.bicep's durableBackend 'dts'): a managed scheduler and
// the task hub that holds Varia's orchestrations, instead of queues, tables and blobs in the
// storage account. The app reaches it with its user-assigned identity (Durable Task Data
// Contributor); the function app module writes the settings that switch host.json's provider.

@description('Scheduler name: 3-64 letters, digits and hyphens.')
param name string

param location string
param tags object = {}

@description('Consumption bills per action and scales to zero; Dedicated reserves capacity units billed by the hour.')
@allowed([
  'Consumption'
  'Dedicated'
])
param skuName string = 'Consumption'

@description('Name of the task hub, the one host.json names (extensions.durableTask.hubName).')
param taskHubName string

@description('Principal (object) id of the app\'s managed identity.')
param appPrincipalId string

@description('Object id of the deploying user or pipeline, to open the scheduler\'s dashboard; empty for none.')
param userPrincipalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
param userPrincipalType string = 'User'

// Durable Task Data Contributor: run orchestrations and activities, read and manage instances (the dashboard too).
var durableTaskDataContributorRole = '0ad04412-c4d5-4796-b79c-f76d14c8d402'

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    // Required, and an empty list refuses every caller: access is decided by the role below.
    ipAllowlist: [
      '0.0.0.0/0'
    ]
    // Dedicated starts at one capacity unit; Consumption takes none.
    sku: (skuName == 'Dedicated') ? {
      name: skuName
      capacity: 1
    } : {
      name: skuName
    }
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

resource appDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(scheduler.id, appPrincipalId, durableTaskDataContributorRole)
  scope: scheduler
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributorRole)
  }
}

// The dashboard (https://dashboard.durabletask.io) signs in as the user and needs the same role.
resource userDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(scheduler.id, userPrincipalId, durableTaskDataContributorRole)
  scope: scheduler
  properties: {
    principalId: userPrincipalId
    principalType: userPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributorRole)
  }
}

output name string = scheduler.name
output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
output dashboardUrl string = taskHub.properties.dashboardUrl
