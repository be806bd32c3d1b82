# The application's PostgreSQL: an RDS instance in the private subnets, reachable
# only from the Shardline tasks, TLS required, encrypted with a key of its own; its
# URL (with the generated password) in a Secrets Manager secret the module hands to
# every worker as DATABASE_URL. The module itself creates no database: teams bring
# theirs.

data "aws_partition" "current" {}

resource "aws_kms_key" "database" {
  description             = "shardline: the application's database, its URL secret and Performance Insights"
  deletion_window_in_days = 30
  enable_key_rotation     = true
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministers"
      Effect    = "Allow"
      Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
}

resource "aws_security_group" "database" {
  name        = "shardline-database"
  description = "The application's PostgreSQL: the Shardline tasks only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "database_from_services" {
  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from the Shardline workers"
  referenced_security_group_id = module.shardline.services_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_db_subnet_group" "database" {
  name       = "shardline-database"
  subnet_ids = var.private_subnet_ids
}

# TLS required (the workers connect with sslmode=require; DATABASE_CA_FILE with the
# RDS CA bundle also authenticates the server); slow statements and connections
# logged.
resource "aws_db_parameter_group" "database" {
  name   = "shardline-postgres16"
  family = "postgres16"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  parameter {
    name  = "log_connections"
    value = "1"
  }
}

data "aws_iam_policy_document" "rds_monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name               = "shardline-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_assume.json
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# Letters and digits: the password goes into a URL unescaped.
resource "random_password" "database" {
  length  = 40
  special = false
}

resource "aws_db_instance" "database" {
  identifier     = "shardline"
  engine         = "postgres"
  engine_version = "16"
  instance_class = "db.t4g.medium"
  db_name        = "shardline"
  username       = "shardline"
  password       = random_password.database.result
  port           = 5432

  allocated_storage     = 50
  max_allocated_storage = 500
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.database.arn

  multi_az               = true
  db_subnet_group_name   = aws_db_subnet_group.database.name
  vpc_security_group_ids = [aws_security_group.database.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.database.name
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  iam_database_authentication_enabled = true
  backup_retention_period             = 14
  copy_tags_to_snapshot               = true
  deletion_protection                 = true
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "shardline-final"
  auto_minor_version_upgrade          = true
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring.arn
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = aws_kms_key.database.arn

  tags = { project = "shardline" }
}

resource "aws_secretsmanager_secret" "database_url" {
  # checkov:skip=CKV2_AWS_57:The URL carries the RDS master password, which Terraform sets; rotating it is a terraform apply of a new random_password and a rolling restart of the workers, not a Lambda rotation.
  name                    = "shardline/database-url"
  description             = "shardline: PostgreSQL URL of the application's records (DATABASE_URL of the workers)"
  kms_key_id              = aws_kms_key.database.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "database_url" {
  secret_id     = aws_secretsmanager_secret.database_url.id
  secret_string = "postgres://shardline:${random_password.database.result}@${aws_db_instance.database.address}:${aws_db_instance.database.port}/shardline?sslmode=require"
}
