# Two accounts (three with a StackSets delegated administrator), one region.
# Every provider uses the same region: the coordinator sends jobs to
# keyfleet-jobs in its own region, and the StackSet deploys the agents to its
# provider's region.

provider "aws" {
  alias   = "management"
  region  = var.region
  profile = var.management_profile
}

provider "aws" {
  alias   = "provisioning"
  region  = var.region
  profile = var.provisioning_profile
}

# Where the agent StackSet lives: the management account, or a CloudFormation
# StackSets delegated administrator (stacksets_profile, agents_call_as =
# "DELEGATED_ADMIN"). The org-reader role stays in the management account.
provider "aws" {
  alias   = "stacksets"
  region  = var.region
  profile = var.stacksets_profile != null ? var.stacksets_profile : var.management_profile
}
