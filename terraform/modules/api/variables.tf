variable "report_bucket_arn" {
  description = "ARN of the coordinator's report bucket (output report_bucket_arn of the coordinator module). The API reads run manifests, finalized reports and rendered reports from it."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.report_bucket_arn))
    error_message = "report_bucket_arn must be an S3 bucket ARN (arn:aws:s3:::<bucket>)."
  }
}

variable "report_kms_key_arn" {
  description = "ARN of the KMS key that encrypts the report bucket (output kms_key_arn of the coordinator module). The API may decrypt with it only for objects of the report bucket."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.report_kms_key_arn))
    error_message = "report_kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>), not an alias."
  }
}

variable "coordinator_function_arn" {
  description = "ARN of the keyfleet-coordinator function (output function_arn of the coordinator module). Emergency rotations and reactivations are invocations of it."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:function:[A-Za-z0-9_-]{1,64}$", var.coordinator_function_arn))
    error_message = "coordinator_function_arn must be an unqualified Lambda function ARN."
  }
}

variable "code_s3_bucket" {
  description = "Bucket holding api.zip (the API's bootstrap, built like the other functions), in this provider's region."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.code_s3_bucket))
    error_message = "code_s3_bucket must be a valid S3 bucket name."
  }
}

variable "code_s3_key" {
  description = "Key of api.zip in code_s3_bucket, e.g. keyfleet/v0.1.0/api.zip."
  type        = string

  validation {
    condition     = length(var.code_s3_key) > 0 && length(var.code_s3_key) <= 1024
    error_message = "code_s3_key must be 1 to 1024 characters."
  }
}

variable "code_s3_object_version" {
  description = "Version id of the api.zip object. Changing it redeploys the code; roll back by setting a previous version. Null means the latest version at apply time."
  type        = string
  default     = null
}

variable "architecture" {
  description = "Instruction set of the API bootstrap: x86_64 (default) or arm64 (build with scripts/package-lambdas.sh --arm64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "role_name" {
  description = "Name of the API function's IAM role."
  type        = string
  default     = "keyfleet-api"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.role_name))
    error_message = "role_name must be a valid IAM role name (1-64 characters)."
  }
}

variable "memory_size" {
  description = "API function memory in MB."
  type        = number
  default     = 256

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be between 128 and 10240."
  }
}

variable "timeout" {
  description = "API function timeout in seconds. API Gateway stops waiting for a Lambda proxy integration after 29 seconds, so a longer timeout would only keep the function running after the client got a 504."
  type        = number
  default     = 29

  validation {
    condition     = var.timeout >= 3 && var.timeout <= 29
    error_message = "timeout must be between 3 and 29 seconds."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrency of the API function; -1 reserves none. It also caps how many requests reach the function at once, whatever the gateway lets through."
  type        = number
  default     = 10

  validation {
    condition     = var.reserved_concurrency == -1 || var.reserved_concurrency >= 1
    error_message = "reserved_concurrency must be -1 or at least 1."
  }
}

variable "log_level" {
  description = "RUST_LOG filter for the API function, e.g. info or keyfleet_api=debug,info."
  type        = string
  default     = "info"

  validation {
    condition     = can(regex("^[A-Za-z0-9_=,:.-]{1,200}$", var.log_level))
    error_message = "log_level must be a RUST_LOG filter (letters, digits, _ = , : . -)."
  }
}

variable "log_retention_days" {
  description = "Retention in days of the API's log groups (function, API Gateway access and execution logs)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, ...)."
  }
}

variable "cors_origins" {
  description = "Browser origins (https://host[:port]) allowed to call /v1 from another site, passed to the function as KEYFLEET_CORS_ORIGINS. Non-empty also adds OPTIONS methods without authorization on /v1 so preflight requests (which carry no signature) reach the function. Empty: same-origin only (the dashboard)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.cors_origins : can(regex("^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?$", o))])
    error_message = "cors_origins must hold origins such as https://security.example.com (https, no path, no trailing slash)."
  }
}

