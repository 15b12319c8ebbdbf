# llm_platform on AWS: a VPC (networking), an encrypted bucket + image registry (storage) and an EKS cluster with
# a CPU system node group and a GPU node group for the model servers and training jobs (gpu_cluster).
# deploy/k8s/overlays/<env> are applied to this cluster (`make deploy-<env>`).

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      project     = "llm-platform"
      environment = var.environment
      managed-by  = "terraform"
    })
  }
}

locals {
  name = "${var.name_prefix}-${var.environment}"
}

module "networking" {
  source = "./modules/networking"

  name               = local.name
  vpc_cidr           = var.vpc_cidr
  az_count           = var.az_count
  log_retention_days = var.log_retention_days
  kms_key_arn        = module.storage.kms_key_arn
}

module "storage" {
  source = "./modules/storage"

  name                    = local.name
  bucket_name             = var.artifact_bucket_name
  noncurrent_version_days = var.noncurrent_version_days
  image_repositories      = var.image_repositories
}

module "gpu_cluster" {
  source = "./modules/gpu_cluster"

  name                         = local.name
  kubernetes_version           = var.kubernetes_version
  subnet_ids                   = module.networking.private_subnet_ids
  vpc_id                       = module.networking.vpc_id
  endpoint_public_access       = var.endpoint_public_access
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs
  kms_key_arn                  = module.storage.kms_key_arn
  log_retention_days           = var.log_retention_days
  system_instance_types        = var.system_instance_types
  system_node_count            = var.system_node_count
  gpu_instance_types           = var.gpu_instance_types
  gpu_min_size                 = var.gpu_min_size
  gpu_max_size                 = var.gpu_max_size
  gpu_desired_size             = var.gpu_desired_size
  gpu_capacity_type            = var.gpu_capacity_type
  gpu_disk_size_gb             = var.gpu_disk_size_gb
  artifact_bucket_arn          = module.storage.bucket_arn
}
