output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.this.id
}

output "private_subnet_ids" {
  description = "One private subnet per zone (nodes, internal load balancers)."
  value       = aws_subnet.private[*].id
}

output "public_subnet_ids" {
  description = "One public subnet per zone (NAT gateways, internet-facing load balancers)."
  value       = aws_subnet.public[*].id
}
