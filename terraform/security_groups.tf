# Only what is used: 4222 (clients) from Shardline tasks, 6222 (routes) between NATS
# nodes, 8222 (monitoring) and 9100 (/metrics) from the metrics scraper. Tasks reach
# out on 443 only (ECR, Secrets Manager, CloudWatch, Discord) besides NATS and, for
# the workers, their PostgreSQL (database_port to database_security_group_id).

resource "aws_security_group" "nats" {
  name        = "${var.name}-nats"
  description = "NATS nodes: clients from Shardline tasks, routes between nodes, monitoring from the scraper"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_security_group" "services" {
  name        = "${var.name}-services"
  description = "Shardline gateway and worker tasks"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "nats_clients" {
  security_group_id            = aws_security_group.nats.id
  description                  = "NATS clients: Shardline tasks only"
  referenced_security_group_id = aws_security_group.services.id
  ip_protocol                  = "tcp"
  from_port                    = 4222
  to_port                      = 4222
}

resource "aws_vpc_security_group_ingress_rule" "nats_routes" {
  security_group_id            = aws_security_group.nats.id
  description                  = "NATS cluster routes: between NATS nodes only"
  referenced_security_group_id = aws_security_group.nats.id
  ip_protocol                  = "tcp"
  from_port                    = 6222
  to_port                      = 6222
}

resource "aws_vpc_security_group_egress_rule" "nats_routes" {
  security_group_id            = aws_security_group.nats.id
  description                  = "NATS cluster routes to the other nodes"
  referenced_security_group_id = aws_security_group.nats.id
  ip_protocol                  = "tcp"
  from_port                    = 6222
  to_port                      = 6222
}

resource "aws_vpc_security_group_ingress_rule" "nats_monitoring" {
  for_each = toset(var.metrics_scraper_security_group_ids)

  security_group_id            = aws_security_group.nats.id
  description                  = "NATS monitoring: the metrics scraper only"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 8222
  to_port                      = 8222
}

resource "aws_vpc_security_group_ingress_rule" "services_metrics" {
  for_each = toset(var.metrics_scraper_security_group_ids)

  security_group_id            = aws_security_group.services.id
  description                  = "Gateway and worker /metrics: the metrics scraper only"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = local.metrics_port
  to_port                      = local.metrics_port
}

resource "aws_vpc_security_group_egress_rule" "services_nats" {
  security_group_id            = aws_security_group.services.id
  description                  = "NATS clients to the NATS nodes"
  referenced_security_group_id = aws_security_group.nats.id
  ip_protocol                  = "tcp"
  from_port                    = 4222
  to_port                      = 4222
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = {
    nats     = aws_security_group.nats.id
    services = aws_security_group.services.id
  }

  security_group_id = each.value
  description       = "HTTPS: ECR, Secrets Manager, CloudWatch; Discord's gateway and API for the services"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "services_database" {
  count = var.database_security_group_id == null ? 0 : 1

  security_group_id            = aws_security_group.services.id
  description                  = "Workers to their PostgreSQL"
  referenced_security_group_id = var.database_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = var.database_port
  to_port                      = var.database_port
}
