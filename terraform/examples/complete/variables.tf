variable "region" {
  description = "Region of the coordinator, the code bucket and every agent."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be a region name such as eu-west-1."
  }
}

variable "management_profile" {
  description = "AWS CLI profile with administrator access to the management account. Null uses the default credential chain."
  type        = string
  default     = null
}

variable "provisioning_profile" {
  description = "AWS CLI profile with administrator access to the provisioning account. Null uses the default credential chain."
  type        = string
  default     = null
}

variable "stacksets_profile" {
  description = "AWS CLI profile of a CloudFormation StackSets delegated administrator account that owns the agent StackSet (with agents_call_as = DELEGATED_ADMIN). Null means the management profile."
  type        = string
  default     = null
}

variable "agents_call_as" {
  description = "SELF when the StackSet is created in the management account, DELEGATED_ADMIN when stacksets_profile is a CloudFormation StackSets delegated administrator."
  type        = string
  default     = "SELF"

  validation {
    condition     = contains(["SELF", "DELEGATED_ADMIN"], var.agents_call_as)
    error_message = "agents_call_as must be SELF or DELEGATED_ADMIN."
  }
}

variable "organizational_unit_ids" {
  description = "OUs that get an agent (and auto-deploy it to new accounts). Empty means the root: every member account. To add an OU, add its ID here and apply."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.organizational_unit_ids : can(regex("^(ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}|r-[a-z0-9]{4,32})$", o))])
    error_message = "organizational_unit_ids must hold OU IDs (ou-ab12-cdef3456) or the root ID (r-ab12)."
  }
}

variable "agent_in_management_account" {
  description = "Deploy an agent to the management account too (plain stack; StackSets skip that account; needs agents_call_as = SELF). Otherwise the management account is excluded from runs so it is not reported missing."
  type        = bool
  default     = false
}

variable "dist_dir" {
  description = "Directory holding agent.zip and coordinator.zip from scripts/package-lambdas.sh. Null means dist/ at the repository root."
  type        = string
  default     = null
}

variable "code_bucket_name" {
  description = "Name of the code bucket created in the provisioning account. Null means keyfleet-code-<provisioning account id>-<region>."
  type        = string
  default     = null

  validation {
    condition     = var.code_bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.code_bucket_name))
    error_message = "code_bucket_name must be a valid S3 bucket name."
  }
}

variable "architecture" {
  description = "Instruction set the zips were built for: x86_64 (default) or arm64 (scripts/package-lambdas.sh --arm64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "agent_code_version" {
  description = "Roll back the agents: S3 version id of an earlier agent.zip upload. Null deploys the version uploaded by this apply."
  type        = string
  default     = null
}

variable "coordinator_code_version" {
  description = "Roll back the coordinator: S3 version id of an earlier coordinator.zip upload. Null deploys the version uploaded by this apply."
  type        = string
  default     = null
}

variable "api_code_version" {
  description = "Roll back the API: S3 version id of an earlier api.zip upload. Null deploys the version uploaded by this apply."
  type        = string
  default     = null
}

variable "enable_api" {
  description = "Deploy the REST API and dashboard (module api, function keyfleet-api behind API Gateway). Needs dist/api.zip."
  type        = bool
  default     = true
}

variable "api_cors_origins" {
  description = "Browser origins (https://host) allowed to call the API's /v1 from another site. Empty: same-origin only."
  type        = list(string)
  default     = []
}

variable "api_waf_acl_arn" {
  description = "ARN of a regional WAFv2 web ACL to put in front of the API. Null means none."
  type        = string
  default     = null
}

variable "api_manage_api_gateway_account" {
  description = "Let the api module set this region's API Gateway CloudWatch Logs role (account setting). Set false if the account already has one."
  type        = bool
  default     = true
}

variable "coordinator_public_key" {
  description = "Public key printed by `keyfleet keygen`. Leave null on the first apply: the agents are deployed once it and coordinator_key_id are set."
  type        = string
  default     = null
}

variable "coordinator_key_id" {
  description = "Key id printed by `keyfleet keygen`."
  type        = string
  default     = null
}

variable "sender" {
  description = "From address of keyfleet mail, e.g. keyfleet@example.com."
  type        = string
}

variable "ses_identity" {
  description = "SES identity to create: a domain (verify with the DKIM records of output ses_dkim_tokens) or an email address. Null means the sender address."
  type        = string
  default     = null
}

variable "ses_sandbox_recipients" {
  description = "Recipients to verify while the SES account is in the sandbox."
  type        = list(string)
  default     = []
}

variable "security_team" {
  description = "Addresses that receive the consolidated report."
  type        = list(string)
}

variable "alert_subscriptions" {
  description = "Addresses subscribed to the alerts topic."
  type        = list(string)
  default     = []
}

variable "exclude_accounts" {
  description = "Account IDs never rotated."
  type        = list(string)
  default     = []
}

variable "exclude_ous" {
  description = "OU IDs whose accounts are never rotated."
  type        = list(string)
  default     = []
}

variable "rotation_policy" {
  description = "Rotation policy overrides (see the coordinator module variable of the same name); {} keeps the defaults."
  type = object({
    rotate_after        = optional(string)
    deactivate_after    = optional(string)
    delete_after        = optional(string)
    unused_delete_after = optional(string)
    max_key_age         = optional(string)
    exempt_tag = optional(object({
      key   = string
      value = string
    }))
    email_tag = optional(string)
    delivery  = optional(string)
    cleanup   = optional(bool)
  })
  default = {}
}

variable "schedule_expression" {
  description = "Schedule of the rotation run (UTC)."
  type        = string
  default     = "cron(0 13 * * ? *)"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "org_reader_external_id" {
  description = "Optional sts:ExternalId required by the org reader role's trust; passed to both the org-reader and the coordinator module, so the coordinator sends what the trust requires."
  type        = string
  default     = null
}
