# Shardline on ECS (Fargate): a 3-node NATS JetStream cluster, the gateway split
# over N tasks by shard range, the workers scaling on consumer lag, and the Discord
# REST proxy the workers send through.

data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  nats_nodes   = 3
  metrics_port = 9100
  # One DNS name per node, from Cloud Map: clients list all three.
  nats_hosts = [for i in range(local.nats_nodes) : "nats-${i}.${var.service_discovery_namespace}"]
  nats_url   = join(",", [for h in local.nats_hosts : "nats://${h}:4222"])

  # Shard ranges: gateway task i runs [i * per, min((i + 1) * per, total) - 1].
  shards_per_gateway = ceil(var.shard_total / var.gateway_tasks)
  gateway_shard_ids = [
    for i in range(var.gateway_tasks) :
    "${i * local.shards_per_gateway}-${min((i + 1) * local.shards_per_gateway, var.shard_total) - 1}"
  ]

  log_groups = merge(
    { nats = "/${var.name}/nats", gateway = "/${var.name}/gateway", rest = "/${var.name}/rest", interactions = "/${var.name}/interactions" },
    { for k, _ in var.workers : k => "/${var.name}/${k}" },
  )
}

resource "aws_kms_key" "shardline" {
  description         = "${var.name}: Secrets Manager secrets and CloudWatch log groups"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.kms.json
  tags                = var.tags
}

resource "aws_kms_alias" "shardline" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.shardline.key_id
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109:A key policy's Resource "*" means this key; the account root statement is the AWS default that lets IAM policies grant use.
  # checkov:skip=CKV_AWS_111:Same: write access in a key policy applies only to this key.
  # checkov:skip=CKV_AWS_356:Same: "*" in a key policy is the key itself.
  statement {
    sid       = "AccountAdministersKey"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncrypt"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${data.aws_region.current.name}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:/${var.name}/*"]
    }
  }
}

resource "aws_ecs_cluster" "shardline" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_group" "shardline" {
  for_each = local.log_groups

  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.shardline.arn
  tags              = var.tags
}

resource "aws_service_discovery_private_dns_namespace" "shardline" {
  name        = var.service_discovery_namespace
  description = "${var.name}: NATS nodes and the REST proxy by name"
  vpc         = var.vpc_id
  tags        = var.tags
}
