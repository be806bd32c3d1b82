# The Discord REST proxy: one ECS service of two tasks (rest_tasks) behind one Cloud
# Map name, rest.<namespace>. One task holds a lease in NATS KV and sends to Discord;
# the other forwards to it and takes over, from the limit state copied to KV, when it
# stops (docs/rest.md). The bot token is the proxy's secret: workers send through
# http://rest.<namespace>:8080 and hold none.

locals {
  rest_port = 8080
  rest_url  = "http://rest.${var.service_discovery_namespace}:${local.rest_port}"
}

resource "aws_service_discovery_service" "rest" {
  name = "rest"

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.shardline.id
    routing_policy = "MULTIVALUE"

    dns_records {
      ttl  = 10
      type = "A"
    }
  }

  # ECS reports each task's health (its container healthcheck) to Cloud Map.
  health_check_custom_config {
    failure_threshold = 1
  }

  tags = var.tags
}

resource "aws_ecs_task_definition" "rest" {
  family                   = "${var.name}-rest"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.rest_cpu
  memory                   = var.rest_memory
  execution_role_arn       = aws_iam_role.execution["rest"].arn
  task_role_arn            = aws_iam_role.task["rest"].arn

  container_definitions = jsonencode([
    {
      name      = "rest"
      image     = var.rest_image
      essential = true
      command   = ["/usr/local/bin/shardline-rest"]
      environment = [
        { name = "NATS_URL", value = local.nats_url },
        { name = "NATS_USER", value = "rest" },
        { name = "STREAM_REPLICAS", value = "3" },
        # Replicas reach each other on the task's own address (the route to NATS).
        { name = "REST_LISTEN", value = "0.0.0.0:${local.rest_port}" },
        { name = "REST_GLOBAL_LIMIT", value = tostring(var.discord_global_limit) },
        { name = "SHUTDOWN_GRACE_SECS", value = "10" },
        { name = "RUST_LOG", value = "info" },
      ]
      secrets = [
        { name = "DISCORD_TOKEN", valueFrom = local.discord_token_secret_arn },
        { name = "NATS_PASSWORD", valueFrom = aws_secretsmanager_secret.nats_user["rest"].arn },
      ]
      portMappings           = [{ containerPort = local.rest_port, protocol = "tcp" }]
      readonlyRootFilesystem = true
      privileged             = false
      user                   = "65532"
      healthCheck = {
        command     = ["CMD", "/usr/local/bin/shardline-healthcheck"]
        interval    = 10
        timeout     = 5
        retries     = 3
        startPeriod = 15
      }
      # SIGTERM: finish admitted requests (10 s), copy the exact state, hand the lease over.
      stopTimeout = 30
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.shardline["rest"].name
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = "rest"
        }
      }
    }
  ])

  tags = var.tags
}

resource "aws_ecs_service" "rest" {
  name             = "rest"
  cluster          = aws_ecs_cluster.shardline.arn
  task_definition  = aws_ecs_task_definition.rest.arn
  desired_count    = var.rest_tasks
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  # One task at a time is replaced: the other keeps (or takes) the lease.
  deployment_minimum_healthy_percent = 50
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

  service_registries {
    registry_arn = aws_service_discovery_service.rest.arn
  }

  depends_on = [module.nats_2]

  tags = var.tags
}

# Workers call the proxy, and a standby forwards to the holder: the services' own
# security group, on the proxy's port only.
resource "aws_vpc_security_group_ingress_rule" "services_rest" {
  security_group_id            = aws_security_group.services.id
  description                  = "Discord REST proxy: from Shardline tasks (workers, the other proxy)"
  referenced_security_group_id = aws_security_group.services.id
  ip_protocol                  = "tcp"
  from_port                    = local.rest_port
  to_port                      = local.rest_port
}

resource "aws_vpc_security_group_egress_rule" "services_rest" {
  security_group_id            = aws_security_group.services.id
  description                  = "To the Discord REST proxy"
  referenced_security_group_id = aws_security_group.services.id
  ip_protocol                  = "tcp"
  from_port                    = local.rest_port
  to_port                      = local.rest_port
}

resource "aws_vpc_security_group_ingress_rule" "rest_metrics" {
  for_each = toset(var.metrics_scraper_security_group_ids)

  security_group_id            = aws_security_group.services.id
  description                  = "REST proxy /metrics (on its own port): the metrics scraper only"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = local.rest_port
  to_port                      = local.rest_port
}
