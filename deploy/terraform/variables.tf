variable "region" {
  description = "AWS region of every resource (one with the GPU instance types below, e.g. us-east-1, us-west-2, eu-west-1)."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like us-east-1 or eu-west-1."
  }
}

variable "environment" {
  description = "Which environment this stack is (configs/environments/<environment>.yaml and deploy/k8s/overlays/<environment>)."
  type        = string

  validation {
    condition     = contains(["development", "staging", "production"], var.environment)
    error_message = "environment must be development, staging or production."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name; the environment is appended (llmp-production)."
  type        = string
  default     = "llmp"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,15}$", var.name_prefix))
    error_message = "name_prefix: 2-16 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags on every resource (cost centre, owner)."
  type        = map(string)
  default     = {}
}

variable "vpc_cidr" {
  description = "The VPC's IPv4 range; split into one private and one public /20 (or smaller) subnet per zone."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && can(regex("^[0-9.]+/([0-9]|1[0-9]|20)$", var.vpc_cidr))
    error_message = "vpc_cidr must be an IPv4 CIDR block of /20 or larger (e.g. 10.40.0.0/16)."
  }
}

variable "az_count" {
  description = "Availability zones to spread subnets and nodes over (2-3: the control plane needs two; GPU capacity differs per zone)."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4 && floor(var.az_count) == var.az_count
    error_message = "az_count must be a whole number from 2 to 4."
  }
}

variable "kubernetes_version" {
  description = "EKS Kubernetes minor version (the overlays are validated against 1.30-1.33 schemas)."
  type        = string
  default     = "1.32"

  validation {
    condition     = can(regex("^1\\.(2[89]|3[0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version must be a minor version such as 1.32 (1.28 or later)."
  }
}

variable "endpoint_public_access" {
  description = "Whether the cluster's API server answers from the internet (only from endpoint_public_access_cidrs); false: only from inside the VPC (a VPN or bastion)."
  type        = bool
  default     = false
}

variable "endpoint_public_access_cidrs" {
  description = "IPv4 ranges allowed to reach a public API endpoint (your office or CI runners); never 0.0.0.0/0."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.endpoint_public_access_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "endpoint_public_access_cidrs: IPv4 CIDR blocks only, and not 0.0.0.0/0."
  }
}

variable "system_instance_types" {
  description = "Instance types of the CPU node group (gateway, Redis, monitoring, MLflow)."
  type        = list(string)
  default     = ["m6i.xlarge"]

  validation {
    condition     = length(var.system_instance_types) > 0
    error_message = "system_instance_types needs at least one instance type."
  }
}

variable "system_node_count" {
  description = "Nodes in the CPU node group (fixed; the gateway's HPA scales pods, not nodes)."
  type        = number
  default     = 2

  validation {
    condition     = var.system_node_count >= 1 && var.system_node_count <= 20
    error_message = "system_node_count must be from 1 to 20."
  }
}

variable "gpu_instance_types" {
  description = "NVIDIA GPU instance types of the model-server / training node group (g5: A10G 24 GB, g6: L4 24 GB, g6e: L40S 48 GB, p4d: A100, p5: H100)."
  type        = list(string)
  default     = ["g6.xlarge", "g5.xlarge"]

  validation {
    condition     = length(var.gpu_instance_types) > 0 && alltrue([for t in var.gpu_instance_types : can(regex("^(g4dn|g5|g6|g6e|p4d|p4de|p5|p5e)\\.[0-9]*x?large$", t))])
    error_message = "gpu_instance_types: NVIDIA GPU types only (g4dn, g5, g6, g6e, p4d, p4de, p5, p5e families)."
  }
}

variable "gpu_min_size" {
  description = "Fewest GPU nodes (0 lets the cluster autoscaler or Karpenter scale the group to zero when idle)."
  type        = number
  default     = 0

  validation {
    condition     = var.gpu_min_size >= 0
    error_message = "gpu_min_size must be 0 or more."
  }
}

variable "gpu_max_size" {
  description = "Most GPU nodes (a cost ceiling; both blue and green model-server tracks run during a switch)."
  type        = number
  default     = 4

  validation {
    condition     = var.gpu_max_size >= 1 && var.gpu_max_size <= 100 && var.gpu_max_size >= var.gpu_min_size
    error_message = "gpu_max_size must be from 1 to 100 and at least gpu_min_size."
  }
}

variable "gpu_desired_size" {
  description = "GPU nodes at creation (the autoscaler changes it afterwards; ignored by later plans)."
  type        = number
  default     = 1

  validation {
    condition     = var.gpu_desired_size >= var.gpu_min_size && var.gpu_desired_size <= var.gpu_max_size
    error_message = "gpu_desired_size must lie between gpu_min_size and gpu_max_size."
  }
}

variable "gpu_capacity_type" {
  description = "ON_DEMAND for serving; SPOT for interruptible training and tuning clusters."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.gpu_capacity_type)
    error_message = "gpu_capacity_type must be ON_DEMAND or SPOT."
  }
}

variable "gpu_disk_size_gb" {
  description = "Root volume of each GPU node in GiB (container images with CUDA and the model cache)."
  type        = number
  default     = 200

  validation {
    condition     = var.gpu_disk_size_gb >= 100 && var.gpu_disk_size_gb <= 2000
    error_message = "gpu_disk_size_gb must be from 100 to 2000."
  }
}

variable "artifact_bucket_name" {
  description = "Globally unique S3 bucket for models, GGUF exports, MLflow artifacts and pipeline runs."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.artifact_bucket_name)) && !can(regex("\\.\\.", var.artifact_bucket_name))
    error_message = "artifact_bucket_name must be a valid S3 bucket name: 3-63 lower-case letters, digits, dots or dashes."
  }
}

variable "noncurrent_version_days" {
  description = "Days an overwritten or deleted object version is kept before it expires (rollback window for artifacts)."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days must be at least 1."
  }
}

variable "image_repositories" {
  description = "ECR repositories for the project's images (deploy/docker: serving-cpu, serving-gpu, training, pipeline)."
  type        = list(string)
  default     = ["llm-platform-serving-cpu", "llm-platform-serving-gpu", "llm-platform-training", "llm-platform-pipeline"]

  validation {
    condition     = alltrue([for r in var.image_repositories : can(regex("^[a-z0-9][a-z0-9._/-]{1,254}$", r))])
    error_message = "image_repositories: lower-case ECR repository names."
  }
}

variable "log_retention_days" {
  description = "Retention of the control plane and VPC flow logs in CloudWatch (a CloudWatch-allowed value, 365 or more)."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention value of at least 365 (365, 400, 545, 731, 1096, ...)."
  }
}
