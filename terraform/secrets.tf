# Passwords are generated here (letters and digits only: nats.conf substitutes them
# as bare tokens) and stored in Secrets Manager; tasks receive them as environment
# variables through ECS `secrets`, never in a task definition or on a command line.
# Each client service gets a secret of its own so its execution role can read only
# that one.

locals {
  nats_users = toset([
    "gateway", "event-worker", "command-worker", "eligibility-worker", "sync-worker", "rest",
    "interactions", "operator", "system",
  ])
}

resource "random_password" "nats" {
  for_each = setunion(local.nats_users, ["route"])

  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "nats_user" {
  # checkov:skip=CKV2_AWS_57:The passwords are in the NATS server's configuration; rotating one is a rolling restart of the NATS nodes and its clients (terraform/README.md, "Rotating secrets"), not a Lambda rotation.
  for_each = local.nats_users

  name                    = "${var.name}/nats/${each.key}"
  description             = "${var.name}: NATS password of user ${each.key}"
  kms_key_id              = aws_kms_key.shardline.arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "nats_user" {
  for_each = local.nats_users

  secret_id     = aws_secretsmanager_secret.nats_user[each.key].id
  secret_string = random_password.nats[each.key].result
}

# What the NATS nodes need: every user's password, the route password, and the
# route URLs (they carry the route credentials).
resource "aws_secretsmanager_secret" "nats_server" {
  # checkov:skip=CKV2_AWS_57:Rotated by a rolling restart, as above.
  name                    = "${var.name}/nats/server"
  description             = "${var.name}: NATS server passwords and route URLs"
  kms_key_id              = aws_kms_key.shardline.arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "nats_server" {
  secret_id = aws_secretsmanager_secret.nats_server.id
  secret_string = jsonencode(merge(
    { for u in local.nats_users : u => random_password.nats[u].result },
    {
      route  = random_password.nats["route"].result
      routes = "[${join(", ", [for h in local.nats_hosts : "nats-route://route:${random_password.nats["route"].result}@${h}:6222"])}]"
    },
  ))
}

resource "aws_secretsmanager_secret" "discord_token" {
  # checkov:skip=CKV2_AWS_57:A Discord bot token is reset in Discord's developer portal; no AWS rotation can do it.
  count = var.discord_token_secret_arn == null ? 1 : 0

  name                    = "${var.name}/discord-token"
  description             = "${var.name}: Discord bot token (put the value in before the first deploy)"
  kms_key_id              = aws_kms_key.shardline.arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

locals {
  discord_token_secret_arn = coalesce(var.discord_token_secret_arn, try(aws_secretsmanager_secret.discord_token[0].arn, null))
  nats_server_secret       = aws_secretsmanager_secret.nats_server.arn
}
