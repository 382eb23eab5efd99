output "function_arn" {
  description = "ARN of the keyfleet-coordinator function (invoke it with {\"action\":\"run\"} for a manual run)."
  value       = aws_lambda_function.this.arn
}

output "function_name" {
  description = "Name of the coordinator function."
  value       = aws_lambda_function.this.function_name
}

output "role_arn" {
  description = "ARN of the keyfleet-coordinator role: trusted by the org-reader role, the only sender allowed by every keyfleet-jobs queue."
  value       = aws_iam_role.this.arn
}

output "results_queue_url" {
  description = "URL of keyfleet-results (StackSet parameter ResultsQueueUrl)."
  value       = aws_sqs_queue.results.id
}

output "results_queue_arn" {
  description = "ARN of keyfleet-results (StackSet parameter ResultsQueueArn)."
  value       = aws_sqs_queue.results.arn
}

output "results_dlq_arn" {
  description = "ARN of keyfleet-results-dlq."
  value       = aws_sqs_queue.results_dlq.arn
}

output "invoke_dlq_arn" {
  description = "ARN of keyfleet-coordinator-dlq (failed scheduled invocations)."
  value       = aws_sqs_queue.invoke_dlq.arn
}

output "report_bucket" {
  description = "Name of the report bucket."
  value       = aws_s3_bucket.reports.id
}

output "report_bucket_arn" {
  description = "ARN of the report bucket (input report_bucket_arn of the api module)."
  value       = aws_s3_bucket.reports.arn
}

output "alerts_topic_arn" {
  description = "ARN of the keyfleet-alerts SNS topic."
  value       = aws_sns_topic.alerts.arn
}

output "kms_key_arn" {
  description = "ARN of the coordinator KMS key (bucket, topic, secret, logs). Readers of the reports need kms:Decrypt on it."
  value       = aws_kms_key.this.arn
}

output "private_key_secret_arn" {
  description = "ARN of the secret `keyfleet keygen` writes the coordinator private key to."
  value       = aws_secretsmanager_secret.private_key.arn
}

output "ses_identity" {
  description = "SES identity the coordinator sends from."
  value       = local.ses_identity
}

output "ses_dkim_tokens" {
  description = "Easy DKIM tokens of a domain identity: publish <token>._domainkey.<domain> CNAME <token>.dkim.amazonses.com for each. Empty for an email identity or when the identity is not created here."
  value       = try(aws_sesv2_email_identity.sender[0].dkim_signing_attributes[0].tokens, [])
}

output "ses_configuration_set" {
  description = "Name of the SES configuration set."
  value       = aws_sesv2_configuration_set.this.configuration_set_name
}
