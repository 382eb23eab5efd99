output "role_arn" {
  description = "ARN of the org-reader role (coordinator variable org_reader_role_arn)."
  value       = aws_iam_role.this.arn
}

output "role_name" {
  description = "Name of the org-reader role."
  value       = aws_iam_role.this.name
}

output "organization_id" {
  description = "ID of the organization the role reads."
  value       = local.org_id
}

output "management_account_id" {
  description = "ID of the management account."
  value       = local.management_id
}
