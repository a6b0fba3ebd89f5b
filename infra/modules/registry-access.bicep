// Deployed to the registry's resource group: a role that can read and update (archive) runs, assigned on the
// registry only. No built-in role grants runs/write without much more (Contributor), so it is a custom role,
// unless roleDefinitionId names one to use instead.
param registryName string
param appPrincipalId string
@description('Optional: an operator also granted the role, for `acr-archiver archive`.')
param operatorPrincipalId string = ''
@description('Optional: an existing role definition id to assign instead of creating the custom role.')
param roleDefinitionId string = ''

var customRoleName = guid(resourceGroup().id, 'acr-run-archiver', 'runs-read-write')
var customRoleDefinitionId = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', customRoleName)
var effectiveRoleDefinitionId = !empty(roleDefinitionId) ? roleDefinitionId : customRoleDefinitionId

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource runsReadWrite 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (empty(roleDefinitionId)) {
  name: customRoleName
  properties: {
    roleName: 'ACR Run Archiver: runs read/write (${resourceGroup().name} ${take(uniqueString(resourceGroup().id), 6)})'
    description: 'Read and update Azure Container Registry task runs (Runs - Get, Runs - Update), e.g. to archive them.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.ContainerRegistry/registries/runs/read'
          'Microsoft.ContainerRegistry/registries/runs/write'
        ]
        notActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id // custom roles are assignable at resource group level at the finest; the assignment is on the registry
    ]
  }
}

resource appUpdatesRuns 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, appPrincipalId, effectiveRoleDefinitionId)
  scope: registry
  properties: {
    roleDefinitionId: effectiveRoleDefinitionId
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    runsReadWrite
  ]
}

resource operatorUpdatesRuns 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(registry.id, operatorPrincipalId, effectiveRoleDefinitionId)
  scope: registry
  properties: {
    roleDefinitionId: effectiveRoleDefinitionId
    principalId: operatorPrincipalId
  }
  dependsOn: [
    runsReadWrite
  ]
}
