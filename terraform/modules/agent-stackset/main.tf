# keyfleet agent in every member account: a service-managed StackSet of
# templates/agent.yaml with auto-deployment, so an account created in (or moved
# into) a target OU gets an agent without any apply, and an account that leaves
# loses it.
#
# Apply in the management account (call_as = SELF) or in a CloudFormation
# StackSets delegated administrator (call_as = DELEGATED_ADMIN), with the
# provider in the coordinator's region: the instances are created in this
# provider's region, one region per account by design (IAM is global, and the
# fixed role name keyfleet-agent makes a second region fail rather than run a
# second agent on the same users).

data "aws_region" "current" {}

# The root is only looked up when no OU is given (the lookup needs the
# management account or an Organizations delegated administrator).
data "aws_organizations_organization" "current" {
  count = length(var.organizational_unit_ids) == 0 ? 1 : 0
}

locals {
  region = data.aws_region.current.id
  ou_ids = length(var.organizational_unit_ids) > 0 ? var.organizational_unit_ids : data.aws_organizations_organization.current[*].roots[0].id

  template_body = file("${path.module}/../../templates/agent.yaml")

  parameters = {
    CodeS3Bucket         = var.code_s3_bucket
    CodeS3Key            = var.code_s3_key
    CodeS3ObjectVersion  = var.code_s3_object_version
    Architecture         = var.architecture
    CoordinatorRoleArn   = var.coordinator_role_arn
    ResultsQueueUrl      = var.results_queue_url
    ResultsQueueArn      = var.results_queue_arn
    CoordinatorPublicKey = var.coordinator_public_key
    CoordinatorKeyId     = var.coordinator_key_id
    FunctionTimeout      = tostring(var.function_timeout)
    MemorySize           = tostring(var.memory_size)
    ReservedConcurrency  = tostring(var.reserved_concurrency)
    MaximumConcurrency   = tostring(var.maximum_concurrency)
    LogLevel             = var.log_level
    LogRetentionDays     = tostring(var.log_retention_days)
  }

  tags = merge({ "keyfleet:component" = "agent" }, var.tags)
}

resource "aws_cloudformation_stack_set" "this" {
  name             = var.stack_set_name
  description      = "keyfleet agent: rotates IAM user access keys in each member account"
  permission_model = "SERVICE_MANAGED"
  call_as          = var.call_as
  capabilities     = ["CAPABILITY_NAMED_IAM"]
  template_body    = local.template_body
  parameters       = local.parameters
  tags             = local.tags

  auto_deployment {
    enabled                          = true
    retain_stacks_on_account_removal = false
  }

  # Lets CloudFormation queue an update behind a running auto-deployment
  # instead of failing with OperationInProgressException.
  managed_execution {
    active = true
  }

  operation_preferences {
    failure_tolerance_percentage = var.failure_tolerance_percentage
    max_concurrent_percentage    = var.max_concurrent_percentage
    region_concurrency_type      = "PARALLEL"
  }

  lifecycle {
    # Set by CloudFormation for service-managed StackSets; not ours to manage.
    ignore_changes = [administration_role_arn]

    # Lambda throttles a jobs mapping allowed more invocations than the
    # agent's reserved concurrency: jobs wait, retry and reach the DLQ.
    precondition {
      condition     = var.reserved_concurrency == -1 || var.reserved_concurrency >= var.maximum_concurrency
      error_message = "reserved_concurrency must be -1 or at least maximum_concurrency: Lambda throttles a jobs mapping allowed more invocations than the agent may run."
    }
  }
}

resource "aws_cloudformation_stack_set_instance" "this" {
  stack_set_name = aws_cloudformation_stack_set.this.name
  call_as        = var.call_as
  retain_stack   = false

  deployment_targets {
    organizational_unit_ids = local.ou_ids
  }

  operation_preferences {
    failure_tolerance_percentage = var.failure_tolerance_percentage
    max_concurrent_percentage    = var.max_concurrent_percentage
    region_concurrency_type      = "PARALLEL"
  }

  timeouts {
    create = "60m"
    update = "60m"
    delete = "60m"
  }
}

# Service-managed StackSets skip the management account; this optional plain
# stack covers it.
resource "aws_cloudformation_stack" "current_account" {
  #checkov:skip=CKV_AWS_124:Failures surface in the Terraform apply itself; a silent agent shows up as a missing account in the coordinator's report and alert.
  count         = var.deploy_to_current_account ? 1 : 0
  name          = var.stack_set_name
  capabilities  = ["CAPABILITY_NAMED_IAM"]
  template_body = local.template_body
  parameters    = local.parameters
  tags          = local.tags
}
