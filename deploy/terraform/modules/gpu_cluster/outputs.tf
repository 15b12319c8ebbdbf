output "cluster_name" {
  description = "The EKS cluster's name."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "The Kubernetes API server URL."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_certificate_authority" {
  description = "The API server's CA certificate (base64), for kubeconfigs."
  value       = aws_eks_cluster.this.certificate_authority[0].data
}

output "gpu_node_group_name" {
  description = "The GPU node group."
  value       = aws_eks_node_group.gpu.node_group_name
}

output "node_role_arn" {
  description = "The nodes' IAM role."
  value       = aws_iam_role.node.arn
}
