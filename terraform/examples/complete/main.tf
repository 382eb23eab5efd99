# keyfleet, complete: org-reader role in the management account, agent
# StackSet in the management account (or a StackSets delegated
# administrator), code bucket, coordinator and REST API in the provisioning
# account.
#
# Two applies on a new installation (see README.md):
#   1. without coordinator_public_key: everything but the agents;
#   2. after `keyfleet keygen`, with coordinator_public_key and
#      coordinator_key_id: the agent StackSet.

data "aws_caller_identity" "management" {
  provider = aws.management
}

data "aws_caller_identity" "provisioning" {
  provider = aws.provisioning
}

data "aws_partition" "provisioning" {
  provider = aws.provisioning
}

locals {
  provisioning_account_id = data.aws_caller_identity.provisioning.account_id
  management_account_id   = data.aws_caller_identity.management.account_id

  # Known before the role exists, so the org-reader trust and the coordinator
  # do not depend on each other.
  coordinator_role_arn = "arn:${data.aws_partition.provisioning.partition}:iam::${local.provisioning_account_id}:role/keyfleet-coordinator"

  dist_dir      = coalesce(var.dist_dir, "${path.root}/../../../dist")
  code_bucket   = coalesce(var.code_bucket_name, "keyfleet-code-${local.provisioning_account_id}-${var.region}")
  deploy_agents = var.coordinator_public_key != null && var.coordinator_key_id != null

  # The plain stack for the management account is created by the StackSet
  # module in its own account, which is the management account only with
  # agents_call_as = "SELF".
  agent_in_management = var.agent_in_management_account && var.agents_call_as == "SELF"
  exclude_accounts = distinct(concat(
    var.exclude_accounts,
    local.agent_in_management ? [] : [local.management_account_id],
  ))
}

################################################################################
# Code bucket (provisioning account): versioned, readable by the organization.
################################################################################

resource "aws_s3_bucket" "code" {
  #checkov:skip=CKV_AWS_18:Holds only build artifacts; reads are audited with CloudTrail S3 data events.
  #checkov:skip=CKV_AWS_144:Artifacts are reproducible from the tagged source; no replica needed.
  #checkov:skip=CKV_AWS_145:Lambda in every member account fetches the code with that account's StackSet execution role; a customer managed key would need a grant for every account. SSE-S3 encrypts at rest.
  #checkov:skip=CKV2_AWS_62:No consumer of bucket events.
  provider = aws.provisioning
  bucket   = local.code_bucket
  tags     = var.tags
}

