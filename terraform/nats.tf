# Three NATS nodes, one ECS service each (nats-0, nats-1, nats-2), each registered in
# Cloud Map under its own name. The nodes are updated one after another: node i+1
# starts changing only when node i's service is steady, and a node is healthy only
# when its JetStream assets are current (/healthz), so a configuration change never
# takes two replicas of a stream away at once.

locals {
  nats_node = {
    cluster_arn        = aws_ecs_cluster.shardline.arn
    image              = var.nats_image
    cpu                = var.nats_cpu
    memory             = var.nats_memory
    ephemeral_gib      = var.nats_ephemeral_storage_gib
    security_group_ids = [aws_security_group.nats.id]
    namespace_id       = aws_service_discovery_private_dns_namespace.shardline.id
    execution_role_arn = aws_iam_role.execution["nats"].arn
    task_role_arn      = aws_iam_role.task["nats"].arn
    log_group          = aws_cloudwatch_log_group.shardline["nats"].name
    region             = data.aws_region.current.name
    server_secret_arn  = local.nats_server_secret
    config             = file("${path.module}/nats/nats.conf")
    family_prefix      = var.name
    tags               = var.tags
  }
}

module "nats_0" {
  source = "./modules/nats-node"

  index     = 0
  subnet_id = var.private_subnet_ids[0 % length(var.private_subnet_ids)]
  node      = local.nats_node
}

module "nats_1" {
  source = "./modules/nats-node"

  index     = 1
  subnet_id = var.private_subnet_ids[1 % length(var.private_subnet_ids)]
  node      = local.nats_node

  depends_on = [module.nats_0]
}

module "nats_2" {
  source = "./modules/nats-node"

  index     = 2
  subnet_id = var.private_subnet_ids[2 % length(var.private_subnet_ids)]
  node      = local.nats_node

  depends_on = [module.nats_1]
}
