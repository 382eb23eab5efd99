# keyfleet REST API and dashboard (provisioning account): API Gateway (REST,
# regional) in front of its own Lambda function, keyfleet-api.
#
# The API faces the network, so it is not the coordinator: its role reads the
# report bucket, invokes the coordinator (an emergency rotation or a
# reactivation goes through the coordinator's normal path) and reads the
# hashes of the API keys. It cannot read the coordinator's private key, send
# jobs, write to the bucket or reach a member account.
#
# Who may call: /v1 is SigV4 (authorization AWS_IAM) and the function maps
# the signer's IAM principal to scopes from the keys secret; keyfleet's own
# API keys travel in "Authorization: Bearer" to /keys/v1 and the dashboard,
# checked by the function. API Gateway holds no credential: no API Gateway
# API key, no usage plan, no stage variable (a read-only principal with
# apigateway:GET reads all of those back). See README.md, "Who may call".

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.id

  function_name  = "keyfleet-api"
  api_name       = "keyfleet-api"
  log_group_name = "/aws/lambda/${local.function_name}"
  log_group_arn  = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group_name}"

  # API Gateway writes access logs to a group of our choosing, and execution
  # logs to a group it names after the API and stage; both are created here
  # so they are encrypted and expire.
  access_log_group_name    = "/aws/apigateway/${local.api_name}/access"
  access_log_group_arn     = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.access_log_group_name}"
  execution_log_group_name = "API-Gateway-Execution-Logs_${aws_api_gateway_rest_api.this.id}/${var.stage_name}"
  execution_log_group_arn  = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.execution_log_group_name}"

  report_bucket_name = regex("^arn:[^:]+:s3:::(.+)$", var.report_bucket_arn)[0]

  # One JSON line per request. $context.identity.userArn is the SigV4 signer
  # on /v1 (empty elsewhere); no header is logged, so never a Bearer key.
  access_log_format = jsonencode({
    requestId          = "$context.requestId"
    extendedRequestId  = "$context.extendedRequestId"
    requestTimeEpoch   = "$context.requestTimeEpoch"
    sourceIp           = "$context.identity.sourceIp"
    userAgent          = "$context.identity.userAgent"
    httpMethod         = "$context.httpMethod"
    resourcePath       = "$context.resourcePath"
    path               = "$context.path"
    protocol           = "$context.protocol"
    status             = "$context.status"
    responseLength     = "$context.responseLength"
    responseLatency    = "$context.responseLatency"
    userArn            = "$context.identity.userArn"
    integrationStatus  = "$context.integration.status"
    integrationLatency = "$context.integration.latency"
    integrationError   = "$context.integration.error"
    errorMessage       = "$context.error.message"
    errorResponseType  = "$context.error.responseType"
    wafResponseCode    = "$context.wafResponseCode"
    xrayTraceId        = "$context.xrayTraceId"
  })

  cors = length(var.cors_origins) > 0

  tags = merge({ "keyfleet:component" = "api" }, var.tags)
}

################################################################################
# KMS key: API key hashes secret, log groups, Lambda environment.
################################################################################

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:Key policy: its Resource "*" is this key only, and key management stays with the account (delegated to IAM), as KMS requires.
  #checkov:skip=CKV_AWS_111:Key policy: its Resource "*" is this key only; the logs service principal is pinned by the log group encryption context.
  #checkov:skip=CKV_AWS_356:Key policy: "*" is the only valid Resource in a key policy and means this key.
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

  # CloudWatch Logs encrypts the function's and the gateway's log groups.
  statement {
    sid    = "CloudWatchLogsForApiLogGroups"
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
      values   = [local.log_group_arn, local.access_log_group_arn, local.execution_log_group_arn]
    }
  }
}

resource "aws_kms_key" "this" {
  description             = "keyfleet API: API key hashes, log groups, function environment"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/keyfleet-api"
  target_key_id = aws_kms_key.this.key_id
}

################################################################################
# Who may call. The content is managed outside Terraform: the object
# {"principals": [{"arn", "scopes"}], "keys": [{"id", "sha256", "scopes"}],
# "session_key"} (or, the first format, just the list of keys): the IAM
# roles and users allowed on /v1 and their scopes, and the API keys' hashes,
# sha256 being the lowercase hex SHA-256 of a key (never the key). Terraform
# creates the secret with an empty list under its own staging label (Secrets
# Manager never deprecates it, so Terraform never writes the empty list back
# over the real one) and ignores the value after.
################################################################################

