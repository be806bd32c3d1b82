# The HTTP interactions service: an internet-facing ALB terminating HTTPS (your
# certificate) forwards only POST /interactions to the service's tasks in the private
# subnets; everything else gets a 404 from the ALB. The tasks verify Discord's
# signature, publish to NATS as the `interactions` user and answer within 3 s.
# Created only when interactions_image is set.

locals {
  interactions_enabled = var.interactions_image != null
  interactions_port    = 8080
  discord_public_key_secret_arn = coalesce(
    var.discord_public_key_secret_arn,
    try(aws_secretsmanager_secret.discord_public_key[0].arn, null),
  )
}

resource "aws_secretsmanager_secret" "discord_public_key" {
  # checkov:skip=CKV2_AWS_57:An application's public key is reset in Discord's developer portal; no AWS rotation can do it.
  count = var.discord_public_key_secret_arn == null ? 1 : 0

  name                    = "${var.name}/discord-public-key"
  description             = "${var.name}: the Discord application's public key, hex (put the value in before the first deploy)"
  kms_key_id              = aws_kms_key.shardline.arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_security_group" "interactions_alb" {
  count = local.interactions_enabled ? 1 : 0

  name        = "${var.name}-interactions-alb"
  description = "Interactions load balancer: HTTPS from Discord (anyone), to the interactions tasks"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "interactions_https" {
  # checkov:skip=CKV_AWS_260:Port 443 only; Discord publishes no source ranges, so the listener is public and the signature check decides (interactions_ingress_cidrs narrows it).
  for_each = local.interactions_enabled ? toset(var.interactions_ingress_cidrs) : toset([])

  security_group_id = aws_security_group.interactions_alb[0].id
  description       = "HTTPS from Discord"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "interactions_alb_tasks" {
  count = local.interactions_enabled ? 1 : 0

  security_group_id            = aws_security_group.interactions_alb[0].id
  description                  = "To the interactions tasks"
  referenced_security_group_id = aws_security_group.services.id
  ip_protocol                  = "tcp"
  from_port                    = local.interactions_port
  to_port                      = local.interactions_port
}

resource "aws_vpc_security_group_ingress_rule" "services_interactions" {
  count = local.interactions_enabled ? 1 : 0

  security_group_id            = aws_security_group.services.id
  description                  = "Interactions tasks: from their load balancer only"
  referenced_security_group_id = aws_security_group.interactions_alb[0].id
  ip_protocol                  = "tcp"
  from_port                    = local.interactions_port
  to_port                      = local.interactions_port
}

resource "aws_lb" "interactions" {
  # checkov:skip=CKV2_AWS_28:A WAF cannot judge an interaction better than its Ed25519 signature, checked first by the service; attach one outside the module if policy requires it.
  # checkov:skip=CKV_AWS_91:Access logs need a bucket this module does not own: set interactions_access_logs_bucket.
  count = local.interactions_enabled ? 1 : 0

  name                       = "${var.name}-interactions"
  internal                   = false
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.interactions_alb[0].id]
  subnets                    = var.public_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = true
  # Kept below the service's HEADER_READ_TIMEOUT_MS (65 s) so the ALB, not the task,
  # always closes an idle connection first: a task closing one the ALB is about to
  # reuse is a 502.
  idle_timeout = 60

  dynamic "access_logs" {
    for_each = var.interactions_access_logs_bucket == null ? [] : [var.interactions_access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = "${var.name}-interactions"
      enabled = true
    }
  }

  tags = var.tags
}

resource "aws_lb_target_group" "interactions" {
  # checkov:skip=CKV_AWS_378:TLS ends at the ALB; the hop to the task stays inside the VPC, where the tasks have no certificate to offer.
  count = local.interactions_enabled ? 1 : 0

  name        = "${var.name}-interactions"
  port        = local.interactions_port
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id
  # A request is answered within the budget (2.5 s): draining needs little time.
  deregistration_delay = 10

  health_check {
    path                = "/healthz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

resource "aws_lb_listener" "interactions_https" {
  count = local.interactions_enabled ? 1 : 0

  load_balancer_arn = aws_lb.interactions[0].arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.interactions_certificate_arn

  # Only POST /interactions reaches the service (the rule below).
  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = "text/plain"
      message_body = "not found"
      status_code  = "404"
    }
  }

  tags = var.tags
}

resource "aws_lb_listener_rule" "interactions" {
  count = local.interactions_enabled ? 1 : 0

  listener_arn = aws_lb_listener.interactions_https[0].arn
  priority     = 10

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.interactions[0].arn
  }

  condition {
    path_pattern {
      values = ["/interactions"]
    }
  }
  condition {
    http_request_method {
      values = ["POST"]
    }
  }

  tags = var.tags
}