variable "api_keys_secret_name" {
  description = "Name of the secret saying who may call the API: the IAM principals allowed on /v1 and the SHA-256 hashes of the API keys, each with scopes. It must stay outside keyfleet/, where the agent of this account stores IAM users' keys."
  type        = string
  default     = "keyfleet-api/api-keys"

  validation {
    condition     = can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", var.api_keys_secret_name)) && !startswith(var.api_keys_secret_name, "keyfleet/")
    error_message = "api_keys_secret_name must be a valid secret name outside keyfleet/ (the agent's namespace for IAM users' secrets)."
  }
}

variable "api_keys_readers" {
  description = "Extra principal ARNs allowed to read the keys secret (principals and API key hashes) besides the API role (everyone else is denied GetSecretValue by the secret's resource policy), e.g. the role that adds keys."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.api_keys_readers : can(regex("^arn:aws[a-z-]*:(iam|sts)::[0-9]{12}:", a))])
    error_message = "api_keys_readers must hold IAM or STS principal ARNs."
  }
}

variable "stage_name" {
  description = "Name of the API Gateway stage, the first path segment of the invoke URL."
  type        = string
  default     = "prod"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,128}$", var.stage_name))
    error_message = "stage_name must be 1-128 letters, digits, _ or -."
  }
}

variable "stage_throttle_rate_limit" {
  description = "Stage default, per method (ANY /, ANY /{proxy+}, ANY /v1, ANY /v1/{proxy+}, ...) for all callers together: requests per second. The only gateway limit (no usage plan: it would need API Gateway API keys); the function also limits each API key and each listed principal."
  type        = number
  default     = 20

  validation {
    condition     = var.stage_throttle_rate_limit > 0
    error_message = "stage_throttle_rate_limit must be positive."
  }
}

variable "stage_throttle_burst_limit" {
  description = "Stage default, per method for all callers together: burst of requests above stage_throttle_rate_limit."
  type        = number
  default     = 40

  validation {
    condition     = var.stage_throttle_burst_limit >= 1 && floor(var.stage_throttle_burst_limit) == var.stage_throttle_burst_limit
    error_message = "stage_throttle_burst_limit must be a whole number of at least 1."
  }
}

variable "execution_logging_level" {
  description = "API Gateway execution logging: ERROR (default) or INFO, or OFF. Data tracing (full requests, including the Authorization header with a Bearer key) is never enabled."
  type        = string
  default     = "ERROR"

  validation {
    condition     = contains(["OFF", "ERROR", "INFO"], var.execution_logging_level)
    error_message = "execution_logging_level must be OFF, ERROR or INFO."
  }
}

variable "manage_api_gateway_account" {
  description = "Create the role API Gateway writes CloudWatch logs with and set it in this region's API Gateway account settings (one per account and region; REST API stages refuse access logging without it). Set false when the account already has one (aws apigateway get-account shows cloudwatchRoleArn)."
  type        = bool
  default     = true
}

variable "waf_acl_arn" {
  description = "ARN of a regional WAFv2 web ACL to associate with the stage (rate-based rules, IP allow lists, managed rule groups). Null means no WAF."
  type        = string
  default     = null

  validation {
    condition     = var.waf_acl_arn == null || can(regex("^arn:aws[a-z-]*:wafv2:[a-z0-9-]+:[0-9]{12}:regional/webacl/[A-Za-z0-9_-]+/[a-f0-9-]+$", var.waf_acl_arn))
    error_message = "waf_acl_arn must be the ARN of a REGIONAL WAFv2 web ACL."
  }
}

variable "alarm_topic_arn" {
  description = "SNS topic for the API's alarms (function errors, gateway 5XX), e.g. output alerts_topic_arn of the coordinator module. Null means no alarms."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be an SNS topic ARN."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module."
  type        = map(string)
  default     = {}
}
