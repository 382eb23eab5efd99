variable "organization_id" {
  description = "ID of the AWS Organization (o-...). Only keyfleet-agent roles of principals in this organization may send results, and jobs are only sent to queues owned by it."
  type        = string

  validation {
    condition     = can(regex("^o-[a-z0-9]{10,32}$", var.organization_id))
    error_message = "organization_id must look like o-abc123defg."
  }
}

variable "org_reader_role_arn" {
  description = "ARN of the keyfleet-org-reader role in the management account (output role_arn of the org-reader module)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$", var.org_reader_role_arn))
    error_message = "org_reader_role_arn must be an IAM role ARN."
  }
}

variable "org_reader_external_id" {
  description = "The sts:ExternalId the org reader role's trust requires (the org-reader module's external_id); the coordinator sends it when it assumes that role. Null: none."
  type        = string
  default     = null

  validation {
    condition     = var.org_reader_external_id == null || can(regex("^[A-Za-z0-9+=,.@:/_-]{2,1224}$", var.org_reader_external_id))
    error_message = "org_reader_external_id must be 2-1224 characters of letters, digits and +=,.@:/_-."
  }
}

variable "agent_region" {
  description = "Region the agent StackSet is deployed to; jobs are sent to keyfleet-jobs queues in this region only. Null means this provider's region, which is what the coordinator addresses."
  type        = string
  default     = null

  validation {
    condition     = var.agent_region == null || can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.agent_region))
    error_message = "agent_region must be a region name such as eu-west-1."
  }
}

variable "code_s3_bucket" {
  description = "Bucket holding coordinator.zip (built by scripts/package-lambdas.sh), in this provider's region."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.code_s3_bucket))
    error_message = "code_s3_bucket must be a valid S3 bucket name."
  }
}

variable "code_s3_key" {
  description = "Key of coordinator.zip in code_s3_bucket, e.g. keyfleet/v0.1.0/coordinator.zip."
  type        = string

  validation {
    condition     = length(var.code_s3_key) > 0 && length(var.code_s3_key) <= 1024
    error_message = "code_s3_key must be 1 to 1024 characters."
  }
}

variable "code_s3_object_version" {
  description = "Version id of the coordinator.zip object. Changing it redeploys the code; roll back by setting a previous version. Null means the latest version at apply time."
  type        = string
  default     = null
}

variable "architecture" {
  description = "Instruction set of the coordinator bootstrap: x86_64 (default) or arm64 (build with scripts/package-lambdas.sh --arm64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "memory_size" {
  description = "Coordinator memory in MB. Report rendering and zip building are the heaviest steps."
  type        = number
  default     = 512

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be between 128 and 10240."
  }
}

variable "summary_attach_max_bytes" {
  description = "The largest CSV report the security team's summary email attaches, in bytes; a larger one is linked (base64 adds a third, so 7 MB stays under the common 10 MB mail limit; SES takes up to 40 MB)."
  type        = number
  default     = 7000000

  validation {
    condition     = var.summary_attach_max_bytes >= 0 && var.summary_attach_max_bytes <= 30000000
    error_message = "summary_attach_max_bytes must be between 0 and 30000000 (SES refuses messages over 40 MB, and base64 adds a third)."
  }
}

variable "run_deadline" {
  description = "How long a run waits for its agents before the sweep finalizes it without them, as <n>d, <n>h, <n>m or <n>s."
  type        = string
  default     = "2h"

  validation {
    condition     = can(regex("^[0-9]+[dhms]$", var.run_deadline))
    error_message = "run_deadline must be a duration such as 2h or 90m."
  }
}

variable "timeout" {
  description = "Coordinator timeout in seconds. The results queue visibility timeout is six times this value."
  type        = number
  default     = 300

  validation {
    condition     = var.timeout >= 30 && var.timeout <= 900
    error_message = "timeout must be between 30 and 900 seconds."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrency of the coordinator; -1 reserves none. Must be at least results_max_concurrency plus one for the schedules."
  type        = number
  default     = 10

  validation {
    condition     = var.reserved_concurrency == -1 || var.reserved_concurrency >= 3
    error_message = "reserved_concurrency must be -1 or at least 3."
  }
}

variable "results_max_concurrency" {
  description = "Maximum concurrent coordinator invocations from the results queue (event source mapping scaling)."
  type        = number
  default     = 5

  validation {
    condition     = var.results_max_concurrency >= 2 && var.results_max_concurrency <= 1000
    error_message = "results_max_concurrency must be between 2 and 1000."
  }
}

variable "log_level" {
  description = "RUST_LOG filter for the coordinator, e.g. info or keyfleet_coordinator=debug,info."
  type        = string
  default     = "info"

  validation {
    condition     = can(regex("^[A-Za-z0-9_=,:.-]{1,200}$", var.log_level))
    error_message = "log_level must be a RUST_LOG filter (letters, digits, _ = , : . -)."
  }
}

variable "log_retention_days" {
  description = "Retention of the coordinator log group in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, ...)."
  }
}

variable "schedule_expression" {
  description = "EventBridge schedule of the rotation run (UTC). Default: every day at 13:00 UTC."
  type        = string
  default     = "cron(0 13 * * ? *)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.schedule_expression))
    error_message = "schedule_expression must be a cron(...) or rate(...) expression."
  }
}

variable "sweep_schedule_expression" {
  description = "EventBridge schedule of the deadline sweep, which finalizes runs past their deadline and lists the accounts that never reported."
  type        = string
  default     = "rate(1 hour)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.sweep_schedule_expression))
    error_message = "sweep_schedule_expression must be a cron(...) or rate(...) expression."
  }
}