resource "aws_ecs_task_definition" "interactions" {
  count = local.interactions_enabled ? 1 : 0

  family                   = "${var.name}-interactions"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.interactions_cpu
  memory                   = var.interactions_memory
  execution_role_arn       = aws_iam_role.execution["interactions"].arn
  task_role_arn            = aws_iam_role.task["interactions"].arn

  container_definitions = jsonencode([
    {
      name      = "interactions"
      image     = var.interactions_image
      essential = true
      command   = ["/usr/local/bin/shardline-interactions"]
      environment = [
        { name = "NATS_URL", value = local.nats_url },
        { name = "NATS_USER", value = "interactions" },
        { name = "STREAM_REPLICAS", value = "3" },
        { name = "LISTEN_ADDR", value = "0.0.0.0:${local.interactions_port}" },
        { name = "METRICS_ADDR", value = "0.0.0.0:${local.metrics_port}" },
        # Above the ALB's 60 s idle timeout (see aws_lb.interactions); the ALB only
        # forwards complete requests' headers, so slow clients never reach the task.
        { name = "HEADER_READ_TIMEOUT_MS", value = "65000" },
        { name = "SHUTDOWN_GRACE_SECS", value = "10" },
        { name = "RUST_LOG", value = "info" },
      ]
      secrets = [
        { name = "DISCORD_PUBLIC_KEY", valueFrom = local.discord_public_key_secret_arn },
        { name = "NATS_PASSWORD", valueFrom = aws_secretsmanager_secret.nats_user["interactions"].arn },
      ]
      portMappings = [
        { containerPort = local.interactions_port, protocol = "tcp" },
        { containerPort = local.metrics_port, protocol = "tcp" },
      ]
      readonlyRootFilesystem = true
      privileged             = false
      user                   = "65532"
      healthCheck = {
        command     = ["CMD", "/usr/local/bin/shardline-healthcheck"]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 15
      }
      # SIGTERM (after the ALB drained the task): requests in flight finish within
      # SHUTDOWN_GRACE_SECS.
      stopTimeout = 30
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.shardline["interactions"].name
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = "interactions"
        }
      }
    }
  ])

  tags = var.tags
}

resource "aws_ecs_service" "interactions" {
  count = local.interactions_enabled ? 1 : 0

  name             = "interactions"
  cluster          = aws_ecs_cluster.shardline.arn
  task_definition  = aws_ecs_task_definition.interactions[0].arn
  desired_count    = var.interactions_tasks.min
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  # Stateless: a deploy starts the new tasks before draining the old ones.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 30

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.interactions[0].arn
    container_name   = "interactions"
    container_port   = local.interactions_port
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.services.id]
    assign_public_ip = false
  }

  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener.interactions_https, module.nats_2]

  tags = var.tags
}

resource "aws_appautoscaling_target" "interactions" {
  count = local.interactions_enabled ? 1 : 0

  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.shardline.name}/${aws_ecs_service.interactions[0].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.interactions_tasks.min
  max_capacity       = var.interactions_tasks.max
}

# The service's work is verifying signatures and moving bytes: CPU is its load.
resource "aws_appautoscaling_policy" "interactions_cpu" {
  count = local.interactions_enabled ? 1 : 0

  name               = "${var.name}-interactions-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = "ecs"
  resource_id        = aws_appautoscaling_target.interactions[0].resource_id
  scalable_dimension = aws_appautoscaling_target.interactions[0].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = 50
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

output "interactions_endpoint" {
  description = "The load balancer's DNS name: point your certificate's name at it (CNAME or alias) and set https://<that name>/interactions as the application's Interactions Endpoint URL."
  value       = try(aws_lb.interactions[0].dns_name, null)
}

output "discord_public_key_secret_arn" {
  description = "Secret holding the application's public key (put the value in before the first deploy if the module created it)."
  value       = local.discord_public_key_secret_arn
}
