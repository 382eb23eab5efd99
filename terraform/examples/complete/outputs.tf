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

output "agent_stack_set_name" {
  description = "Name of the agent StackSet, null until coordinator_public_key is set."
  value       = try(module.agents[0].stack_set_name, null)
}

output "next_step" {
  description = "What to do next."
  value       = local.deploy_agents ? "Agents deployed to ${join(", ", module.agents[0].organizational_unit_ids)} in ${var.region}." : "Run `keyfleet keygen` against ${module.coordinator.private_key_secret_arn}, set coordinator_public_key and coordinator_key_id, and apply again to deploy the agents."
}
