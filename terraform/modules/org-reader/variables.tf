variable "coordinator_role_arn" {
  description = "ARN of the keyfleet-coordinator role in the provisioning account, the only principal allowed to assume this role. The role need not exist yet: the trust policy matches it by aws:PrincipalArn."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$", var.coordinator_role_arn))
    error_message = "coordinator_role_arn must be an IAM role ARN."
  }
}

variable "role_name" {
  description = "Name of the role. Keep the default unless it clashes; the coordinator receives the ARN (output role_arn)."
  type        = string
  default     = "keyfleet-org-reader"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.role_name))
    error_message = "role_name must be a valid IAM role name (at most 64 characters)."
  }
}

variable "external_id" {
  description = "Optional sts:ExternalId the coordinator must present; give the coordinator module the same value as org_reader_external_id (the example does). Within one organization aws:PrincipalArn already pins the caller."
  type        = string
  default     = null

  validation {
    condition     = var.external_id == null || can(regex("^[A-Za-z0-9+=,.@:/_-]{2,1224}$", var.external_id))
    error_message = "external_id must be 2-1224 characters of letters, digits and +=,.@:/_-."
  }
}

variable "max_session_duration" {
  description = "Maximum session duration of the role in seconds."
  type        = number
  default     = 3600

  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200
    error_message = "max_session_duration must be between 3600 and 43200."
  }
}

variable "tags" {
  description = "Tags added to the role."
  type        = map(string)
  default     = {}
}
