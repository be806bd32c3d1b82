# A root configuration: Shardline in an existing VPC with three private subnets.
# terraform init && terraform apply -var vpc_id=... (see terraform/README.md).

terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5, < 4.0"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "vpc_id" {
  description = "Existing VPC."
  type        = string
}

variable "private_subnet_ids" {
  description = "Three private subnets, one per availability zone."
  type        = list(string)
}

variable "image_tag" {
  description = "Tag of the gateway, worker and REST proxy images in ECR."
  type        = string
  default     = "0.1.0"
}

variable "public_subnet_ids" {
  description = "Public subnets for the interactions load balancer (two or more availability zones)."
  type        = list(string)
}

variable "interactions_certificate_arn" {
  description = "ACM certificate of the name Discord's Interactions Endpoint URL uses."
  type        = string
}

variable "prometheus_security_group_id" {
  description = "Security group of the Prometheus that scrapes NATS and the services."
  type        = string
}

data "aws_caller_identity" "current" {}

module "shardline" {
  source = "../.."

  name               = "shardline"
  vpc_id             = var.vpc_id
  private_subnet_ids = var.private_subnet_ids
  gateway_image      = "${data.aws_caller_identity.current.account_id}.dkr.ecr.${var.region}.amazonaws.com/shardline-gateway:${var.image_tag}"
  worker_image       = "${data.aws_caller_identity.current.account_id}.dkr.ecr.${var.region}.amazonaws.com/shardline-worker:${var.image_tag}"
  rest_image         = "${data.aws_caller_identity.current.account_id}.dkr.ecr.${var.region}.amazonaws.com/shardline-rest:${var.image_tag}"

  shard_total   = 16
  gateway_tasks = 4

  workers = {
    "event-worker" = {
      binary    = "shardline-event-worker"
      nats_user = "event-worker"
      min_tasks = 2
      max_tasks = 10
    }
    "command-worker" = {
      binary        = "shardline-command-worker"
      nats_user     = "command-worker"
      min_tasks     = 2
      max_tasks     = 6
      scale_out_lag = 50
      scale_in_lag  = 1
    }
    "eligibility-worker" = {
      binary    = "shardline-eligibility-worker"
      nats_user = "eligibility-worker"
      min_tasks = 2
      max_tasks = 6
    }
    "sync-worker" = {
      binary    = "shardline-sync-worker"
      nats_user = "sync-worker"
      min_tasks = 2
      max_tasks = 2
    }
  }

  # The application's records: the RDS instance of database.tf.
  database_url_secret_arn    = aws_secretsmanager_secret.database_url.arn
  database_kms_key_arn       = aws_kms_key.database.arn
  database_security_group_id = aws_security_group.database.id

  # Interactions over HTTP: https://<the certificate's name>/interactions.
  interactions_image           = "${data.aws_caller_identity.current.account_id}.dkr.ecr.${var.region}.amazonaws.com/shardline-interactions:${var.image_tag}"
  interactions_certificate_arn = var.interactions_certificate_arn
  public_subnet_ids            = var.public_subnet_ids

  metrics_scraper_security_group_ids = [var.prometheus_security_group_id]
  log_retention_days                 = 365

  tags = { project = "shardline" }
}

output "nats_url" {
  description = "NATS inside the VPC."
  value       = module.shardline.nats_url
}

output "gateway_shard_ranges" {
  description = "Shards of each gateway service."
  value       = module.shardline.gateway_shard_ranges
}
