# keyfleet-org-reader: read-only view of the organization for the coordinator.
# Apply in the management account (Organizations read APIs answer there).

data "aws_partition" "current" {}
data "aws_organizations_organization" "current" {}

locals {
  partition        = data.aws_partition.current.partition
  org_id           = data.aws_organizations_organization.current.id
  management_id    = data.aws_organizations_organization.current.master_account_id
  coordinator_acct = split(":", var.coordinator_role_arn)[4]
  org_arn_prefix   = "arn:${local.partition}:organizations::${local.management_id}"
  ou_arns          = "${local.org_arn_prefix}:ou/${local.org_id}/*"
  root_arns        = "${local.org_arn_prefix}:root/${local.org_id}/*"
  tags             = merge({ "keyfleet:component" = "org-reader" }, var.tags)
}

data "aws_iam_policy_document" "trust" {
  # The coordinator's account, narrowed to the coordinator role by
  # aws:PrincipalArn: the trust survives a re-creation of that role and can be
  # created before it exists.
  statement {
    sid     = "CoordinatorOnly"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.coordinator_acct}:root"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:PrincipalArn"
      values   = [var.coordinator_role_arn]
    }
    dynamic "condition" {
      for_each = var.external_id == null ? [] : [var.external_id]
      content {
        test     = "StringEquals"
        variable = "sts:ExternalId"
        values   = [condition.value]
      }
    }
  }
}

resource "aws_iam_role" "this" {
  name                 = var.role_name
  description          = "keyfleet: read-only organization structure for the keyfleet coordinator"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = var.max_session_duration
  tags                 = local.tags
}

# The role's permissions are one JSON document, policies/org-reader.json.tftpl,
# rendered here and by `keyfleet bootstrap` (the emulator enforces it).
locals {
  read_policy_vars = {
    ou_arns   = local.ou_arns
    root_arns = local.root_arns
  }
  read_policy = templatefile("${path.module}/policies/org-reader.json.tftpl", local.read_policy_vars)
}

resource "aws_iam_role_policy" "this" {
  name   = "keyfleet-org-reader"
  role   = aws_iam_role.this.id
  policy = local.read_policy
}
