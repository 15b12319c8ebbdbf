# Terraform and provider versions. Credentials never live in these files: the AWS provider reads them from the
# environment (AWS_PROFILE, AWS_ACCESS_KEY_ID/..., or an instance/OIDC role), the state backend from -backend-config.
terraform {
  required_version = ">= 1.9.0" # cross-variable validations (gpu_min_size <= gpu_max_size)

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }

  # Remote state: `terraform init -backend-config=backend.hcl` (bucket, key, region, dynamodb_table); nothing here.
  backend "s3" {}
}
