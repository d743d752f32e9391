# The cvstack GPU instance image, baked with Packer (amazon-ebs).
#
#   cd ami && packer init . && packer build -var region=eu-west-1 .
#   packer build -var region=eu-west-1 -var subnet_id=subnet-0abc... .   # no default VPC
#
# Builds from the committed tree (git archive HEAD), runs ami/provision.sh on a g4dn so the
# driver, the NVIDIA container runtime and the Triton image are checked on a real GPU, then
# writes the new AMI id to the SSM parameter the CDK stack reads (`amiParameterName`).

packer {
  required_version = ">= 1.10.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
  }
}

variable "region" {
  type        = string
  description = "AWS region of the CDK stack"
}

variable "instance_type" {
  type        = string
  default     = "g4dn.xlarge"
  description = "build instance: the same GPU family as the stack, so the bake can test the GPU"
}

variable "ami_parameter_name" {
  type        = string
  default     = "/cvstack/ami-id"
  description = "SSM parameter the CDK stack reads the AMI id from (cdk.json amiParameterName)"
}

# The build instance's network. Empty: the region's default VPC and one of its subnets, as
# Packer does by default. Accounts without a default VPC (AWS Organizations often delete it)
# pass a subnet with a route to the internet (the bake pulls images and packages), and its VPC.
variable "vpc_id" {
  type        = string
  default     = ""
  description = "VPC of the build instance; empty: the default VPC (or the subnet's VPC)"
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "subnet of the build instance; required when the region has no default VPC"
}

variable "associate_public_ip_address" {
  type        = bool
  default     = true
  description = "give the build instance a public IP: Packer connects over SSH from this machine"
}

variable "root_volume_gib" {
  type        = number
  default     = 100
  description = "root volume of the image; at most the stack's rootVolumeGib"
}

locals {
  timestamp      = formatdate("YYYYMMDD-hhmm", timestamp())
  state          = "${path.root}/../.cvstack/ami" # git-ignored
  source_tarball = "${local.state}/source.tar.gz"
}

source "amazon-ebs" "cvstack" {
  region        = var.region
  instance_type = var.instance_type
  ami_name      = "cvstack-${local.timestamp}"
  ssh_username  = "ubuntu"
  # null leaves the choice to Packer (the default VPC); a subnet alone implies its VPC.
  vpc_id                      = var.vpc_id == "" ? null : var.vpc_id
  subnet_id                   = var.subnet_id == "" ? null : var.subnet_id
  associate_public_ip_address = var.associate_public_ip_address
  # A temporary key pair and security group, open to this machine's address only.
  temporary_security_group_source_public_ip = true

  # NVIDIA driver, Docker and the NVIDIA container toolkit are already in this AWS image.
  source_ami_filter {
    owners      = ["amazon"]
    most_recent = true
    filters = {
      name                = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
  }

  # /dev/sda1 is the root device of Ubuntu AMIs: the stack's default rootDeviceName.
  launch_block_device_mappings {
    device_name           = "/dev/sda1"
    volume_size           = var.root_volume_gib
    volume_type           = "gp3"
    encrypted             = true
    delete_on_termination = true
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 2
  }

  tags = {
    Name    = "cvstack-${local.timestamp}"
    project = "cvstack"
  }
}

build {
  sources = ["source.amazon-ebs.cvstack"]

  # Bake exactly what is committed, nothing from the working folder (.venv, models, state).
  provisioner "shell-local" {
    inline = [
      "mkdir -p ${local.state}",
      "git -C ${path.root}/.. archive --format=tar.gz --output ${local.source_tarball} HEAD",
    ]
  }

  provisioner "file" {
    source      = local.source_tarball
    destination = "/tmp/cvstack-src.tar.gz"
  }

  provisioner "shell" {
    script           = "${path.root}/provision.sh"
    environment_vars = ["CVSTACK_SOURCE=/tmp/cvstack-src.tar.gz"]
    execute_command  = "chmod +x {{ .Path }}; sudo -E bash '{{ .Path }}'"
  }

  post-processor "manifest" {
    output = "${local.state}/packer-manifest.json"
  }

  post-processor "shell-local" {
    inline = [
      "${path.root}/publish-ami-id.sh ${local.state}/packer-manifest.json ${var.ami_parameter_name} ${var.region}",
    ]
  }
}