resource "aws_secretsmanager_secret" "api_keys" {
  #checkov:skip=CKV2_AWS_57:The secret holds hashes of keys issued to people; rotating means issuing new keys to their holders (README), which a rotation Lambda cannot do.
  name                    = var.api_keys_secret_name
  description             = "keyfleet API: who may call and with which scopes, {\"principals\":[{\"arn\",\"scopes\"}],\"keys\":[{\"id\",\"sha256\",\"scopes\"}],\"session_key\"}. Managed outside Terraform; read only by the keyfleet-api role."
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = 30
  tags                    = local.tags
}

resource "aws_secretsmanager_secret_version" "placeholder" {
  secret_id      = aws_secretsmanager_secret.api_keys.id
  secret_string  = jsonencode([])
  version_stages = ["KEYFLEET_PLACEHOLDER"]

  lifecycle {
    ignore_changes = [secret_string, version_stages]
  }
}

data "aws_iam_policy_document" "api_keys" {
  statement {
    sid    = "DenyReadExceptApi"
    effect = "Deny"
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    actions   = ["secretsmanager:GetSecretValue"]
    resources = ["*"]
    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = concat([aws_iam_role.this.arn], var.api_keys_readers)
    }
  }
}

resource "aws_secretsmanager_secret_policy" "api_keys" {
  secret_arn          = aws_secretsmanager_secret.api_keys.arn
  policy              = data.aws_iam_policy_document.api_keys.json
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
  name               = var.role_name
  description        = "keyfleet API: reads reports, invokes the coordinator, reads the API key hashes"
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = local.tags
}

# The role's permissions are one JSON document, policies/api.json.tftpl, the
# same convention as the coordinator (`keyfleet bootstrap` can render it for
# the emulator with cli/src/policy_template.rs).
locals {
  api_policy_vars = {
    report_bucket_arn        = var.report_bucket_arn
    report_kms_key_arn       = var.report_kms_key_arn
    coordinator_function_arn = var.coordinator_function_arn
    api_keys_secret_arn      = aws_secretsmanager_secret.api_keys.arn
    api_kms_key_arn          = aws_kms_key.this.arn
    log_group_arn            = local.log_group_arn
  }
  api_policy = templatefile("${path.module}/policies/api.json.tftpl", local.api_policy_vars)
}

resource "aws_iam_role_policy" "this" {
  name   = "keyfleet-api"
  role   = aws_iam_role.this.id
  policy = local.api_policy
}

################################################################################
# Function.
################################################################################

resource "aws_cloudwatch_log_group" "function" {
  name              = local.log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_50:API Gateway traces every request (stage X-Ray tracing); function tracing would need xray:PutTraceSegments on "*" in a network-facing role.
  #checkov:skip=CKV_AWS_116:Only API Gateway invokes the function, synchronously; a DLQ receives asynchronous invocations only, and would need sqs:SendMessage in a role that must not have it.
  #checkov:skip=CKV_AWS_117:The function calls only public AWS APIs (S3, Lambda, Secrets Manager) and reaches no VPC resource; a VPC would add a NAT gateway or endpoints for no isolation gain.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile; the code object is pinned by version id in a versioned, organization-only bucket.
  function_name                  = local.function_name
  description                    = "keyfleet API and dashboard behind API Gateway"
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

  environment {
    variables = {
      KEYFLEET_REPORT_BUCKET        = local.report_bucket_name
      KEYFLEET_COORDINATOR_FUNCTION = var.coordinator_function_arn
      KEYFLEET_API_KEYS_SECRET      = aws_secretsmanager_secret.api_keys.arn
      KEYFLEET_CORS_ORIGINS         = join(",", var.cors_origins)
      RUST_LOG                      = var.log_level
    }
  }

  tags = local.tags

  depends_on = [
    aws_cloudwatch_log_group.function,
    aws_iam_role_policy.this,
  ]
}

################################################################################
# API Gateway (REST, regional).
#
#   /v1, /v1/{proxy+}   ANY      the REST API for IAM principals: SigV4
#                                (authorization AWS_IAM; the caller needs
#                                execute-api:Invoke, output v1_invoke_arns), then
#                                the function maps the signer's principal to
#                                scopes from the keys secret (unlisted: 403)
#   /, /{proxy+}        ANY      no gateway authorization; the function
#                                authenticates: the dashboard (login form, then
#                                a signed session cookie), the browser's files,
#                                and /keys/v1/..., the same operations as /v1
#                                for API keys in "Authorization: Bearer"
#   /v1, /v1/{proxy+}   OPTIONS  only with cors_origins: CORS preflights carry no
#                                signature, the function answers them
#
# API Gateway matches /v1/... to /v1/{proxy+} before /{proxy+}, so nothing
# under /v1 reaches the function unsigned. No method requires an API Gateway
# API key and the module creates none: API Gateway returns key values to
# anyone allowed apigateway:GET, so a key there must never be a credential.
################################################################################

