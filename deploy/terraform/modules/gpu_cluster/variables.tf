variable "name" {
  description = "Cluster name and prefix of its roles and launch templates."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes minor version, e.g. 1.32."
  type        = string

  validation {
    condition     = can(regex("^1\\.[0-9]+$", var.kubernetes_version))
    error_message = "kubernetes_version must be a minor version such as 1.32."
  }
}

variable "vpc_id" {
  description = "The VPC (networking module)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the control plane's interfaces and the nodes (at least two zones)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids needs at least two subnets (EKS needs two zones)."
  }
}

variable "endpoint_public_access" {
  description = "Whether the API server answers from outside the VPC (only from endpoint_public_access_cidrs)."
  type        = bool
}

variable "endpoint_public_access_cidrs" {
  description = "IPv4 ranges allowed to reach a public API endpoint."
  type        = list(string)

  validation {
    condition     = !contains(var.endpoint_public_access_cidrs, "0.0.0.0/0")
    error_message = "endpoint_public_access_cidrs must not contain 0.0.0.0/0."
  }
}

variable "kms_key_arn" {
  description = "KMS key for Kubernetes secrets, node volumes and the control-plane log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the control-plane logs in days."
  type        = number
}

variable "system_instance_types" {
  description = "Instance types of the CPU node group."
  type        = list(string)
}

variable "system_node_count" {
  description = "Nodes in the CPU node group."
  type        = number
}

variable "gpu_instance_types" {
  description = "NVIDIA GPU instance types of the GPU node group."
  type        = list(string)
}

variable "gpu_min_size" {
  description = "Fewest GPU nodes."
  type        = number
}

variable "gpu_max_size" {
  description = "Most GPU nodes."
  type        = number

  validation {
    condition     = var.gpu_max_size >= var.gpu_min_size
    error_message = "gpu_max_size must be at least gpu_min_size."
  }
}

variable "gpu_desired_size" {
  description = "GPU nodes at creation."
  type        = number
}

variable "gpu_capacity_type" {
  description = "ON_DEMAND or SPOT."
  type        = string

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.gpu_capacity_type)
    error_message = "gpu_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "gpu_disk_size_gb" {
  description = "Root volume of each GPU node in GiB."
  type        = number
}

variable "artifact_bucket_arn" {
  description = "The artifacts bucket the nodes may read (models, GGUF exports)."
  type        = string
}
