// ACR Run Archiver: everything the function app needs, in one resource group, plus its access to the registry.
//
//   azd up                                   (azure.yaml; parameters from main.parameters.json)
//   az deployment sub create --location <region> --template-file infra/main.bicep \
//     --parameters environmentName=<name> location=<region> registryId=<registry resource id>
//
// App settings use exactly the contract's names (shared/settings.py SETTING_NAMES, CONTRACT §1); tests/test_infra.py
// parses this file (pycep-parser: syntax only; CI's `bicep build` is the first compile) and checks it against the app,
// local.settings.sample.json, the Service Bus emulator's Config.json and Azure's built-in role ids.
// Deployer rights: README, Deployer rights (Owner, or Contributor + User Access Administrator).
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('Name of the environment (azd env name); names the resource group and seeds unique resource names.')
param environmentName string

@minLength(1)
@description('Region of every resource; it must offer the Flex Consumption plan.')
@metadata({ azd: { type: 'location' } })
param location string

@minLength(1)
@description('Resource id of the container registry whose runs the app archives: /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ContainerRegistry/registries/{r}.')
param registryId string

@description('Resource group to create; default rg-<environmentName>.')
param resourceGroupName string = ''

@description('The archive queue (ARCHIVE_QUEUE_NAME).')
param archiveQueueName string = 'acr-archive-events'

@description('The outcome topic (OUTCOME_TOPIC_NAME).')
param outcomeTopicName string = 'acr-archive-outcomes'

@description('Example subscription of the outcome topic, filtered on outcome = \'failed\'.')
param failedOutcomesSubscriptionName string = 'failed-outcomes'

@minValue(1)
@maxValue(2000)
@description('The queue\'s maxDeliveryCount, also given to the app as MAX_DELIVERY_COUNT.')
param maxDeliveryCount int = 10

@description('ALLOWED_REGISTRIES; default: only the registry of registryId.')
param allowedRegistries string = ''

@description('DEFAULT_SUBSCRIPTION_ID, DEFAULT_RESOURCE_GROUP, DEFAULT_REGISTRY_NAME default to the registry of registryId, so an event may name only its run; set useRegistryDefaults=false to leave them unset.')
param useRegistryDefaults bool = true

@secure()
@description('A new value of WEBHOOK_SECRET, stored in the Key Vault; empty: keep the vault\'s current secret.')
param webhookSecret string = ''

@description('WEBHOOK_SECRET references the vault\'s secret, so HTTP writes must carry X-Signature-256; false leaves it unset (no signatures, e.g. for Event Grid).')
param webhookSignatures bool = true

@description('Role definition id (/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions/{guid}) to grant on the registry instead of creating the custom "runs read/write" role: one created once out of band, so the deployer needs no right to write role definitions (README, Deployer rights).')
param registryRoleDefinitionId string = ''

@description('Object id of an operator (user or group) for the acr-archiver CLI; azd passes the signed-in user, granted only with grantOperatorAccess.')
param operatorPrincipalId string = ''

@description('Grant operatorPrincipalId Data Sender and Data Receiver on the archive queue and Data Receiver on the outcome topic\'s subscriptions. Off by default: production environments grant nobody but the app.')
param grantOperatorAccess bool = false

@description('With grantOperatorAccess, also grant the operator the runs role on the registry (acr-archiver archive).')
param grantOperatorRunsWrite bool = false

@description('Resource id of an action group that the alerts notify; empty: they fire in the portal only.')
param actionGroupId string = ''

@description('ARCHIVE_POLICIES (contract §8): a JSON array of archive policies; empty (the default): no policy sweeps. Example: [{"name":"release-builds","registry":"<subscriptionId>/<resourceGroup>/<registry>","filter":"TaskName eq \'release\' and Status eq \'Succeeded\'"}]')
param archivePolicies string = ''

@description('ARCHIVE_POLICY_SCHEDULE: NCRONTAB schedule of the policy sweep timer.')
param archivePolicySchedule string = '0 */15 * * * *'

@minValue(1)
@description('ARCHIVE_POLICY_LOOKBACK_DAYS: a sweep considers runs created in this many days before it.')
param archivePolicyLookbackDays int = 30

@minValue(0)
@description('ARM_WRITE_RESERVE: writes to leave in ARM\'s per-principal write bucket.')
param armWriteReserve int = 20