resource "aws_api_gateway_rest_api" "this" {
  name        = local.api_name
  description = "keyfleet REST API (/v1: SigV4; /keys/v1: API keys checked by the function) and dashboard (/)"

  endpoint_configuration {
    types = ["REGIONAL"]
  }

  tags = local.tags

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_api_gateway_resource" "proxy" {
  rest_api_id = aws_api_gateway_rest_api.this.id
  parent_id   = aws_api_gateway_rest_api.this.root_resource_id
  path_part   = "{proxy+}"
}

resource "aws_api_gateway_resource" "v1" {
  rest_api_id = aws_api_gateway_rest_api.this.id
  parent_id   = aws_api_gateway_rest_api.this.root_resource_id
  path_part   = "v1"
}

resource "aws_api_gateway_resource" "v1_proxy" {
  rest_api_id = aws_api_gateway_rest_api.this.id
  parent_id   = aws_api_gateway_resource.v1.id
  path_part   = "{proxy+}"
}

resource "aws_api_gateway_method" "dashboard" {
  #checkov:skip=CKV_AWS_59:Dashboard and /keys/v1: a browser cannot sign a request, and API keys must not live in API Gateway (apigateway:GET returns their values), so the function authenticates (Bearer key against the hashes, login form, signed session cookie). Stage throttling, reserved concurrency and the optional WAF bound it.
  #checkov:skip=CKV2_AWS_53:Lambda proxy integration: the function validates every request (path, query, form) itself; a gateway model would duplicate that.
  rest_api_id      = aws_api_gateway_rest_api.this.id
  resource_id      = aws_api_gateway_rest_api.this.root_resource_id
  http_method      = "ANY"
  authorization    = "NONE"
  api_key_required = false
}

resource "aws_api_gateway_method" "dashboard_proxy" {
  #checkov:skip=CKV_AWS_59:Dashboard and /keys/v1: a browser cannot sign a request, and API keys must not live in API Gateway (apigateway:GET returns their values), so the function authenticates (Bearer key against the hashes, login form, signed session cookie). Stage throttling, reserved concurrency and the optional WAF bound it.
  #checkov:skip=CKV2_AWS_53:Lambda proxy integration: the function validates every request (path, query, form) itself; a gateway model would duplicate that.
  rest_api_id      = aws_api_gateway_rest_api.this.id
  resource_id      = aws_api_gateway_resource.proxy.id
  http_method      = "ANY"
  authorization    = "NONE"
  api_key_required = false
}

resource "aws_api_gateway_method" "v1" {
  #checkov:skip=CKV2_AWS_53:Lambda proxy integration: the function validates every request (path, query, JSON body) itself; a gateway model would duplicate the API schema.
  rest_api_id      = aws_api_gateway_rest_api.this.id
  resource_id      = aws_api_gateway_resource.v1.id
  http_method      = "ANY"
  authorization    = "AWS_IAM"
  api_key_required = false
}

resource "aws_api_gateway_method" "v1_proxy" {
  #checkov:skip=CKV2_AWS_53:Lambda proxy integration: the function validates every request (path, query, JSON body) itself; a gateway model would duplicate the API schema.
  rest_api_id      = aws_api_gateway_rest_api.this.id
  resource_id      = aws_api_gateway_resource.v1_proxy.id
  http_method      = "ANY"
  authorization    = "AWS_IAM"
  api_key_required = false
}

resource "aws_api_gateway_method" "v1_options" {
  #checkov:skip=CKV2_AWS_53:CORS preflight: carries no parameters or body to validate; the function answers it from KEYFLEET_CORS_ORIGINS.
  count            = local.cors ? 1 : 0
  rest_api_id      = aws_api_gateway_rest_api.this.id
  resource_id      = aws_api_gateway_resource.v1.id
  http_method      = "OPTIONS"
  authorization    = "NONE"
  api_key_required = false
}

resource "aws_api_gateway_method" "v1_proxy_options" {
  #checkov:skip=CKV2_AWS_53:CORS preflight: carries no parameters or body to validate; the function answers it from KEYFLEET_CORS_ORIGINS.
  count            = local.cors ? 1 : 0
  rest_api_id      = aws_api_gateway_rest_api.this.id
  resource_id      = aws_api_gateway_resource.v1_proxy.id
  http_method      = "OPTIONS"
  authorization    = "NONE"
  api_key_required = false
}

