output "stack_set_name" {
  description = "Name of the agent StackSet."
  value       = aws_cloudformation_stack_set.this.name
}

output "stack_set_id" {
  description = "ID of the agent StackSet."
  value       = aws_cloudformation_stack_set.this.stack_set_id
}

output "region" {
  description = "Region the agents run in (must equal the coordinator's region)."
  value       = local.region
}

output "organizational_unit_ids" {
  description = "OUs (or the root) the StackSet deploys to and auto-deploys new accounts of."
  value       = local.ou_ids
}

output "current_account_stack_id" {
  description = "ID of the plain agent stack in the account running this module, when deploy_to_current_account is set."
  value       = try(aws_cloudformation_stack.current_account[0].id, null)
}
