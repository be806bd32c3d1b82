# One NATS node: a Fargate task whose JetStream store is on the task's own ephemeral
# storage (never EFS/NFS), registered in Cloud Map as nats-<index>.

terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

variable "index" {
  description = "Node number: 0, 1 or 2 (server name nats-<index>)."
  type        = number

  validation {
    condition     = contains([0, 1, 2], var.index)
    error_message = "index must be 0, 1 or 2."
  }
}

variable "subnet_id" {
  description = "Subnet (availability zone) of this node."
  type        = string
}

variable "node" {
  description = "Settings shared by the three nodes (see ../../nats.tf)."
  type = object({
    cluster_arn        = string
    image              = string
    cpu                = number
    memory             = number
    ephemeral_gib      = number
    security_group_ids = list(string)
    namespace_id       = string
    execution_role_arn = string
    task_role_arn      = string
    log_group          = string
    region             = string
    server_secret_arn  = string
    config             = string
    family_prefix      = string
    tags               = map(string)
  })
}

locals {
  name = "nats-${var.index}"
  # ECS secrets: the NATS variable, and the key of the server secret it comes from.
  secret_keys = {
    NATS_CLUSTER_PASSWORD            = "route"
    NATS_CLUSTER_ROUTES              = "routes"
    NATS_GATEWAY_PASSWORD            = "gateway"
    NATS_EVENT_WORKER_PASSWORD       = "event-worker"
    NATS_COMMAND_WORKER_PASSWORD     = "command-worker"
    NATS_ELIGIBILITY_WORKER_PASSWORD = "eligibility-worker"
    NATS_SYNC_WORKER_PASSWORD        = "sync-worker"
    NATS_REST_PASSWORD               = "rest"
    NATS_INTERACTIONS_PASSWORD       = "interactions"
    NATS_OPERATOR_PASSWORD           = "operator"
    NATS_SYSTEM_PASSWORD             = "system"
  }
}

resource "aws_service_discovery_service" "node" {
  name = local.name

  dns_config {
    namespace_id   = var.node.namespace_id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "A"
      ttl  = 10
    }
  }

  health_check_custom_config {
    failure_threshold = 1
  }

  tags = var.node.tags
}

resource "aws_ecs_task_definition" "node" {
  family                   = "${var.node.family_prefix}-${local.name}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.node.cpu
  memory                   = var.node.memory
  execution_role_arn       = var.node.execution_role_arn
  task_role_arn            = var.node.task_role_arn

  ephemeral_storage {
    size_in_gib = var.node.ephemeral_gib
  }

  # Task-local storage for the JetStream store and the rendered config file.
  volume {
    name = "data"
  }

  container_definitions = jsonencode([
    {
      name      = "nats"
      image     = var.node.image
      essential = true
      # nats.conf ships unchanged in NATS_CONFIG; everything per node is in the
      # environment below (the same variables the test suite sets on loopback).
      entryPoint = ["sh", "-c"]
      command    = ["printf '%s' \"$NATS_CONFIG\" > /data/nats.conf && exec nats-server --config /data/nats.conf"]
      environment = [
        { name = "NATS_CONFIG", value = var.node.config },
        { name = "NATS_SERVER_NAME", value = local.name },
        { name = "NATS_LISTEN", value = "0.0.0.0:4222" },
        { name = "NATS_HTTP_LISTEN", value = "0.0.0.0:8222" },
        { name = "NATS_CLUSTER_LISTEN", value = "0.0.0.0:6222" },
        { name = "NATS_STORE_DIR", value = "/data/jetstream" },
      ]
      secrets = [
        for env, key in local.secret_keys : { name = env, valueFrom = "${var.node.server_secret_arn}:${key}::" }
      ]
      portMappings = [
        { containerPort = 4222, protocol = "tcp" },
        { containerPort = 6222, protocol = "tcp" },
        { containerPort = 8222, protocol = "tcp" },
      ]
      mountPoints            = [{ sourceVolume = "data", containerPath = "/data", readOnly = false }]
      readonlyRootFilesystem = true
      privileged             = false
      # Healthy only when JetStream is current: the next node waits for it.
      healthCheck = {
        command     = ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8222/healthz || exit 1"]
        interval    = 10
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
      stopTimeout = 60
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = var.node.log_group
          awslogs-region        = var.node.region
          awslogs-stream-prefix = local.name
        }
      }
    }
  ])

  tags = var.node.tags
}

resource "aws_ecs_service" "node" {
  name                  = local.name
  cluster               = var.node.cluster_arn
  task_definition       = aws_ecs_task_definition.node.arn
  desired_count         = 1
  launch_type           = "FARGATE"
  platform_version = "LATEST"
  wait_for_steady_state = true
  # Never two tasks with one server name: stop the old node, then start the new one.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = [var.subnet_id]
    security_groups  = var.node.security_group_ids
    assign_public_ip = false
  }

  service_registries {
    registry_arn = aws_service_discovery_service.node.arn
  }

  tags = var.node.tags
}

output "service_name" {
  description = "The node's ECS service."
  value       = aws_ecs_service.node.name
}

output "task_definition_arn" {
  description = "The node's task definition."
  value       = aws_ecs_task_definition.node.arn
}
