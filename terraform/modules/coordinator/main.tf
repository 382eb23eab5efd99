# keyfleet coordinator (provisioning account).
#
# Names are fixed: the agents, the org-reader trust policy and the jobs queue
# policies refer to them (keyfleet-coordinator, keyfleet-results).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.id

  function_name     = "keyfleet-coordinator"
  role_name         = "keyfleet-coordinator"
  results_queue     = "keyfleet-results"
  results_dlq       = "keyfleet-results-dlq"
  invoke_dlq        = "keyfleet-coordinator-dlq"
  log_group_name    = "/aws/lambda/${local.function_name}"
  log_group_arn     = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group_name}"
  agent_region      = coalesce(var.agent_region, local.region)
  jobs_queue_arns   = "arn:${local.partition}:sqs:${local.agent_region}:*:keyfleet-jobs"
  bucket_name       = coalesce(var.report_bucket_name, "keyfleet-reports-${local.account_id}-${local.region}")
  ses_identity      = coalesce(var.ses_identity, var.sender)
  ses_identity_arn  = "arn:${local.partition}:ses:${local.region}:${local.account_id}:identity/${local.ses_identity}"
  ses_recipient_arn = [for r in var.ses_sandbox_recipients : "arn:${local.partition}:ses:${local.region}:${local.account_id}:identity/${r}"]
  ses_config_arn    = "arn:${local.partition}:ses:${local.region}:${local.account_id}:configuration-set/${var.ses_configuration_set_name}"

  # Only the fields the operator set: the coordinator fills in the defaults
  # and rejects unknown fields.
  policy_json = jsonencode({ for k, v in var.rotation_policy : k => v if v != null })

  # Constant inputs of the two schedules: the coordinator tells a rotation run
  # from a deadline sweep by "action".
  start_event = jsonencode({ action = "start" })
  sweep_event = jsonencode({ action = "sweep" })

  tags = merge({ "keyfleet:component" = "coordinator" }, var.tags)
}

################################################################################
# KMS key: report bucket, alerts topic, private-key secret, logs, environment.
################################################################################

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:Key policy: its Resource "*" is this key only, and key management stays with the account (delegated to IAM), as KMS requires.
  #checkov:skip=CKV_AWS_111:Key policy: its Resource "*" is this key only; service principals are pinned by aws:SourceAccount or the log group encryption context.
  #checkov:skip=CKV_AWS_356:Key policy: "*" is the only valid Resource in a key policy and means this key.
  # Key policies name the key itself as "*". The account statement lists the
  # key-management and usage actions explicitly, so IAM policies in this
  # account (the coordinator role, administrators) can be granted them.
  statement {
    sid    = "AccountAdministersAndDelegatesToIam"
    effect = "Allow"
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
    actions = [
      "kms:CancelKeyDeletion",
      "kms:CreateAlias",
      "kms:CreateGrant",
      "kms:Decrypt",
      "kms:DeleteAlias",
      "kms:DescribeKey",
      "kms:DisableKey",
      "kms:DisableKeyRotation",
      "kms:EnableKey",
      "kms:EnableKeyRotation",
      "kms:Encrypt",
      "kms:GenerateDataKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus",
      "kms:ListAliases",
      "kms:ListGrants",
      "kms:ListKeyPolicies",
      "kms:ListKeyRotations",
      "kms:ListResourceTags",
      "kms:PutKeyPolicy",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
      "kms:RetireGrant",
      "kms:RevokeGrant",
      "kms:RotateKeyOnDemand",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:UpdateAlias",
      "kms:UpdateKeyDescription",
    ]
    resources = ["*"]
  }

  # CloudWatch alarms publish to the encrypted alerts topic.
  statement {
    sid    = "CloudWatchAlarmsPublishToAlerts"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  # CloudWatch Logs encrypts the coordinator log group with this key.
  statement {
    sid    = "CloudWatchLogsForCoordinatorLogGroup"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncryptFrom",
      "kms:ReEncryptTo",
      "kms:GenerateDataKey",
      "kms:GenerateDataKeyWithoutPlaintext",
      "kms:DescribeKey",
    ]
    resources = ["*"]
    condition {
      test     = "ArnEquals"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = [local.log_group_arn]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "keyfleet coordinator: report bucket, alerts topic, private-key secret, logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/keyfleet-coordinator"
  target_key_id = aws_kms_key.this.key_id
}

################################################################################
# Queues: results (+DLQ) from the agents, and the DLQ of failed scheduled
# (asynchronous) invocations. SQS-managed encryption: agents in other accounts
# send to keyfleet-results, and a customer key would need a grant per account.
################################################################################

resource "aws_sqs_queue" "results_dlq" {
  name                      = local.results_dlq
  sqs_managed_sse_enabled   = true
  message_retention_seconds = 1209600
  tags                      = local.tags
}

resource "aws_sqs_queue" "results" {
  name                       = local.results_queue
  sqs_managed_sse_enabled    = true
  visibility_timeout_seconds = 6 * var.timeout
  message_retention_seconds  = 345600
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.results_dlq.arn
    maxReceiveCount     = 3
  })
  tags = local.tags
}

