output "invoke_url" {
  description = "Base URL of the stage: the dashboard is at <invoke_url>/, the API under <invoke_url>/v1/ (SigV4) and <invoke_url>/keys/v1/ (API keys)."
  value       = aws_api_gateway_stage.this.invoke_url
}

output "rest_api_id" {
  description = "ID of the keyfleet-api REST API."
  value       = aws_api_gateway_rest_api.this.id
}

output "stage_name" {
  description = "Name of the API Gateway stage."
  value       = aws_api_gateway_stage.this.stage_name
}

output "stage_arn" {
  description = "ARN of the stage (what a WAF web ACL is associated with)."
  value       = aws_api_gateway_stage.this.arn
}

output "usage_plan_id" {
  description = "Always null: the module no longer has a usage plan or API Gateway API keys (API Gateway returns key values to read-only principals, so they must not be credentials). Kept so that existing references still plan; will be removed."
  value       = null
}

output "v1_invoke_arns" {
  description = "execute-api ARNs of /v1 on this stage (every method): what an IAM principal calling the API needs execute-api:Invoke on, besides an entry in the keys secret's principals."
  value = [
    "${aws_api_gateway_rest_api.this.execution_arn}/${aws_api_gateway_stage.this.stage_name}/*/v1",
    "${aws_api_gateway_rest_api.this.execution_arn}/${aws_api_gateway_stage.this.stage_name}/*/v1/*",
  ]
}

output "api_keys_secret_arn" {
  description = "ARN of the secret saying who may call: IAM principals and API key hashes with their scopes ({\"principals\":[{\"arn\",\"scopes\"}],\"keys\":[{\"id\",\"sha256\",\"scopes\"}]})."
  value       = aws_secretsmanager_secret.api_keys.arn
}

output "function_arn" {
  description = "ARN of the keyfleet-api function."
  value       = aws_lambda_function.this.arn
}

output "function_name" {
  description = "Name of the API function."
  value       = aws_lambda_function.this.function_name
}

output "role_arn" {
  description = "ARN of the API function's role."
  value       = aws_iam_role.this.arn
}

output "kms_key_arn" {
  description = "ARN of the API's KMS key (API key hashes secret, log groups, function environment). Whoever writes the hashes needs kms:GenerateDataKey and kms:Decrypt on it."
  value       = aws_kms_key.this.arn
}

output "access_log_group_name" {
  description = "Log group of the API Gateway access logs (one JSON line per request)."
  value       = aws_cloudwatch_log_group.access.name
}