@description('Flex Consumption: most instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Flex Consumption: memory of one instance.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName, application: 'acr-run-archiver' }

// /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ContainerRegistry/registries/{r}
var registrySegments = split(registryId, '/')
var registrySubscriptionId = registrySegments[2]
var registryResourceGroup = registrySegments[4]
var registryName = last(registrySegments)
var operatorId = grantOperatorAccess ? operatorPrincipalId : ''

resource rg 'Microsoft.Resources/resourceGroups@2021-04-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-acrarchiver-${token}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'stacrarch${token}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package'
    appPrincipalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-acrarchiver-${token}'
    applicationInsightsName: 'appi-acrarchiver-${token}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    namespaceName: 'sb-acrarchiver-${token}'
    location: location
    tags: tags
    archiveQueueName: archiveQueueName
    outcomeTopicName: outcomeTopicName
    failedOutcomesSubscriptionName: failedOutcomesSubscriptionName
    maxDeliveryCount: maxDeliveryCount
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: operatorId
    workspaceId: monitoring.outputs.workspaceId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-acrarch-${token}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    webhookSecret: webhookSecret
    workspaceId: monitoring.outputs.workspaceId
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    namespaceId: serviceBus.outputs.id
    archiveQueueName: archiveQueueName
    workspaceId: monitoring.outputs.workspaceId
    actionGroupId: actionGroupId
  }
}

// Runs - Get / Runs - Update on the registry, which may live in another resource group or subscription.
module registryAccess 'modules/registry-access.bicep' = {
  name: 'registry-access-${token}'
  scope: resourceGroup(registrySubscriptionId, registryResourceGroup)
  params: {
    registryName: registryName
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: grantOperatorRunsWrite ? operatorId : ''
    roleDefinitionId: registryRoleDefinitionId
  }
}

// The app's settings: the contract's names (§1), then what the Functions host needs.
var appSettings = {
  ServiceBusConnection__fullyQualifiedNamespace: serviceBus.outputs.fullyQualifiedNamespace
  ServiceBusConnection__credential: 'managedidentity'
  ServiceBusConnection__clientId: identity.outputs.clientId
  AZURE_CLIENT_ID: identity.outputs.clientId
  ARCHIVE_QUEUE_NAME: archiveQueueName
  OUTCOME_TOPIC_NAME: outcomeTopicName
  MAX_DELIVERY_COUNT: string(maxDeliveryCount)
  ALLOWED_REGISTRIES: !empty(allowedRegistries) ? allowedRegistries : '${registrySubscriptionId}/${registryResourceGroup}/${registryName}'
  DEFAULT_SUBSCRIPTION_ID: useRegistryDefaults ? registrySubscriptionId : ''
  DEFAULT_RESOURCE_GROUP: useRegistryDefaults ? registryResourceGroup : ''
  DEFAULT_REGISTRY_NAME: useRegistryDefaults ? registryName : ''
  // Always the reference (never the value): a deployment without webhookSecret keeps checking signatures, and a
  // reference that does not resolve reaches the app as its literal text, which the app reports as malformed.
  WEBHOOK_SECRET: webhookSignatures ? '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.webhookReferenceUri})' : ''
  ARCHIVE_POLICIES: archivePolicies
  ARCHIVE_POLICY_SCHEDULE: archivePolicySchedule
  ARCHIVE_POLICY_LOOKBACK_DAYS: string(archivePolicyLookbackDays)
  ARM_WRITE_RESERVE: string(armWriteReserve)
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  PYTHON_THREADPOOL_THREAD_COUNT: '16'
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: 'func-acrarchiver-${token}'
    planName: 'plan-acrarchiver-${token}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    deploymentStorageUrl: '${storage.outputs.blobEndpoint}${storage.outputs.deploymentContainerName}'
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    appSettings: appSettings
    workspaceId: monitoring.outputs.workspaceId
  }
}

// azd stores these in .azure/<env>/.env; the names that are app settings feed the acr-archiver CLI as they are.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_KEY_VAULT_NAME string = 'kv-acrarch-${token}'
output APP_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output ServiceBusConnection__fullyQualifiedNamespace string = serviceBus.outputs.fullyQualifiedNamespace
output ARCHIVE_QUEUE_NAME string = archiveQueueName
output OUTCOME_TOPIC_NAME string = outcomeTopicName
output OUTCOME_SUBSCRIPTION_NAME string = failedOutcomesSubscriptionName
output DEFAULT_SUBSCRIPTION_ID string = appSettings.DEFAULT_SUBSCRIPTION_ID
output DEFAULT_RESOURCE_GROUP string = appSettings.DEFAULT_RESOURCE_GROUP
output DEFAULT_REGISTRY_NAME string = appSettings.DEFAULT_REGISTRY_NAME
