// The function app's user-assigned managed identity. User-assigned rather than system-assigned so
// its roles can be granted before the app exists (no window in which the host starts without
// access to its storage) and so they survive re-creating the app.

param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