# Agents of the organization send results: any account, but only roles named
# keyfleet-agent* of a principal in this organization; every other sender is
# denied explicitly. One JSON template, rendered here and by `keyfleet
# bootstrap`, so the emulator applies (and its policy engine enforces)
# exactly this policy.
locals {
  results_queue_policy_vars = {
    partition       = local.partition
    queue_arn       = aws_sqs_queue.results.arn
    organization_id = var.organization_id
  }
  results_queue_policy = templatefile("${path.module}/policies/results-queue.json.tftpl", local.results_queue_policy_vars)
}

resource "aws_sqs_queue_policy" "results" {
  queue_url = aws_sqs_queue.results.id
  policy    = local.results_queue_policy
}

data "aws_iam_policy_document" "results_dlq" {
  statement {
    sid    = "DenyInsecureTransport"
    effect = "Deny"
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.results_dlq.arn]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "results_dlq" {
  queue_url = aws_sqs_queue.results_dlq.id
  policy    = data.aws_iam_policy_document.results_dlq.json
}

resource "aws_sqs_queue" "invoke_dlq" {
  name                      = local.invoke_dlq
  sqs_managed_sse_enabled   = true
  message_retention_seconds = 1209600
  tags                      = local.tags
}

data "aws_iam_policy_document" "invoke_dlq" {
  # EventBridge parks events it could not deliver to the coordinator here.
  statement {
    sid    = "AllowScheduleRulesDeadLetters"
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.invoke_dlq.arn]
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.start.arn, aws_cloudwatch_event_rule.sweep.arn]
    }
  }

  statement {
    sid    = "DenyInsecureTransport"
    effect = "Deny"
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.invoke_dlq.arn]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "invoke_dlq" {
  queue_url = aws_sqs_queue.invoke_dlq.id
  policy    = data.aws_iam_policy_document.invoke_dlq.json
}

################################################################################
# Report bucket: runs/<run_id>/manifest.json, results, reports, ledger.
################################################################################

resource "aws_s3_bucket" "reports" {
  #checkov:skip=CKV_AWS_18:Object access is audited with CloudTrail S3 data events (organization trail); server access logs would need a second bucket per region.
  #checkov:skip=CKV_AWS_144:Reports are derived from the member accounts and are re-created by the next run; cross-region replication adds a second copy of sensitive data for no recovery gain.
  #checkov:skip=CKV2_AWS_62:Nothing consumes bucket events: the coordinator learns about results from the results queue, not from S3.
  bucket = local.bucket_name
  tags   = local.tags
}

