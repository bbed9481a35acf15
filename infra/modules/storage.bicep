// The one storage account of Varia: Functions host state (Durable Functions task hub in queues,
// tables and blobs), the Flex Consumption deployment package, and the app's own containers.
// Keyless: shared keys (and so account SAS and connection strings) are refused; the app, the
// host and the deploying user all authenticate with Entra ID.

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param name string

param location string
param tags object = {}

@description('Blob containers to create (the app\'s containers and the deployment package container).')
param containerNames array

@description('Container that receives the events Event Grid could not deliver (dead-lettering); created with the others.')
param deadLetterContainerName string

@description('Containers whose blobs are temporary: the lifecycle rule deletes them after retentionDays.')
param expiringContainerNames array

@description('Days after which blobs in expiringContainerNames are deleted.')
@minValue(1)
@maxValue(365)
param retentionDays int

@description('Days a deleted blob or container can still be restored (soft delete).')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 7

@description('Name of the Event Grid system topic that publishes this account\'s blob events.')
param systemTopicName string

// Two parameters rather than one bool: checkov reads a parameter's default but not a condition,
// so tests/test_infra.py can scan the templates with VNet mode's values (main.bicep sets both).
@description('Enabled without a virtual network; Disabled in VNet mode, where the private endpoints are the only way in.')
@allowed([
  'Enabled'
  'Disabled'
])
param publicNetworkAccess string = 'Enabled'

@description('Allow without a virtual network; Deny in VNet mode (trusted Azure services such as Event Grid still pass).')
@allowed([
  'Allow'
  'Deny'
])
param networkDefaultAction string = 'Allow'

@description('Log Analytics workspace that receives the blob service\'s logs and transaction metrics (diagnostic settings).')
param logAnalyticsWorkspaceId string

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  // checkov:skip=CKV_AZURE_59:Public mode only (vnetEnabled false): the Flex Consumption app reaches the account over its public endpoint; shared keys are disabled, so every request needs an Entra ID token. VNet mode disables it.
  // checkov:skip=CKV_AZURE_35:Public mode only (vnetEnabled false): default action Allow is needed without a virtual network; access is by Entra ID only. VNet mode denies.
  // checkov:skip=CKV_AZURE_206:Locally redundant on purpose: inputs can be uploaded again and outputs regenerated; geo-replication would double the storage cost of a sample.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    // Entra ID only: no account keys, no SAS signed with them, no connection strings.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    // Results are served through the app or user delegation SAS, never anonymously.
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // Public mode: reachable from the internet, but only with an Entra ID token. VNet mode: only
    // through the blob, queue and table private endpoints, and from trusted Azure services: the
    // AzureServices bypass lets the Event Grid system topic read the account's blob events for
    // the blob trigger (infra/hooks/postdeploy.sh subscribes it).
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: networkDefaultAction
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' = {
  parent: storage
  name: 'default'
  properties: {
    // A blob deleted by mistake (or by the lifecycle rule) can be restored for softDeleteDays.
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

// Reads, writes and deletes of blobs (the app's, the host's and the users'), and transaction
// metrics, in the workspace Application Insights uses. Blob services have no AllMetrics category.
resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
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
        category: 'Transaction'
        enabled: true
      }
    ]
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = [for containerName in concat(containerNames, [deadLetterContainerName]): {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}]

// Uploads and intermediate files (normalized sources, cached captions) are only needed while a job
// runs and for a few days of debugging; results in outputs/ stay until the user deletes them.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2024-01-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-temporary-blobs'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              // A prefix is container/path: 'uploads/' matches every blob of the uploads container.
              prefixMatch: [for containerName in expiringContainerNames: '${containerName}/']
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: retentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    containers
  ]
}

// The source of BlobCreated events for the Event Grid blob trigger (the only blob trigger Flex
// Consumption supports). The subscription itself is made by infra/hooks/postdeploy.* because its
// webhook URL needs the deployed function's blobs_extension key.
resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: location
  tags: tags
  properties: {
    source: storage.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output systemTopicName string = systemTopic.name
// In the form `az eventgrid ... --deadletter-endpoint` takes (Event Grid docs, "Set dead-letter
// location and retry policy"): <storage account id>/blobServices/default/containers/<name>.
output deadLetterContainerId string = '${storage.id}/blobServices/default/containers/${deadLetterContainerName}'
