// The Service Bus namespace (Entra ID only: local SAS auth is off), the archive queue, the outcome topic with an
// example subscription, the app's and the operator's roles on each entity, and the namespace's diagnostics.
//
// Public network access stays on: the Standard tier has no private endpoints (Premium has), and access is
// Entra ID only (README, Network).
param namespaceName string
param location string
param tags object
param archiveQueueName string
param outcomeTopicName string
param failedOutcomesSubscriptionName string
@description('Example subscription receiving only the summaries of failed archive policy sweeps (contract §8).')
param failedSweepsSubscriptionName string = 'failed-sweeps'
param maxDeliveryCount int
param appPrincipalId string
@description('Optional: an operator (acr-archiver CLI) granted Data Sender and Data Receiver on the archive queue and Data Receiver on the outcome topic\'s subscriptions; nothing namespace-wide.')
param operatorPrincipalId string = ''
@description('Log Analytics workspace receiving the namespace\'s logs and metrics.')
param workspaceId string

var roles = {
  dataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0' // Azure Service Bus Data Receiver
  dataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39' // Azure Service Bus Data Sender
}

resource namespace 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard' // topics need Standard or Premium
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
}

resource archiveQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: namespace
  name: archiveQueueName
  properties: {
    maxDeliveryCount: maxDeliveryCount // the app reads the same number as MAX_DELIVERY_COUNT
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    lockDuration: 'PT5M' // the longest allowed; host.json renews the lock for up to 15 minutes
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P14D'
  }
}

resource outcomeTopic 'Microsoft.ServiceBus/namespaces/topics@2024-01-01' = {
  parent: namespace
  name: outcomeTopicName
  properties: {
    requiresDuplicateDetection: true // outcome message ids derive from the inbound id: a redelivery's repeat is dropped
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    defaultMessageTimeToLive: 'P14D'
  }
}

resource failedOutcomes 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = {
  parent: outcomeTopic
  name: failedOutcomesSubscriptionName
  properties: {
    maxDeliveryCount: 10
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P7D'
    deadLetteringOnMessageExpiration: true // a failure nobody read in 7 days is kept, not dropped
  }
}

// A named rule: created through ARM it replaces the implicit $Default (1=1) rule. Naming it $Default does not
// work (ARM reports success and the subscription ends up without rules).
resource failedOnly 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = {
  parent: failedOutcomes
  name: 'outcome-failed'
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: 'outcome = \'failed\''
    }
  }
}

// Example for discovery: only the ArchivePolicySwept summaries of failed sweeps (a listing ARM refused, a
// nextLink on another origin, the queue refusing the events). sys.Label is the message's subject.
resource failedSweeps 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2024-01-01' = {
  parent: outcomeTopic
  name: failedSweepsSubscriptionName
  properties: {
    maxDeliveryCount: 10
    lockDuration: 'PT1M'
    defaultMessageTimeToLive: 'P7D'
    deadLetteringOnMessageExpiration: true
  }
}

resource failedSweepsOnly 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2024-01-01' = {
  parent: failedSweeps
  name: 'sweep-failed'
  properties: {
    filterType: 'SqlFilter'
    sqlFilter: {
      sqlExpression: 'sys.Label = \'ArchivePolicySwept\' AND outcome = \'failed\''
    }
  }
}

// The trigger receives from the queue.
resource appReceivesFromQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(archiveQueue.id, appPrincipalId, roles.dataReceiver)
  scope: archiveQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.dataReceiver)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Re-scheduling an event puts it back on the queue.
resource appSendsToQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(archiveQueue.id, appPrincipalId, roles.dataSender)
  scope: archiveQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.dataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Outcomes are published to the topic.
resource appSendsToTopic 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(outcomeTopic.id, appPrincipalId, roles.dataSender)
  scope: outcomeTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.dataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The operator CLI: `send` and `dead-letters resubmit` send to the queue; `dead-letters` receives from its
// dead-letter queue, a sub-queue that the queue's scope covers.
resource operatorSendsToQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(archiveQueue.id, operatorPrincipalId, roles.dataSender)
  scope: archiveQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.dataSender)
    principalId: operatorPrincipalId
  }
}

resource operatorReceivesFromQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(archiveQueue.id, operatorPrincipalId, roles.dataReceiver)
  scope: archiveQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.dataReceiver)
    principalId: operatorPrincipalId
  }
}

// `outcomes` receives from the topic's subscriptions: Receiver on a topic applies to its subscriptions (a topic
// itself has nothing to receive), and sending to the topic stays the app's alone.
resource operatorReceivesOutcomes 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(outcomeTopic.id, operatorPrincipalId, roles.dataReceiver)
  scope: outcomeTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.dataReceiver)
    principalId: operatorPrincipalId
  }
}

// Operational logs and metrics (DeadletteredMessages among them) to the workspace.
resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: namespace
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
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

// https://<name>.servicebus.windows.net:443/ → <name>.servicebus.windows.net (any cloud's suffix)
output id string = namespace.id
output fullyQualifiedNamespace string = split(split(namespace.properties.serviceBusEndpoint, '//')[1], ':')[0]