resource "aws_s3_bucket_ownership_controls" "code" {
  provider = aws.provisioning
  bucket   = aws_s3_bucket.code.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "code" {
  provider                = aws.provisioning
  bucket                  = aws_s3_bucket.code.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "code" {
  provider = aws.provisioning
  bucket   = aws_s3_bucket.code.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "code" {
  provider = aws.provisioning
  bucket   = aws_s3_bucket.code.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "code" {
  provider = aws.provisioning
  bucket   = aws_s3_bucket.code.id

  # Earlier uploads stay available for rollback (agent_code_version,
  # coordinator_code_version): the last 20, and any younger than a year.
  rule {
    id     = "keep-recent-releases"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days           = 365
      newer_noncurrent_versions = 20
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.code]
}

data "aws_iam_policy_document" "code_bucket" {
  provider = aws.provisioning

  # CloudFormation StackSets create the agent function in each member account
  # with that account's execution role, which must read the zip.
  statement {
    sid    = "OrganizationReadsCode"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.code.arn}/keyfleet/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalOrgID"
      values   = [module.org_reader.organization_id]
    }
  }

  statement {
    sid    = "DenyInsecureTransport"
    effect = "Deny"
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.code.arn,
      "${aws_s3_bucket.code.arn}/*",
    ]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "code" {
  provider   = aws.provisioning
  bucket     = aws_s3_bucket.code.id
  policy     = data.aws_iam_policy_document.code_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.code]
}

resource "aws_s3_object" "agent" {
  provider    = aws.provisioning
  bucket      = aws_s3_bucket.code.id
  key         = "keyfleet/agent.zip"
  source      = "${local.dist_dir}/agent.zip"
  source_hash = filemd5("${local.dist_dir}/agent.zip")
  tags        = var.tags
  depends_on  = [aws_s3_bucket_versioning.code]
}

resource "aws_s3_object" "coordinator" {
  provider    = aws.provisioning
  bucket      = aws_s3_bucket.code.id
  key         = "keyfleet/coordinator.zip"
  source      = "${local.dist_dir}/coordinator.zip"
  source_hash = filemd5("${local.dist_dir}/coordinator.zip")
  tags        = var.tags
  depends_on  = [aws_s3_bucket_versioning.code]
}

resource "aws_s3_object" "api" {
  count       = var.enable_api ? 1 : 0
  provider    = aws.provisioning
  bucket      = aws_s3_bucket.code.id
  key         = "keyfleet/api.zip"
  source      = "${local.dist_dir}/api.zip"
  source_hash = filemd5("${local.dist_dir}/api.zip")
  tags        = var.tags
  depends_on  = [aws_s3_bucket_versioning.code]
}

################################################################################
# keyfleet.
################################################################################

module "org_reader" {
  source    = "../../modules/org-reader"
  providers = { aws = aws.management }

  coordinator_role_arn = local.coordinator_role_arn
  external_id          = var.org_reader_external_id
  tags                 = var.tags
}

module "coordinator" {
  source    = "../../modules/coordinator"
  providers = { aws = aws.provisioning }

  organization_id        = module.org_reader.organization_id
  org_reader_role_arn    = module.org_reader.role_arn
  org_reader_external_id = var.org_reader_external_id
  code_s3_bucket         = aws_s3_bucket.code.id
  code_s3_key            = aws_s3_object.coordinator.key
  code_s3_object_version = coalesce(var.coordinator_code_version, aws_s3_object.coordinator.version_id)
  architecture           = var.architecture
  schedule_expression    = var.schedule_expression
  sender                 = var.sender
  ses_identity           = var.ses_identity
  ses_sandbox_recipients = var.ses_sandbox_recipients
  security_team          = var.security_team
  alert_subscriptions    = var.alert_subscriptions
  exclude_accounts       = local.exclude_accounts
  exclude_ous            = var.exclude_ous
  rotation_policy        = var.rotation_policy
  tags                   = var.tags
}

# The security team's REST API and dashboard: its own function and role,
# which read the report bucket and invoke the coordinator, nothing more.
module "api" {
  count     = var.enable_api ? 1 : 0
  source    = "../../modules/api"
  providers = { aws = aws.provisioning }

  report_bucket_arn          = module.coordinator.report_bucket_arn
  report_kms_key_arn         = module.coordinator.kms_key_arn
  coordinator_function_arn   = module.coordinator.function_arn
  code_s3_bucket             = aws_s3_bucket.code.id
  code_s3_key                = aws_s3_object.api[0].key
  code_s3_object_version     = coalesce(var.api_code_version, aws_s3_object.api[0].version_id)
  architecture               = var.architecture
  cors_origins               = var.api_cors_origins
  waf_acl_arn                = var.api_waf_acl_arn
  manage_api_gateway_account = var.api_manage_api_gateway_account
  alarm_topic_arn            = module.coordinator.alerts_topic_arn
  tags                       = var.tags
}

module "agents" {
  count     = local.deploy_agents ? 1 : 0
  source    = "../../modules/agent-stackset"
  providers = { aws = aws.stacksets }

  call_as                   = var.agents_call_as
  organizational_unit_ids   = var.organizational_unit_ids
  code_s3_bucket            = aws_s3_bucket.code.id
  code_s3_key               = aws_s3_object.agent.key
  code_s3_object_version    = coalesce(var.agent_code_version, aws_s3_object.agent.version_id)
  architecture              = var.architecture
  coordinator_role_arn      = module.coordinator.role_arn
  results_queue_url         = module.coordinator.results_queue_url
  results_queue_arn         = module.coordinator.results_queue_arn
  coordinator_public_key    = var.coordinator_public_key
  coordinator_key_id        = var.coordinator_key_id
  deploy_to_current_account = local.agent_in_management
  tags                      = var.tags

  depends_on = [aws_s3_bucket_policy.code]
}

check "coordinator_role_name" {
  assert {
    condition     = module.coordinator.role_arn == local.coordinator_role_arn
    error_message = "The org-reader trust names ${local.coordinator_role_arn}, but the coordinator role is ${module.coordinator.role_arn}."
  }
}

check "management_account_agent" {
  assert {
    condition     = local.agent_in_management == var.agent_in_management_account
    error_message = "agent_in_management_account needs agents_call_as = \"SELF\"; the management account is excluded from runs instead."
  }
}
