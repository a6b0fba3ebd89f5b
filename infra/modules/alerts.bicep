// What an operator is told about: letters on the archive queue's dead-letter queue, and policy sweeps that
// failed. README, Alerts, says what each means and what to do.
param location string
param tags object
@description('The Service Bus namespace of the archive queue.')
param namespaceId string
param archiveQueueName string
@description('Log Analytics workspace of Application Insights (the app\'s logs are its AppTraces).')
param workspaceId string
@description('Resource id of an action group to notify; empty: the alerts fire in the portal only.')
param actionGroupId string = ''

// Fires while any letter waits there (the count stays up until the letters are resubmitted or removed) and
// resolves itself once the dead-letter queue is empty.
resource deadLetters 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-dead-letters-${archiveQueueName}'
  location: 'global' // metric alerts are global resources
  tags: tags
  properties: {
    description: 'Events on ${archiveQueueName} were dead-lettered: see README, Alerts (acr-archiver dead-letters).'
    severity: 2
    enabled: true
    scopes: [
      namespaceId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'dead-lettered'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'DeadletteredMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                archiveQueueName
              ]
            }
          ]
          timeAggregation: 'Maximum'
          operator: 'GreaterThan'
          threshold: 0
        }
      ]
    }
    autoMitigate: true
    actions: empty(actionGroupId) ? [] : [
      {
        actionGroupId: actionGroupId
      }
    ]
  }
}

// A sweep that failed logs one line naming ArchivePolicySwept and its outcome (contract §8); the sweep timer
// runs every 15 minutes by default, and the wider window absorbs ingestion delay.
var failedSweepQuery = '''
AppTraces
| where Message has "ArchivePolicySwept" and Message has "failed"
| project TimeGenerated, Message, SeverityLevel, AppRoleName
'''

resource failedSweeps 'Microsoft.Insights/scheduledQueryRules@2021-08-01' = {
  name: 'alert-failed-policy-sweeps'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'ACR Run Archiver: a policy sweep failed'
    description: 'An archive policy sweep ended as failed (ArchivePolicySwept, outcome failed): see README, Alerts.'
    severity: 2
    enabled: true
    scopes: [
      workspaceId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT30M'
    criteria: {
      allOf: [
        {
          query: failedSweepQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: empty(actionGroupId) ? [] : [
        actionGroupId
      ]
    }
  }
}
