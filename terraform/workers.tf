# Worker services, one per consumer, scaling between min_tasks and max_tasks on the
# consumer's lag (messages not yet delivered, the worker's nats_consumer_lag gauge).
# A sidecar (AWS Distro for OpenTelemetry) scrapes the worker's /metrics and puts
# that gauge in CloudWatch; step scaling adds tasks while the lag is high and removes
# one when it has stayed low.

locals {
  # Variables only one worker binary reads. The command worker sends its Discord calls
  # through the REST proxy, which holds the bot token.
  worker_binary_env = {
    "shardline-command-worker" = [
      { name = "DISCORD_API_URL", value = local.rest_url },
    ]
  }

  # The collector's configuration: scrape /metrics, send nats_consumer_lag by consumer.
  collector_config = yamlencode({
    receivers = {
      prometheus = {
        config = {
          scrape_configs = [{
            job_name        = "shardline-worker"
            scrape_interval = "15s"
            static_configs  = [{ targets = ["127.0.0.1:${local.metrics_port}"] }]
          }]
        }
      }
    }
    exporters = {
      awsemf = {
        namespace               = local.metrics_namespace
        region                  = data.aws_region.current.name
        dimension_rollup_option = "NoDimensionRollup"
        metric_declarations = [{
          dimensions            = [["consumer"]]
          metric_name_selectors = ["^nats_consumer_lag$"]
        }]
      }
    }
    service = {
      pipelines = {
        metrics = { receivers = ["prometheus"], exporters = ["awsemf"] }
      }
    }
  })
}

resource "aws_ecs_task_definition" "worker" {
  for_each = var.workers

  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution[each.key].arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  container_definitions = jsonencode([
    {
      name      = "worker"
      image     = var.worker_image
      essential = true
      command   = ["/usr/local/bin/${each.value.binary}"]
      environment = concat(
        [
          { name = "NATS_URL", value = local.nats_url },
          { name = "NATS_USER", value = each.value.nats_user },
          { name = "STREAM_REPLICAS", value = "3" },
          { name = "METRICS_ADDR", value = "0.0.0.0:${local.metrics_port}" },
          { name = "SHUTDOWN_GRACE_SECS", value = "20" },
          { name = "RUST_LOG", value = "info" },
        ],
        lookup(local.worker_binary_env, each.value.binary, []),
      )
      secrets = [
        { name = "NATS_PASSWORD", valueFrom = aws_secretsmanager_secret.nats_user[each.value.nats_user].arn },
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
        startPeriod = 20
      }
      # SIGTERM: stop pulling, let handlers finish (SHUTDOWN_GRACE_SECS), return the rest.
      stopTimeout = 30
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.shardline[each.key].name
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = each.key
        }
      }
    },
    {
      name                   = "metrics"
      image                  = var.metrics_collector_image
      essential              = false
      environment            = [{ name = "AOT_CONFIG_CONTENT", value = local.collector_config }]
      readonlyRootFilesystem = true
      privileged             = false
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.shardline[each.key].name
          awslogs-region        = data.aws_region.current.name
          awslogs-stream-prefix = "${each.key}-metrics"
        }
      }
    },
  ])

  tags = var.tags
}

resource "aws_ecs_service" "worker" {
  for_each = var.workers

  name             = each.key
  cluster          = aws_ecs_cluster.shardline.arn
  task_definition  = aws_ecs_task_definition.worker[each.key].arn
  desired_count    = each.value.min_tasks
  launch_type      = "FARGATE"
  platform_version = "LATEST"

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.services.id]
    assign_public_ip = false
  }

  # Autoscaling owns the count after creation.
  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [module.nats_2]

  tags = var.tags
}

resource "aws_appautoscaling_target" "worker" {
  for_each = var.workers

  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.shardline.name}/${aws_ecs_service.worker[each.key].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = each.value.min_tasks
  max_capacity       = each.value.max_tasks
}

resource "aws_appautoscaling_policy" "scale_out" {
  for_each = var.workers

  name               = "${var.name}-${each.key}-lag-high"
  policy_type        = "StepScaling"
  service_namespace  = "ecs"
  resource_id        = aws_appautoscaling_target.worker[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.worker[each.key].scalable_dimension

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 60
    metric_aggregation_type = "Maximum"

    # Lag above the threshold: one more task; above four times it: two more.
    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = 3 * each.value.scale_out_lag
      scaling_adjustment          = 1
    }
    step_adjustment {
      metric_interval_lower_bound = 3 * each.value.scale_out_lag
      scaling_adjustment          = 2
    }
  }
}

resource "aws_appautoscaling_policy" "scale_in" {
  for_each = var.workers

  name               = "${var.name}-${each.key}-lag-low"
  policy_type        = "StepScaling"
  service_namespace  = "ecs"
  resource_id        = aws_appautoscaling_target.worker[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.worker[each.key].scalable_dimension

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 300
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_upper_bound = 0
      scaling_adjustment          = -1
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "lag_high" {
  for_each = var.workers

  alarm_name          = "${var.name}-${each.key}-lag-high"
  alarm_description   = "${each.key}: consumer lag above ${each.value.scale_out_lag} for 2 minutes; add tasks"
  namespace           = local.metrics_namespace
  metric_name         = "nats_consumer_lag"
  dimensions          = { consumer = each.key }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.scale_out_lag
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.scale_out[each.key].arn]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "lag_low" {
  for_each = var.workers

  alarm_name          = "${var.name}-${each.key}-lag-low"
  alarm_description   = "${each.key}: consumer lag below ${each.value.scale_in_lag} for 10 minutes; remove a task"
  namespace           = local.metrics_namespace
  metric_name         = "nats_consumer_lag"
  dimensions          = { consumer = each.key }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 10
  comparison_operator = "LessThanThreshold"
  threshold           = each.value.scale_in_lag
  treat_missing_data  = "missing"
  alarm_actions       = [aws_appautoscaling_policy.scale_in[each.key].arn]
  tags                = var.tags
}
