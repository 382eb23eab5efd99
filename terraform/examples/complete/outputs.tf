output "coordinator_function_name" {
  description = "Coordinator function; invoke it with {\"action\":\"run\"} for a manual run."
  value       = module.coordinator.function_name
}

output "private_key_secret_arn" {
  description = "Secret `keyfleet keygen` writes the coordinator private key to."
  value       = module.coordinator.private_key_secret_arn
}

output "report_bucket" {
  description = "Bucket with the run manifests and consolidated reports."
  value       = module.coordinator.report_bucket
}

output "alerts_topic_arn" {
  description = "SNS topic of keyfleet alerts."
  value       = module.coordinator.alerts_topic_arn
}

output "ses_dkim_tokens" {
  description = "DKIM CNAME tokens to publish when ses_identity is a domain."
  value       = module.coordinator.ses_dkim_tokens
}

output "code_bucket" {
  description = "Bucket holding the Lambda zips."
  value       = aws_s3_bucket.code.id
}

output "agent_code_version" {
  description = "S3 version id of the agent.zip deployed to the accounts (keep it to roll back to)."
  value       = coalesce(var.agent_code_version, aws_s3_object.agent.version_id)
}

output "coordinator_code_version" {
  description = "S3 version id of the coordinator.zip deployed (keep it to roll back to)."
  value       = coalesce(var.coordinator_code_version, aws_s3_object.coordinator.version_id)
}

output "api_invoke_url" {
  description = "Base URL of the REST API (/v1/...) and dashboard (/); null without the API."
  value       = try(module.api[0].invoke_url, null)
}

output "api_v1_invoke_arns" {
  description = "execute-api ARNs of /v1: what an IAM principal calling the API with SigV4 needs execute-api:Invoke on (besides its entry in the keys secret's principals); null without the API."
  value       = try(module.api[0].v1_invoke_arns, null)
}

output "api_keys_secret_arn" {
  description = "Secret holding the SHA-256 hashes of the API keys; null without the API."
  value       = try(module.api[0].api_keys_secret_arn, null)
}

output "api_code_version" {
  description = "S3 version id of the api.zip deployed (keep it to roll back to); null without the API."
  value       = var.enable_api ? coalesce(var.api_code_version, aws_s3_object.api[0].version_id) : null
}

output "agent_stack_set_name" {
  description = "Name of the agent StackSet, null until coordinator_public_key is set."
  value       = try(module.agents[0].stack_set_name, null)
}

output "next_step" {
  description = "What to do next."
  value       = local.deploy_agents ? "Agents deployed to ${join(", ", module.agents[0].organizational_unit_ids)} in ${var.region}." : "Run `keyfleet keygen` against ${module.coordinator.private_key_secret_arn}, set coordinator_public_key and coordinator_key_id, and apply again to deploy the agents."
}