variable "report_bucket_name" {
  description = "Name of the report bucket (runs, reports, notification ledger). Null means keyfleet-reports-<account id>-<region>."
  type        = string
  default     = null

  validation {
    condition     = var.report_bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.report_bucket_name))
    error_message = "report_bucket_name must be a valid S3 bucket name."
  }
}

variable "run_retention_days" {
  description = "Objects under runs/ (manifests, results, reports, ledger of each run) expire after this many days."
  type        = number
  default     = 400

  validation {
    condition     = var.run_retention_days >= 30
    error_message = "run_retention_days must be at least 30 so a run is never expired while it can still be finalized or audited."
  }
}

variable "sender" {
  description = "From address of every keyfleet email, e.g. keyfleet@example.com. It must belong to ses_identity."
  type        = string

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.sender))
    error_message = "sender must be a plain email address."
  }
}

variable "security_team" {
  description = "Email addresses of the central security team: they receive the consolidated report."
  type        = list(string)

  validation {
    condition     = length(var.security_team) > 0 && alltrue([for a in var.security_team : can(regex("^[^@\\s,]+@[^@\\s,]+\\.[^@\\s,]+$", a))])
    error_message = "security_team must hold at least one plain email address (no commas)."
  }
}

variable "alert_subscriptions" {
  description = "Email addresses subscribed to the alerts topic (each must confirm the subscription). Other subscriptions can be added outside this module."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.alert_subscriptions : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", a))])
    error_message = "alert_subscriptions must hold plain email addresses."
  }
}

variable "ses_identity" {
  description = "SES identity mail is sent from: a domain (example.com, verified by the DKIM records in output ses_dkim_tokens) or an email address (verified by a link). Null means the sender address."
  type        = string
  default     = null

  validation {
    condition     = var.ses_identity == null || can(regex("^([^@\\s]+@)?[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$", var.ses_identity))
    error_message = "ses_identity must be a domain name or an email address."
  }
}

variable "create_ses_identity" {
  description = "Create the SES identity. Set false when the identity already exists in this account and region (it is then only referenced)."
  type        = bool
  default     = true
}

variable "ses_configuration_set_name" {
  description = "Name of the SES configuration set every keyfleet email is sent with (TLS required, reputation metrics on)."
  type        = string
  default     = "keyfleet"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,64}$", var.ses_configuration_set_name))
    error_message = "ses_configuration_set_name must be 1-64 letters, digits, _ or -."
  }
}

variable "ses_sandbox_recipients" {
  description = "While the account is in the SES sandbox, every recipient must be a verified identity and the sender needs permission on it. List the test recipients here; leave empty once production access is granted."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.ses_sandbox_recipients : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", a))])
    error_message = "ses_sandbox_recipients must hold plain email addresses."
  }
}

variable "exclude_accounts" {
  description = "Account IDs the coordinator never sends jobs to (for example the management account when it runs no agent)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.exclude_accounts : can(regex("^[0-9]{12}$", a))])
    error_message = "exclude_accounts must hold 12-digit account IDs."
  }
}

variable "exclude_ous" {
  description = "Organizational unit IDs (ou-...) whose accounts, at any depth, are skipped."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.exclude_ous : can(regex("^ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}$", o))])
    error_message = "exclude_ous must hold OU IDs such as ou-ab12-cdef3456."
  }
}

variable "rotation_policy" {
  description = "Rotation policy passed to the coordinator as KEYFLEET_POLICY. Unset fields keep the built-in defaults (rotate 80d, deactivate 90d, delete 100d, unused 90d, max age 120d, Exempt=True, Email tag, delivery by email, undelivered alert 7d, cutover on use true). Durations are <n>d, <n>h, <n>m or <n>s; max_key_age also accepts never."
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
    # A new key still undelivered this long after the coordinator received
    # it is alerted by name (default 7d); its old key stays active meanwhile.
    undelivered_alert_after = optional(string)
    # Cutover by evidence (default true): once the replacement is used and
    # the old key is not, the old key is deactivated at the next run instead
    # of on its date. false keeps the date for every key.
    cutover_on_use = optional(bool)
  })
  default = {}

  validation {
    condition = alltrue([
      for d in [
        var.rotation_policy.rotate_after,
        var.rotation_policy.deactivate_after,
        var.rotation_policy.delete_after,
        var.rotation_policy.unused_delete_after,
        var.rotation_policy.undelivered_alert_after,
      ] : d == null || can(regex("^[0-9]+[dhms]$", d))
    ])
    error_message = "rotate_after, deactivate_after, delete_after, unused_delete_after and undelivered_alert_after must look like 80d, 12h, 30m or 45s."
  }

  validation {
    condition     = var.rotation_policy.max_key_age == null || can(regex("^([0-9]+[dhms]|never)$", var.rotation_policy.max_key_age))
    error_message = "max_key_age must be a duration such as 120d, or never."
  }

  validation {
    condition     = var.rotation_policy.delivery == null || contains(["email", "secrets-manager", "both"], coalesce(var.rotation_policy.delivery, "email"))
    error_message = "delivery must be email, secrets-manager or both."
  }
}

variable "private_key_readers" {
  description = "Extra principal ARNs allowed to read the coordinator private-key secret besides the coordinator role (everyone else is denied GetSecretValue by the secret's resource policy)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.private_key_readers : can(regex("^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:", a))])
    error_message = "private_key_readers must hold IAM or STS principal ARNs."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
