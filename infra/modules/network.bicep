// VNet mode (main.bicep's vnetEnabled): a virtual network for the function app's outbound traffic
// and private endpoints, with a private DNS zone per service so the app's usual host names
// (<account>.blob.core.windows.net, <account>.openai.azure.com, ...) resolve to them.
// The app itself stays reachable from the internet: its HTTP API and the Event Grid webhook of the
// blob trigger are called from outside. What VNet mode closes is every service behind the app.

param name string
param location string
param tags object = {}

@description('Address space of the virtual network.')
param addressPrefix string = '10.0.0.0/16'

@description('Subnet of the function app\'s VNet integration (Flex Consumption delegates it to Microsoft.App/environments).')
param appSubnetPrefix string = '10.0.1.0/24'

@description('Subnet of the private endpoints.')
param privateEndpointSubnetPrefix string = '10.0.2.0/24'

// One entry per private endpoint: { name, resourceId, groupId, zone }, zone being a key of `zones`.
@description('The private endpoints to create: name (unique in the resource group), resourceId, groupId (blob, queue, table, account) and zone (a key of the zones below).')
param endpoints array

// Public cloud zone names (Microsoft's "Azure Private Endpoint private DNS zone values").
var zones = {
  blob: 'privatelink.blob.${environment().suffixes.storage}'
  queue: 'privatelink.queue.${environment().suffixes.storage}'
  table: 'privatelink.table.${environment().suffixes.storage}'
  openai: 'privatelink.openai.azure.com'
  cognitiveservices: 'privatelink.cognitiveservices.azure.com'
}
var zoneKeys = [
  'blob'
  'queue'
  'table'
  'openai'
  'cognitiveservices'
]

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: appSubnetPrefix
          // Flex Consumption's VNet integration runs on a subnet delegated to Container Apps environments.
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
          // All of the app's outbound traffic leaves through this subnet: Application Insights
          // and the Durable Task Scheduler are reached over the internet, so the subnet keeps
          // default outbound access (new subnets may otherwise be private).
          defaultOutboundAccess: true
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
          defaultOutboundAccess: false
        }
      }
    ]
  }
}

resource dnsZones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for key in zoneKeys: {
  name: zones[key]
  location: 'global'
  tags: tags
}]

resource dnsZoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (key, i) in zoneKeys: {
  parent: dnsZones[i]
  name: '${name}-link'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

resource privateEndpoints 'Microsoft.Network/privateEndpoints@2024-05-01' = [for endpoint in endpoints: {
  name: 'pe-${endpoint.name}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: vnet.properties.subnets[1].id
    }
    privateLinkServiceConnections: [
      {
        name: endpoint.name
        properties: {
          privateLinkServiceId: endpoint.resourceId
          groupIds: [
            endpoint.groupId
          ]
        }
      }
    ]
  }
}]

// Each endpoint writes its A record in its service's zone.
resource zoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [for (endpoint, i) in endpoints: {
  parent: privateEndpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: endpoint.zone
        properties: {
          privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', zones[endpoint.zone])
        }
      }
    ]
  }
  dependsOn: [
    dnsZones
  ]
}]

output appSubnetId string = vnet.properties.subnets[0].id
output privateEndpointSubnetId string = vnet.properties.subnets[1].id
