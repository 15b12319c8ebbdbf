output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name <this> --region <region>)."
  value       = module.gpu_cluster.cluster_name
}

output "cluster_endpoint" {
  description = "The Kubernetes API server URL."
  value       = module.gpu_cluster.cluster_endpoint
}

output "kubeconfig_command" {
  description = "The command that writes a kubeconfig entry for this cluster (credentials come from your AWS session)."
  value       = "aws eks update-kubeconfig --name ${module.gpu_cluster.cluster_name} --region ${var.region}"
}

output "gpu_node_group" {
  description = "Name of the GPU node group (nodes labelled llm-platform/pool=gpu, tainted nvidia.com/gpu=present:NoSchedule)."
  value       = module.gpu_cluster.gpu_node_group_name
}

output "vpc_id" {
  description = "The VPC the cluster runs in."
  value       = module.networking.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets of the nodes."
  value       = module.networking.private_subnet_ids
}

output "artifact_bucket" {
  description = "S3 bucket for models and runs (MLflow's artifact root: s3://<this>/mlflow)."
  value       = module.storage.bucket_name
}

output "image_repository_urls" {
  description = "ECR repository URL per image name (the overlays' image references)."
  value       = module.storage.repository_urls
}

output "node_role_arn" {
  description = "IAM role of the nodes (read access to the artifact bucket and the registry)."
  value       = module.gpu_cluster.node_role_arn
}