resource "aws_api_gateway_integration" "dashboard" {
  rest_api_id             = aws_api_gateway_rest_api.this.id
  resource_id             = aws_api_gateway_method.dashboard.resource_id
  http_method             = aws_api_gateway_method.dashboard.http_method
  type                    = "AWS_PROXY"
  integration_http_method = "POST"
  uri                     = aws_lambda_function.this.invoke_arn
}

resource "aws_api_gateway_integration" "dashboard_proxy" {
  rest_api_id             = aws_api_gateway_rest_api.this.id
  resource_id             = aws_api_gateway_method.dashboard_proxy.resource_id
  http_method             = aws_api_gateway_method.dashboard_proxy.http_method
  type                    = "AWS_PROXY"
  integration_http_method = "POST"
  uri                     = aws_lambda_function.this.invoke_arn
}

resource "aws_api_gateway_integration" "v1" {
  rest_api_id             = aws_api_gateway_rest_api.this.id
  resource_id             = aws_api_gateway_method.v1.resource_id
  http_method             = aws_api_gateway_method.v1.http_method
  type                    = "AWS_PROXY"
  integration_http_method = "POST"
  uri                     = aws_lambda_function.this.invoke_arn
}

resource "aws_api_gateway_integration" "v1_proxy" {
  rest_api_id             = aws_api_gateway_rest_api.this.id
  resource_id             = aws_api_gateway_method.v1_proxy.resource_id
  http_method             = aws_api_gateway_method.v1_proxy.http_method
  type                    = "AWS_PROXY"
  integration_http_method = "POST"
  uri                     = aws_lambda_function.this.invoke_arn
}

resource "aws_api_gateway_integration" "v1_options" {
  count                   = local.cors ? 1 : 0
  rest_api_id             = aws_api_gateway_rest_api.this.id
  resource_id             = aws_api_gateway_method.v1_options[0].resource_id
  http_method             = aws_api_gateway_method.v1_options[0].http_method
  type                    = "AWS_PROXY"
  integration_http_method = "POST"
  uri                     = aws_lambda_function.this.invoke_arn
}

resource "aws_api_gateway_integration" "v1_proxy_options" {
  count                   = local.cors ? 1 : 0
  rest_api_id             = aws_api_gateway_rest_api.this.id
  resource_id             = aws_api_gateway_method.v1_proxy_options[0].resource_id
  http_method             = aws_api_gateway_method.v1_proxy_options[0].http_method
  type                    = "AWS_PROXY"
  integration_http_method = "POST"
  uri                     = aws_lambda_function.this.invoke_arn
}