resource "aws_s3_bucket_ownership_controls" "reports" {
  bucket = aws_s3_bucket.reports.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "reports" {
  bucket                  = aws_s3_bucket.reports.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "reports" {
  bucket = aws_s3_bucket.reports.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "reports" {
  bucket = aws_s3_bucket.reports.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "reports" {
  bucket = aws_s3_bucket.reports.id

  rule {
    id     = "expire-old-runs"
    status = "Enabled"
    filter {
      prefix = "runs/"
    }
    expiration {
      days = var.run_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Owners' notices waiting for their digest (see the coordinator's
  # `digests`): sent and removed at the run's end, or given up on by the
  # sweep after a day or two. A part left by a coordinator stopped at the
  # wrong moment holds owner addresses, user names and the addresses a key
  # was used from: it goes after a week.
  rule {
    id     = "expire-digest-parts"
    status = "Enabled"
    filter {
      prefix = "digests/"
    }
    expiration {
      days = 7
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.reports]
}

data "aws_iam_policy_document" "reports_bucket" {
  statement {
    sid    = "DenyInsecureTransport"
    effect = "Deny"
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.reports.arn,
      "${aws_s3_bucket.reports.arn}/*",
    ]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "reports" {
  bucket     = aws_s3_bucket.reports.id
  policy     = data.aws_iam_policy_document.reports_bucket.json
  depends_on = [aws_s3_bucket_public_access_block.reports]
}

################################################################################
# Alerts topic.
################################################################################

resource "aws_sns_topic" "alerts" {
  name              = "keyfleet-alerts"
  kms_master_key_id = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_sns_topic_subscription" "alerts_email" {
  for_each  = toset(var.alert_subscriptions)
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

################################################################################
# SES: sending identity and configuration set.
################################################################################

resource "aws_sesv2_configuration_set" "this" {
  configuration_set_name = var.ses_configuration_set_name

  # The password of an encrypted key archive travels by email: never in clear
  # text between mail servers.
  delivery_options {
    tls_policy = "REQUIRE"
  }

  reputation_options {
    reputation_metrics_enabled = true
  }

  sending_options {
    sending_enabled = true
  }

  suppression_options {
    suppressed_reasons = ["BOUNCE", "COMPLAINT"]
  }

  tags = local.tags
}

resource "aws_sesv2_email_identity" "sender" {
  count                  = var.create_ses_identity ? 1 : 0
  email_identity         = local.ses_identity
  configuration_set_name = aws_sesv2_configuration_set.this.configuration_set_name
  tags                   = local.tags
}

resource "aws_sesv2_email_identity" "sandbox_recipients" {
  for_each       = toset(var.ses_sandbox_recipients)
  email_identity = each.value
  tags           = local.tags
}

################################################################################
# Coordinator private key (HPKE). Terraform creates the secret and a
# placeholder; `keyfleet keygen` writes the real key as a new AWSCURRENT
# version, so the private key never enters Terraform state. The placeholder
# carries its own staging label so Secrets Manager never deprecates it: a
# missing version would make Terraform re-create it as AWSCURRENT.
################################################################################

resource "aws_secretsmanager_secret" "private_key" {
  #checkov:skip=CKV2_AWS_57:The key pair is rotated with `keyfleet keygen` together with the public key parameter of the agent StackSet; a rotation Lambda could not update the agents.
  name                    = "keyfleet-coordinator/private-key"
  description             = "keyfleet coordinator HPKE private key (X25519). Written by keyfleet keygen, read only by the coordinator."
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 30
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "placeholder" {
  secret_id      = aws_secretsmanager_secret.private_key.id
  secret_string  = jsonencode({ placeholder = "run keyfleet keygen to store the coordinator private key" })
  version_stages = ["KEYFLEET_PLACEHOLDER"]

  lifecycle {
    ignore_changes = [secret_string, version_stages]
  }
}

# The private key's policy is one JSON document, policies/private-key.json.tftpl,
# rendered here and by `keyfleet bootstrap` (the emulator's policy engine
# enforces it: only the coordinator role and the listed readers may read it).
locals {
  private_key_policy_vars = {
    readers = concat([aws_iam_role.this.arn], var.private_key_readers)
  }
  private_key_policy = templatefile("${path.module}/policies/private-key.json.tftpl", local.private_key_policy_vars)
}

resource "aws_secretsmanager_secret_policy" "private_key" {
  secret_arn          = aws_secretsmanager_secret.private_key.arn
  policy              = local.private_key_policy
  block_public_policy = true
}

################################################################################
# Role.
################################################################################

data "aws_iam_policy_document" "assume" {
  statement {
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
    actions = ["sts:AssumeRole"]
  }
}

resource "aws_iam_role" "this" {
  name               = local.role_name
  description        = "keyfleet coordinator: dispatches rotation jobs and collects results"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = local.tags
}

# The role's permissions are one JSON document, policies/coordinator.json.tftpl,
# rendered here and by `keyfleet bootstrap`, which deploys the coordinator into
# the emulator under exactly these permissions (the emulator enforces them and
# the tests compare them with the calls the code makes).
locals {
  coordinator_policy_vars = {
    org_reader_role_arn    = var.org_reader_role_arn
    jobs_queue_arns        = local.jobs_queue_arns
    organization_id        = var.organization_id
    results_queue_arn      = aws_sqs_queue.results.arn
    invoke_dlq_arn         = aws_sqs_queue.invoke_dlq.arn
    report_bucket_arn      = aws_s3_bucket.reports.arn
    kms_key_arn            = aws_kms_key.this.arn
    alerts_topic_arn       = aws_sns_topic.alerts.arn
    ses_resource_arns      = concat([local.ses_identity_arn, local.ses_config_arn], local.ses_recipient_arn)
    sender                 = var.sender
    private_key_secret_arn = aws_secretsmanager_secret.private_key.arn
    log_group_arn          = local.log_group_arn
  }
  coordinator_policy = templatefile("${path.module}/policies/coordinator.json.tftpl", local.coordinator_policy_vars)
}

resource "aws_iam_role_policy" "this" {
  name   = "keyfleet-coordinator"
  role   = aws_iam_role.this.id
  policy = local.coordinator_policy
}

################################################################################
# Function.
################################################################################

resource "aws_cloudwatch_log_group" "this" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_50:X-Ray would need xray:PutTraceSegments on "*"; structured logs and the run manifest already trace a run.
  #checkov:skip=CKV_AWS_117:The coordinator calls only public AWS APIs and reaches no VPC resource; a VPC would add a NAT gateway or endpoints for no isolation gain.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile; the code object is pinned by version id in a versioned, organization-only bucket.
  function_name                  = local.function_name
  description                    = "keyfleet coordinator: org enumeration, dispatch, result intake, reports"
  role                           = aws_iam_role.this.arn
  runtime                        = "provided.al2023"
  handler                        = "bootstrap"
  architectures                  = [var.architecture]
  s3_bucket                      = var.code_s3_bucket
  s3_key                         = var.code_s3_key
  s3_object_version              = var.code_s3_object_version
  memory_size                    = var.memory_size
  timeout                        = var.timeout
  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = aws_kms_key.this.arn

  dead_letter_config {
    target_arn = aws_sqs_queue.invoke_dlq.arn
  }

  environment {
    variables = {
      KEYFLEET_REPORT_BUCKET            = aws_s3_bucket.reports.id
      KEYFLEET_RESULTS_QUEUE_URL        = aws_sqs_queue.results.id
      KEYFLEET_ALERTS_TOPIC_ARN         = aws_sns_topic.alerts.arn
      KEYFLEET_ORG_READER_ROLE_ARN      = var.org_reader_role_arn
      KEYFLEET_SENDER                   = var.sender
      KEYFLEET_SECURITY_TEAM            = join(",", var.security_team)
      KEYFLEET_PRIVATE_KEY_SECRET_ARN   = aws_secretsmanager_secret.private_key.arn
      KEYFLEET_SES_CONFIGURATION_SET    = aws_sesv2_configuration_set.this.configuration_set_name
      KEYFLEET_EXCLUDE_ACCOUNTS         = join(",", var.exclude_accounts)
      KEYFLEET_EXCLUDE_OUS              = join(",", var.exclude_ous)
      KEYFLEET_POLICY                   = local.policy_json
      KEYFLEET_DEADLINE                 = var.run_deadline
      KEYFLEET_SUMMARY_ATTACH_MAX_BYTES = tostring(var.summary_attach_max_bytes)
      # Invocations that may send email at once (the results mapping's
      # maximum and the sweep): they share SES's send rate.
      KEYFLEET_MAIL_SENDERS = tostring(var.results_max_concurrency + 1)
      RUST_LOG              = var.log_level
      # What the org reader's trust requires when its module sets
      # external_id; empty: the coordinator sends none.
      KEYFLEET_ORG_READER_EXTERNAL_ID = coalesce(var.org_reader_external_id, "")
    }
  }

  tags = local.tags

  depends_on = [
    aws_cloudwatch_log_group.this,
    aws_iam_role_policy.this,
  ]

  lifecycle {
    # Lambda throttles an SQS mapping whose maximum concurrency exceeds the
    # function's reserved concurrency (results then wait and reach the DLQ),
    # and the schedules need an invocation of their own besides.
    precondition {
      condition     = var.reserved_concurrency == -1 || var.reserved_concurrency > var.results_max_concurrency
      error_message = "reserved_concurrency must be -1 or more than results_max_concurrency (one more for the schedules): Lambda throttles a results mapping allowed more invocations than the function may run."
    }
  }
}

resource "aws_lambda_event_source_mapping" "results" {
  event_source_arn        = aws_sqs_queue.results.arn
  function_name           = aws_lambda_function.this.arn
  batch_size              = 10
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.results_max_concurrency
  }
}

################################################################################
# Schedules: the daily run and the hourly deadline sweep.
################################################################################

resource "aws_cloudwatch_event_rule" "start" {
  name                = "keyfleet-start"
  description         = "Start a keyfleet rotation run"
  schedule_expression = var.schedule_expression
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "start" {
  rule  = aws_cloudwatch_event_rule.start.name
  arn   = aws_lambda_function.this.arn
  input = local.start_event

  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 4
  }

  dead_letter_config {
    arn = aws_sqs_queue.invoke_dlq.arn
  }
}

resource "aws_lambda_permission" "start" {
  statement_id  = "AllowKeyfleetStartSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.start.arn
}

resource "aws_cloudwatch_event_rule" "sweep" {
  name                = "keyfleet-sweep"
  description         = "Finalize keyfleet runs past their deadline"
  schedule_expression = var.sweep_schedule_expression
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "sweep" {
  rule  = aws_cloudwatch_event_rule.sweep.name
  arn   = aws_lambda_function.this.arn
  input = local.sweep_event

  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 4
  }

  dead_letter_config {
    arn = aws_sqs_queue.invoke_dlq.arn
  }
}

resource "aws_lambda_permission" "sweep" {
  statement_id  = "AllowKeyfleetSweepSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.sweep.arn
}

################################################################################
# Alarms to the alerts topic.
################################################################################

resource "aws_cloudwatch_metric_alarm" "errors" {
  alarm_name          = "keyfleet-coordinator-errors"
  alarm_description   = "The keyfleet coordinator returned errors (failed invocations)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.this.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "results_dlq" {
  alarm_name          = "keyfleet-results-dlq-not-empty"
  alarm_description   = "Agent results the coordinator failed to process three times are waiting in keyfleet-results-dlq."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.results_dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "invoke_dlq" {
  alarm_name          = "keyfleet-coordinator-dlq-not-empty"
  alarm_description   = "A scheduled keyfleet run or sweep could not be delivered or failed after retries (keyfleet-coordinator-dlq)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.invoke_dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}
