# Least privilege: one execution role per service (pull the image, write its own log
# group, read its own secrets) and a task role per service (the application's own AWS
# access: none, except the worker's metrics sidecar putting metrics in one namespace).

locals {
  roles = merge(
    {
      nats = {
        secrets = [aws_secretsmanager_secret.nats_server.arn]
        log     = "nats"
        kms     = []
      }
      gateway = {
        secrets = [aws_secretsmanager_secret.nats_user["gateway"].arn, local.discord_token_secret_arn]
        log     = "gateway"
        kms     = []
      }
      # The bot token for REST lives with the proxy only; workers have none.
      rest = {
        secrets = [aws_secretsmanager_secret.nats_user["rest"].arn, local.discord_token_secret_arn]
        log     = "rest"
        kms     = []
      }
      interactions = {
        secrets = [aws_secretsmanager_secret.nats_user["interactions"].arn, local.discord_public_key_secret_arn]
        log     = "interactions"
      }
    },
    { for k, w in var.workers : k => {
      secrets = [aws_secretsmanager_secret.nats_user[w.nats_user].arn, var.database_url_secret_arn]
      log     = k
      kms     = compact([var.database_kms_key_arn])
    } },
  )
  metrics_namespace = "Shardline/${var.name}"
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  for_each = local.roles

  name               = "${var.name}-${each.key}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "execution" {
  for_each = local.roles

  # GetAuthorizationToken has no resource-level permission; the pulls are limited to
  # this account's repositories (the NATS and collector images are public).
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullImages"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = ["arn:${data.aws_partition.current.partition}:ecr:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:repository/*"]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.shardline[each.value.log].arn}:*"]
  }

  statement {
    sid       = "ReadOwnSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = each.value.secrets
  }

  statement {
    sid       = "DecryptOwnSecrets"
    actions   = ["kms:Decrypt"]
    resources = concat([aws_kms_key.shardline.arn], each.value.kms)
  }
}

resource "aws_iam_role_policy" "execution" {
  for_each = local.roles

  name   = "execution"
  role   = aws_iam_role.execution[each.key].id
  policy = data.aws_iam_policy_document.execution[each.key].json
}

resource "aws_iam_role" "task" {
  for_each = local.roles

  name               = "${var.name}-${each.key}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "worker_metrics" {
  statement {
    sid       = "PutLagMetric"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [local.metrics_namespace]
    }
  }
}

resource "aws_iam_role_policy" "worker_metrics" {
  for_each = var.workers

  name   = "put-lag-metric"
  role   = aws_iam_role.task[each.key].id
  policy = data.aws_iam_policy_document.worker_metrics.json
}
