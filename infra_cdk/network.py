"""A VPC with public subnets only (no NAT gateway cost), flow logs, and the instance's firewall."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct


class Network(Construct):
    """`vpc` and the instance's `security_group`.

    The group opens nothing to the internet: the front door adds port 80 from CloudFront's
    VPC-origin service group (in `fleet` mode the fleet's load balancer adds port 80 and nginx's
    health port from its own group), and `operator_cidrs` (if any) reach the HTTPS port. The public
    subnets lie in `availability_zones`, or in the region's first two when empty; the
    instance's public IPv4 there serves its egress only (no NAT gateway to pay for).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        operator_cidrs: Sequence[str] = (),
        availability_zones: Sequence[str] = (),
        fleet: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        # The default security group is left as AWS creates it: nothing here uses it, and
        # restricting it needs a custom-resource Lambda.
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.40.0.0/16"),
            availability_zones=list(availability_zones) or None,
            max_azs=None if availability_zones else 2,
            nat_gateways=0,
            restrict_default_security_group=False,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                )
            ],
        )
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "InstanceSecurityGroup",
            vpc=self.vpc,
            description="cvstack GPU fleet: HTTP and health checks from its load balancer, "
            "HTTPS operators"
            if fleet
            else "cvstack GPU instance: HTTP from CloudFront VPC origins, HTTPS operators",
            allow_all_outbound=True,
        )
        for cidr in operator_cidrs:
            network = ipaddress.ip_network(cidr)
            peer = ec2.Peer.ipv4(cidr) if network.version == 4 else ec2.Peer.ipv6(cidr)
            self.security_group.add_ingress_rule(
                peer, ec2.Port.tcp(443), "operator access to the self-signed HTTPS listener"
            )
