output "cluster_arn" {
  description = "The ECS cluster."
  value       = aws_ecs_cluster.shardline.arn
}

output "nats_url" {
  description = "What a client inside the VPC gives as NATS_URL (every node, by Cloud Map name)."
  value       = local.nats_url
}

output "nats_services" {
  description = "ECS services of the NATS nodes."
  value       = [module.nats_0.service_name, module.nats_1.service_name, module.nats_2.service_name]
}

output "gateway_shard_ranges" {
  description = "SHARD_IDS of each gateway service, in order."
  value       = { for i, ids in local.gateway_shard_ids : aws_ecs_service.gateway[i].name => ids }
}

output "worker_services" {
  description = "ECS service of each worker."
  value       = { for k, s in aws_ecs_service.worker : k => s.name }
}

output "rest_url" {
  description = "The Discord REST proxy inside the VPC (DISCORD_API_URL of any client)."
  value       = local.rest_url
}

output "services_security_group_id" {
  description = "Security group of the gateway, worker and REST proxy tasks (the NATS clients)."
  value       = aws_security_group.services.id
}

output "nats_security_group_id" {
  description = "Security group of the NATS nodes."
  value       = aws_security_group.nats.id
}

output "discord_token_secret_arn" {
  description = "Secret holding the bot token (put the value in before the first deploy if the module created it)."
  value       = local.discord_token_secret_arn
}

output "nats_operator_secret_arn" {
  description = "Password of the NATS operator user (the shardline CLI, the nats CLI)."
  value       = aws_secretsmanager_secret.nats_user["operator"].arn
}

output "metrics_namespace" {
  description = "CloudWatch namespace of the consumer-lag metric the workers scale on."
  value       = local.metrics_namespace
}
