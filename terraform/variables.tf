variable "name" {
  description = "Prefix of every resource name (letters, digits and dashes)."
  type        = string
  default     = "shardline"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2-21 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC the cluster runs in."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123abcd."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets (with a NAT gateway or VPC endpoints for ECR, Secrets Manager, CloudWatch and Discord) for every task. Give three, one per availability zone: NATS node i runs in subnet i % length."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 1 && alltrue([for s in var.private_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "private_subnet_ids must list at least one subnet-... id."
  }
}

variable "gateway_image" {
  description = "Image of the gateway (docker/gateway.Dockerfile), with its tag or digest."
  type        = string
}

variable "worker_image" {
  description = "Image of the workers (docker/worker.Dockerfile), with its tag or digest."
  type        = string
}

variable "rest_image" {
  description = "Image of the Discord REST proxy (docker/rest.Dockerfile), with its tag or digest."
  type        = string
}

variable "nats_image" {
  description = "NATS server image. Keep the version the test suite runs (tools/requirements.txt: 2.15.1); an alpine variant (sh and wget are used)."
  type        = string
  default     = "nats:2.15.1-alpine"

  validation {
    condition     = can(regex("alpine", var.nats_image))
    error_message = "nats_image must be an alpine variant: the task writes its config with sh and checks health with wget."
  }
}

variable "metrics_collector_image" {
  description = "AWS Distro for OpenTelemetry collector, the worker sidecar that sends nats_consumer_lag to CloudWatch for autoscaling."
  type        = string
  default     = "public.ecr.aws/aws-observability/aws-otel-collector:v0.43.1"
}

variable "shard_total" {
  description = "Shards the bot runs in all (Discord's recommendation from GET /gateway/bot, or more)."
  type        = number

  validation {
    condition     = var.shard_total >= 1 && floor(var.shard_total) == var.shard_total
    error_message = "shard_total must be a positive whole number."
  }
}

variable "gateway_tasks" {
  description = "Gateway tasks; the shards are split into this many contiguous ranges, one ECS service each."
  type        = number
  default     = 1

  validation {
    condition     = var.gateway_tasks >= 1 && floor(var.gateway_tasks) == var.gateway_tasks
    error_message = "gateway_tasks must be a positive whole number (and at most shard_total)."
  }
}

variable "discord_max_concurrency" {
  description = "Discord's max_concurrency (identifies per 5 s); null asks Discord."
  type        = number
  default     = null
}

variable "discord_token_secret_arn" {
  description = "ARN of an existing Secrets Manager secret holding the bot token. Null: the module creates an empty secret; put the token in it before the first deploy."
  type        = string
  default     = null
}

variable "workers" {
  description = "Worker services: image command (binary), task size and the consumer-lag scaling bounds. Keys are the consumer names (event-worker, command-worker), which are also the NATS users."
  type = map(object({
    binary        = string
    cpu           = optional(number, 256)
    memory        = optional(number, 512)
    min_tasks     = optional(number, 1)
    max_tasks     = optional(number, 4)
    scale_out_lag = optional(number, 1000)
    scale_in_lag  = optional(number, 10)
    nats_user     = string
  }))
  default = {
    "event-worker" = {
      binary    = "shardline-event-worker"
      nats_user = "event-worker"
    }
    "command-worker" = {
      binary        = "shardline-command-worker"
      nats_user     = "command-worker"
      scale_out_lag = 50
      scale_in_lag  = 1
    }
  }

  validation {
    condition = alltrue([
      for k, w in var.workers :
      w.min_tasks >= 1 && w.max_tasks >= w.min_tasks && w.scale_out_lag > w.scale_in_lag
      && contains(["shardline-event-worker", "shardline-command-worker"], w.binary)
      && contains(["event-worker", "command-worker"], w.nats_user)
      && k == w.nats_user
    ])
    error_message = "Each worker needs 1 <= min_tasks <= max_tasks, scale_out_lag > scale_in_lag, a known binary, and a NATS user of the shipped nats.conf equal to its key (the consumer name the lag metric is labelled with)."
  }
}

variable "gateway_cpu" {
  description = "CPU units of a gateway task."
  type        = number
  default     = 512
}

variable "gateway_memory" {
  description = "Memory (MiB) of a gateway task."
  type        = number
  default     = 1024
}

variable "rest_tasks" {
  description = "Tasks of the Discord REST proxy: one sends, the others stand by (2 for availability)."
  type        = number
  default     = 2

  validation {
    condition     = var.rest_tasks >= 1
    error_message = "rest_tasks must be at least 1."
  }
}

variable "rest_cpu" {
  description = "CPU units of a REST proxy task."
  type        = number
  default     = 256
}

variable "rest_memory" {
  description = "Memory (MiB) of a REST proxy task."
  type        = number
  default     = 512
}

variable "discord_global_limit" {
  description = "The bot's global REST limit, requests per second (50 unless Discord raised it for the bot)."
  type        = number
  default     = 50
}

variable "nats_cpu" {
  description = "CPU units of a NATS node."
  type        = number
  default     = 1024
}

variable "nats_memory" {
  description = "Memory (MiB) of a NATS node; the streams are in memory (max_memory_store 1GB in nats.conf): keep well above it."
  type        = number
  default     = 4096

  validation {
    condition     = var.nats_memory >= 2048
    error_message = "nats_memory must be at least 2048 MiB: the memory streams may hold 1 GB."
  }
}

variable "nats_ephemeral_storage_gib" {
  description = "Fargate ephemeral storage of a NATS node (GiB, 21-200): the JetStream store (RAFT logs, file streams) lives there, never on EFS/NFS."
  type        = number
  default     = 50

  validation {
    condition     = var.nats_ephemeral_storage_gib >= 21 && var.nats_ephemeral_storage_gib <= 200
    error_message = "nats_ephemeral_storage_gib must be between 21 and 200."
  }
}

variable "metrics_scraper_security_group_ids" {
  description = "Security groups of the metrics scraper (Prometheus): the only sources allowed to NATS monitoring (8222), the services' /metrics (9100) and the REST proxy's (8080)."
  type        = list(string)
  default     = []
}

variable "service_discovery_namespace" {
  description = "Private DNS namespace in which the NATS nodes are registered (nats-0.<namespace>, ...)."
  type        = string
  default     = "shardline.internal"
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups, in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ..., 365, ...)."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
