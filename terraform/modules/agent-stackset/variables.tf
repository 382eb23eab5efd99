variable "stack_set_name" {
  description = "Name of the StackSet."
  type        = string
  default     = "keyfleet-agent"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9-]{0,127}$", var.stack_set_name))
    error_message = "stack_set_name must start with a letter and hold letters, digits and hyphens (at most 128)."
  }
}

variable "call_as" {
  description = "SELF when applied in the management account, DELEGATED_ADMIN when applied in a CloudFormation StackSets delegated administrator account."
  type        = string
  default     = "SELF"

  validation {
    condition     = contains(["SELF", "DELEGATED_ADMIN"], var.call_as)
    error_message = "call_as must be SELF or DELEGATED_ADMIN."
  }
}

variable "organizational_unit_ids" {
  description = "OUs (ou-...) or the root (r-...) whose accounts get an agent, now and whenever an account joins them (auto-deployment). Empty means the organization root, i.e. every member account."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.organizational_unit_ids : can(regex("^(ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}|r-[a-z0-9]{4,32})$", o))])
    error_message = "organizational_unit_ids must hold OU IDs (ou-ab12-cdef3456) or the root ID (r-ab12)."
  }
}

variable "code_s3_bucket" {
  description = "Bucket holding agent.zip, in the agents' region (this provider's region), readable by the organization (bucket policy with aws:PrincipalOrgID)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.code_s3_bucket))
    error_message = "code_s3_bucket must be a valid S3 bucket name."
  }
}

variable "code_s3_key" {
  description = "Key of agent.zip in code_s3_bucket."
  type        = string

  validation {
    condition     = length(var.code_s3_key) > 0 && length(var.code_s3_key) <= 1024
    error_message = "code_s3_key must be 1 to 1024 characters."
  }
}

variable "code_s3_object_version" {
  description = "Version id of agent.zip. A new value rolls the new code out to every account; roll back by setting the previous one. Empty means the latest version at deploy time (then a new upload under the same key is not picked up)."
  type        = string
  default     = ""
}

variable "architecture" {
  description = "Instruction set of the agent bootstrap: x86_64 or arm64."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "coordinator_role_arn" {
  description = "ARN of the keyfleet-coordinator role, the only principal allowed to send to keyfleet-jobs."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$", var.coordinator_role_arn))
    error_message = "coordinator_role_arn must be an IAM role ARN."
  }
}

variable "results_queue_url" {
  description = "URL of the central keyfleet-results queue (coordinator output results_queue_url)."
  type        = string

  validation {
    condition     = can(regex("^https://[^\\s]+/[0-9]{12}/keyfleet-results$", var.results_queue_url))
    error_message = "results_queue_url must be the https URL of a queue named keyfleet-results."
  }
}

variable "results_queue_arn" {
  description = "ARN of the central keyfleet-results queue (coordinator output results_queue_arn)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:sqs:[a-z0-9-]+:[0-9]{12}:keyfleet-results$", var.results_queue_arn))
    error_message = "results_queue_arn must be the ARN of a queue named keyfleet-results."
  }
}

variable "coordinator_public_key" {
  description = "The coordinator's HPKE public key (X25519, standard base64 of 32 bytes) printed by `keyfleet keygen`."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9+/]{43}=$", var.coordinator_public_key))
    error_message = "coordinator_public_key must be 32 bytes in standard base64 (44 characters ending in =)."
  }
}

variable "coordinator_key_id" {
  description = "Identifier of coordinator_public_key printed by `keyfleet keygen`."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9._:-]{1,64}$", var.coordinator_key_id))
    error_message = "coordinator_key_id must be 1-64 letters, digits or . _ : -."
  }
}

variable "function_timeout" {
  description = "Agent timeout in seconds; the jobs queue visibility timeout is six times this."
  type        = number
  default     = 300

  validation {
    condition     = contains([60, 120, 180, 300, 600, 900], var.function_timeout)
    error_message = "function_timeout must be one of 60, 120, 180, 300, 600, 900."
  }
}

variable "memory_size" {
  description = "Agent memory in MB."
  type        = number
  default     = 256

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be between 128 and 10240."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrency of each agent; -1 reserves none (default: new accounts may have a quota of 10, which rejects any reservation). When set, at least maximum_concurrency (checked at plan time)."
  type        = number
  default     = -1

  validation {
    condition     = var.reserved_concurrency >= -1 && var.reserved_concurrency <= 1000
    error_message = "reserved_concurrency must be between -1 and 1000."
  }
}

variable "maximum_concurrency" {
  description = "Maximum concurrent agent invocations from the jobs queue."
  type        = number
  default     = 2

  validation {
    condition     = var.maximum_concurrency >= 2 && var.maximum_concurrency <= 1000
    error_message = "maximum_concurrency must be between 2 and 1000."
  }
}

variable "log_level" {
  description = "RUST_LOG filter of the agents."
  type        = string
  default     = "info"

  validation {
    condition     = can(regex("^[A-Za-z0-9_=,:.-]{1,200}$", var.log_level))
    error_message = "log_level must be a RUST_LOG filter (letters, digits, _ = , : . -)."
  }
}

variable "log_retention_days" {
  description = "Retention of each agent log group in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts."
  }
}

variable "failure_tolerance_percentage" {
  description = "Percentage of accounts that may fail in a StackSet operation before CloudFormation stops it."
  type        = number
  default     = 10

  validation {
    condition     = var.failure_tolerance_percentage >= 0 && var.failure_tolerance_percentage <= 100
    error_message = "failure_tolerance_percentage must be between 0 and 100."
  }
}

variable "max_concurrent_percentage" {
  description = "Percentage of accounts a StackSet operation deploys to at the same time."
  type        = number
  default     = 25

  validation {
    condition     = var.max_concurrent_percentage >= 1 && var.max_concurrent_percentage <= 100
    error_message = "max_concurrent_percentage must be between 1 and 100."
  }
}

variable "deploy_to_current_account" {
  description = "Also deploy the agent template as a plain stack to the account running this module. Service-managed StackSets never deploy to the management account; set this (with call_as = SELF) to rotate the management account's users too, or exclude that account in the coordinator."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to the StackSet (and propagated to the stacks it creates)."
  type        = map(string)
  default     = {}
}
