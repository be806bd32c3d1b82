# Settings of the HTTP interactions service (interactions.tf). The service, its load
# balancer and its autoscaling exist only when interactions_image is set.

variable "interactions_image" {
  description = "Image of the HTTP interactions service (docker/interactions.Dockerfile), with its tag or digest. Null: no interactions service, no load balancer (interactions come over the gateway)."
  type        = string
  default     = null
}

variable "interactions_certificate_arn" {
  description = "ACM certificate of the HTTPS listener: the name Discord's Interactions Endpoint URL uses (Discord calls https:// URLs only). Required with interactions_image."
  type        = string
  default     = null

  validation {
    condition     = var.interactions_certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:", var.interactions_certificate_arn))
    error_message = "interactions_certificate_arn must be an ACM certificate ARN."
  }
}

variable "public_subnet_ids" {
  description = "Public subnets (two or more availability zones) for the interactions load balancer. Required with interactions_image."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.public_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "public_subnet_ids must list subnet-... ids."
  }
}

variable "interactions_ingress_cidrs" {
  description = "Who may reach the HTTPS listener. Discord publishes no address ranges for its interaction requests, so the default is everyone; the signature check is the gate."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "discord_public_key_secret_arn" {
  description = "ARN of an existing Secrets Manager secret holding the application's public key (hex). Null: the module creates an empty secret; put the key in it before the first deploy."
  type        = string
  default     = null
}

variable "interactions_access_logs_bucket" {
  description = "S3 bucket for the load balancer's access logs (its policy must let the region's ELB account write). Null: no access logs."
  type        = string
  default     = null
}

variable "interactions_tasks" {
  description = "Interactions service tasks: at least min, at most max, scaling on CPU in between."
  type = object({
    min = optional(number, 2)
    max = optional(number, 6)
  })
  default = {}

  validation {
    condition     = var.interactions_tasks.min >= 1 && var.interactions_tasks.max >= var.interactions_tasks.min
    error_message = "interactions_tasks needs 1 <= min <= max."
  }
}

variable "interactions_cpu" {
  description = "CPU units of an interactions task."
  type        = number
  default     = 512
}

variable "interactions_memory" {
  description = "Memory (MiB) of an interactions task."
  type        = number
  default     = 1024
}
