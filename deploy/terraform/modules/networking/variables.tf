variable "name" {
  description = "Name prefix of the network's resources."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's IPv4 range (/20 or larger): private subnets take its first 16ths, public ones from the 9th on."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be an IPv4 CIDR block."
  }
}

variable "az_count" {
  description = "Availability zones used (one private and one public subnet, one NAT gateway each)."
  type        = number

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be from 2 to 4."
  }
}

variable "log_retention_days" {
  description = "Retention of the VPC flow logs in days."
  type        = number
}

variable "kms_key_arn" {
  description = "KMS key that encrypts the flow log group."
  type        = string
}
