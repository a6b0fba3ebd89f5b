// The function app on the Flex Consumption plan (Python 3.11), running as the user-assigned identity.
param name string
param planName string
param location string
param tags object
param identityId string
@description('Blob container URL of the deployment package.')
param deploymentStorageUrl string
param maximumInstanceCount int
param instanceMemoryMB int
@description('App settings (names as the contract defines them).')
param appSettings object
@secure()
@description('App settings holding secrets, kept out of the deployment history.')
param secretAppSettings object

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentStorageUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  // Flex Consumption sets the worker runtime itself (functionAppConfig.runtime): no FUNCTIONS_WORKER_RUNTIME here.
  resource settings 'config' = {
    name: 'appsettings'
    properties: union(appSettings, secretAppSettings)
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
