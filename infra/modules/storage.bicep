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

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  // checkov:skip=CKV_AZURE_59:No virtual network in this template: the Flex Consumption app reaches the account over its public endpoint; shared keys are disabled, so every request needs an Entra ID token.
  // checkov:skip=CKV_AZURE_35:Same reason as CKV_AZURE_59: default action Allow is needed without a virtual network; access is by Entra ID only.
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
    // Reachable from the internet (Flex Consumption without a virtual network), but only with an
    // Entra ID token. The AzureServices bypass only matters once defaultAction becomes Deny.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
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
