# The gateway: one ECS service per shard range (local.gateway_shard_ids), each with
# one task. Two tasks must never run the same shards (both would hold a Discord
# session and publish the events twice under different session ids), so a
# deployment stops the old task before starting the new one; the new task resumes
# the stored sessions.

resource "aws_ecs_task_definition" "gateway" {
  count = var.gateway_tasks

  family                   = "${var.name}-gateway-${count.index}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.gateway_cpu
  memory                   = var.gateway_memory
  execution_role_arn       = aws_iam_role.execution["gateway"].arn
  task_role_arn            = aws_iam_role.task["gateway"].arn

  container_definitions = jsonencode([
    {
      name      = "gateway"
      image     = var.gateway_image
      essential = true
      command   = ["/usr/local/bin/shardline-gateway"]
      environment = concat(
        [
          { name = "NATS_URL", value = local.nats_url },
          { name = "NATS_USER", value = "gateway" },
          { name = "SHARD_TOTAL", value = tostring(var.shard_total) },
          { name = "SHARD_IDS", value = local.gateway_shard_ids[count.index] },
          { name = "STREAM_REPLICAS", value = "3" },
          { name = "METRICS_ADDR", value = "0.0.0.0:${local.metrics_port}" },
          { name = "RUST_LOG", value = "info" },
        ],
        var.discord_max_concurrency == null ? [] : [
          { name = "DISCORD_MAX_CONCURRENCY", value = tostring(var.discord_max_concurrency) },
        ],
      )
      secrets = [
        { name = "DISCORD_TOKEN", valueFrom = local.discord_token_secret_arn },
        { name = "NATS_PASSWORD", valueFrom = aws_secretsmanager_secret.nats_user["gateway"].arn },
      ]
      portMappings           = [{ containerPort = local.metrics_port, protocol = "tcp" }]
      readonlyRootFilesystem = true
      privileged             = false
      user                   = "65532"
      healthCheck = {
        command     = ["CMD", "/usr/local/bin/shardline-healthcheck"]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
      # SIGTERM: close shards resumably, wait for acks, store sessions (up to ~20 s).
      stopTimeout = 60
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.shardline["gateway"].name
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = "gateway-${count.index}"
        }
      }
    }
  ])

  tags = var.tags
}

resource "aws_ecs_service" "gateway" {
  count = var.gateway_tasks

  name             = "gateway-${count.index}"
  cluster          = aws_ecs_cluster.shardline.arn
  task_definition  = aws_ecs_task_definition.gateway[count.index].arn
  desired_count    = 1
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  # Never two tasks on the same shards.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.services.id]
    assign_public_ip = false
  }

  # The streams must exist on a cluster that has a leader before shards publish.
  depends_on = [module.nats_2]

  tags = var.tags
}
