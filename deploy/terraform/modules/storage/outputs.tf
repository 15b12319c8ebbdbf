output "kms_key_arn" {
  description = "The customer-managed KMS key (bucket, registry, logs, Kubernetes secrets)."
  value       = aws_kms_key.this.arn
}

output "bucket_name" {
  description = "The artifacts bucket."
  value       = aws_s3_bucket.artifacts.bucket
}

output "bucket_arn" {
  description = "ARN of the artifacts bucket (the nodes' read policy)."
  value       = aws_s3_bucket.artifacts.arn
}

output "repository_urls" {
  description = "ECR repository URL per image name."
  value       = { for k, r in aws_ecr_repository.images : k => r.repository_url }
}
