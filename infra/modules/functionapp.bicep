// The function app on the Flex Consumption plan (Python 3.11), running as the user-assigned identity, which also
// resolves its Key Vault references. Deployment signs in with Entra ID only: basic (FTP, SCM) credentials are off.
//
// Public network access stays on: Event Grid and webhooks call the HTTP API (README, Network).
param name string
param planName string
param location string
param tags object
param identityId string
@description('Blob container URL of the deployment package.')
param deploymentStorageUrl string
// The archive's speed limit is ARM's write throttling, not instances: one identity gets about 10 writes a second
// (bucket 200), and one instance at maxConcurrentCalls 16 already asks for more than that (16 writes in flight at
// ~0.2-0.5 s each). Past the first instance or two, more instances add only 429s (paced away) and cost, so the cap
// is the least Flex Consumption accepts, 40 (README, Scaling); raise it only for HTTP API load, never for backfills.
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int
param instanceMemoryMB int
@description('App settings (names as the contract defines them); secrets only as Key Vault references.')
param appSettings object
@description('Log Analytics workspace receiving the app\'s logs and metrics.')
param workspaceId string

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
    keyVaultReferenceIdentity: identityId // the default is the system-assigned identity, which this app has not
    siteConfig: {
      minTlsVersion: '1.2' // no ftpsState: Flex Consumption rejects it, and FTP is off below
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
}

// Top-level children with `parent:` rather than nested ones: pycep-parser (tests/test_infra.py) keeps only the
// last of several nested children.
// Flex Consumption sets the worker runtime itself (functionAppConfig.runtime): no FUNCTIONS_WORKER_RUNTIME here.
resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: appSettings
}

resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: site
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
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

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
