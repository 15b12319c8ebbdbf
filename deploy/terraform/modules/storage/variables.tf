variable "name" {
  description = "Name prefix of the key alias and descriptions."
  type        = string
}

variable "bucket_name" {
  description = "Globally unique name of the artifacts bucket; the access-log bucket is <name>-logs."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,56}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name of at most 58 characters (room for the -logs suffix)."
  }
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted artifact version is kept."
  type        = number

  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days must be at least 1."
  }
}

variable "image_repositories" {
  description = "ECR repositories to create, one per image."
  type        = list(string)
}