resource "aws_lambda_permission" "api_gateway" {
  statement_id  = "AllowKeyfleetApiGateway"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_api_gateway_rest_api.this.execution_arn}/${var.stage_name}/*"
}

# A new deployment whenever a route changes (whole method and integration
# objects, so an in-place change such as authorization redeploys too).
resource "aws_api_gateway_deployment" "this" {
  rest_api_id = aws_api_gateway_rest_api.this.id
  description = "keyfleet API"

  triggers = {
    redeployment = sha1(jsonencode([
      aws_api_gateway_resource.proxy,
      aws_api_gateway_resource.v1,
      aws_api_gateway_resource.v1_proxy,
      aws_api_gateway_method.dashboard,
      aws_api_gateway_method.dashboard_proxy,
      aws_api_gateway_method.v1,
      aws_api_gateway_method.v1_proxy,
      aws_api_gateway_method.v1_options,
      aws_api_gateway_method.v1_proxy_options,
      aws_api_gateway_integration.dashboard,
      aws_api_gateway_integration.dashboard_proxy,
      aws_api_gateway_integration.v1,
      aws_api_gateway_integration.v1_proxy,
      aws_api_gateway_integration.v1_options,
      aws_api_gateway_integration.v1_proxy_options,
    ]))
  }

  lifecycle {
    create_before_destroy = true
  }

  depends_on = [
    aws_api_gateway_integration.dashboard,
    aws_api_gateway_integration.dashboard_proxy,
    aws_api_gateway_integration.v1,
    aws_api_gateway_integration.v1_proxy,
    aws_api_gateway_integration.v1_options,
    aws_api_gateway_integration.v1_proxy_options,
  ]
}

################################################################################
# Stage: access logs, execution logs, X-Ray, throttling.
################################################################################

resource "aws_cloudwatch_log_group" "access" {
  name              = local.access_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "execution" {
  name              = local.execution_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = local.tags
}

# REST API stages log to CloudWatch (access and execution logs) only with a
# CloudWatch role in the region's API Gateway account settings.
data "aws_iam_policy_document" "apigateway_assume" {
  statement {
    effect = "Allow"
    principals {
      type        = "Service"
      identifiers = ["apigateway.amazonaws.com"]
    }
    actions = ["sts:AssumeRole"]
  }
}

resource "aws_iam_role" "apigateway_cloudwatch" {
  count              = var.manage_api_gateway_account ? 1 : 0
  name               = "keyfleet-apigateway-logs-${local.region}"
  description        = "API Gateway (account settings, ${local.region}): writes access and execution logs to CloudWatch Logs"
  assume_role_policy = data.aws_iam_policy_document.apigateway_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "apigateway_cloudwatch" {
  count      = var.manage_api_gateway_account ? 1 : 0
  role       = aws_iam_role.apigateway_cloudwatch[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
}

resource "aws_api_gateway_account" "this" {
  count               = var.manage_api_gateway_account ? 1 : 0
  cloudwatch_role_arn = aws_iam_role.apigateway_cloudwatch[0].arn
  depends_on          = [aws_iam_role_policy_attachment.apigateway_cloudwatch]
}

resource "aws_api_gateway_stage" "this" {
  #checkov:skip=CKV_AWS_120:No response cache: answers depend on the caller's key and scopes and on runs in progress; a cache would serve one caller's or a stale answer to another.
  #checkov:skip=CKV2_AWS_51:Client certificates authenticate API Gateway to an HTTP backend; the backend is a Lambda proxy integration, invoked with the gateway's resource permission.
  #checkov:skip=CKV2_AWS_29:A WAF web ACL is optional (var.waf_acl_arn): /v1 callers are authenticated by SigV4 at the gateway, the rest by the function, and the stage throttles every method.
  #checkov:skip=CKV2_AWS_77:The web ACL and its rule groups belong to the operator (var.waf_acl_arn); the function is Rust with no Log4j, and nothing behind the gateway does JNDI lookups.
  rest_api_id          = aws_api_gateway_rest_api.this.id
  deployment_id        = aws_api_gateway_deployment.this.id
  stage_name           = var.stage_name
  description          = "keyfleet API"
  xray_tracing_enabled = true

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.access.arn
    format          = local.access_log_format
  }

  tags = local.tags

  depends_on = [
    aws_api_gateway_account.this,
    aws_cloudwatch_log_group.execution,
  ]
}

resource "aws_api_gateway_method_settings" "all" {
  #checkov:skip=CKV_AWS_225:No response cache: answers depend on the caller's key and scopes and on runs in progress (see the stage).
  rest_api_id = aws_api_gateway_rest_api.this.id
  stage_name  = aws_api_gateway_stage.this.stage_name
  method_path = "*/*"

  settings {
    metrics_enabled        = true
    logging_level          = var.execution_logging_level
    data_trace_enabled     = false
    throttling_rate_limit  = var.stage_throttle_rate_limit
    throttling_burst_limit = var.stage_throttle_burst_limit
    caching_enabled        = false
  }
}

# No usage plan and no API Gateway API key: a usage plan limits only methods
# that require an API Gateway key, and API Gateway returns key values to
# anyone allowed apigateway:GET. Per-caller limits are the function's (per
# API key id, per listed principal); the stage limits all callers together.

resource "aws_wafv2_web_acl_association" "this" {
  count        = var.waf_acl_arn == null ? 0 : 1
  resource_arn = aws_api_gateway_stage.this.arn
  web_acl_arn  = var.waf_acl_arn
}

################################################################################
# Alarms (optional).
################################################################################

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  count               = var.alarm_topic_arn == null ? 0 : 1
  alarm_name          = "keyfleet-api-errors"
  alarm_description   = "The keyfleet API function failed invocations."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.this.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "gateway_5xx" {
  count               = var.alarm_topic_arn == null ? 0 : 1
  alarm_name          = "keyfleet-api-5xx"
  alarm_description   = "The keyfleet API answered with server errors (5XX)."
  namespace           = "AWS/ApiGateway"
  metric_name         = "5XXError"
  dimensions          = { ApiName = aws_api_gateway_rest_api.this.name, Stage = aws_api_gateway_stage.this.stage_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = local.tags
}
