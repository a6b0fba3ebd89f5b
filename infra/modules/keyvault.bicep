// The Key Vault holding WEBHOOK_SECRET (RBAC authorization, purge protection), and the app's right to read
// that one secret. The app setting references the secret (@Microsoft.KeyVault(SecretUri=…)), so a deployment
// without a new value leaves the secret, and HMAC checking, as they were.
param name string
param location string
param tags object
param appPrincipalId string
@secure()
@description('A new value of the secret; empty: keep the vault\'s current one (or none yet).')
param webhookSecret string = ''
@description('Log Analytics workspace receiving the vault\'s audit logs.')
param workspaceId string

var secretName = 'webhook-secret'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true // no access policies: who reads what is a role assignment
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true // cannot be turned off again; a deleted vault keeps its name for 90 days
    publicNetworkAccess: 'Enabled' // the Flex Consumption app resolves references over the public endpoint (README, Network)
  }
}

// Written only when a value is given: ARM deployments are incremental, so the secret (and the grant below) stay.
resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(webhookSecret)) {
  parent: vault
  name: secretName
  properties: {
    value: webhookSecret
    contentType: 'WEBHOOK_SECRET: HMAC-SHA256 key of X-Signature-256'
  }
}

// Scoped to the secret, which must exist: granted with its first value, kept by later deployments.
resource appReadsSecret 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(webhookSecret)) {
  name: guid(vault.id, secretName, appPrincipalId, keyVaultSecretsUser)
  scope: secret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

// A URI, no value (named without "secret" for the linter's outputs-should-not-contain-secrets). Versionless: the
// app reads the current value (App Service re-fetches it within a day, or on restart).
output webhookReferenceUri string = '${vault.properties.vaultUri}secrets/${secretName}'
