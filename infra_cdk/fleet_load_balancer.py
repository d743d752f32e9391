"""Fleet mode's origin: an internal Application Load Balancer in front of the group.

CloudFront's VPC origin sends /ws/*, /ready and /health to it (infra_cdk/front_door.py), with the
origin secret header, which the load balancer passes on like every other header; nginx on each
instance checks it as in single mode. X-Forwarded-For and Host reach nginx unchanged, so it
counts viewers (not load balancer nodes) and the backend's same-origin check sees the viewer's
host.

Health checks GET /ready on nginx's health listener (HEALTH_PORT), which needs no secret: a
health check cannot send one. A draining instance answers 503 there and gets no new sessions;
the deregistration delay (`fleetDrainMinutes`) keeps a leaving instance's WebSockets open for
as long as its drain may last.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from backend.instance.nginx_config import HEALTH_PORT
from infra_cdk.config import StackConfig
from infra_cdk.fleet_group import GpuFleet
from infra_cdk.network import Network

ORIGIN_PORT = 80  # nginx's origin listener on every instance (and the load balancer's)
# A WebSocket through the load balancer is closed after this long without a frame either way.
# The backend pings every 15 s and nginx closes a WebSocket the backend left silent for 60 s,
# so nginx decides first; nginx keeps idle connections longer still (FRONT_DOOR_KEEPALIVE_S).
IDLE_TIMEOUT = Duration.seconds(120)
# /ready every 5 s (ALB's fastest): a started instance takes sessions 10 s after it is ready
# (2 successes; ALB's defaults would add up to 150 s to every start), and one that stops
# answering is out of rotation after 3 failures (15 s). The timeout must be below the interval.
HEALTH_INTERVAL = Duration.seconds(5)
HEALTH_TIMEOUT = Duration.seconds(4)
UNHEALTHY_AFTER = 3
HEALTHY_AFTER = 2


class FleetLoadBalancer(Construct):
    """`load_balancer` (internal, HTTP 80), its `security_group`, `listener` and
    `target_group` (the fleet's group)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        network: Network,
        fleet: GpuFleet,
    ) -> None:
        super().__init__(scope, construct_id)
        # Ingress: port 80 from CloudFront's VPC origins only (the front door adds it).
        # Egress: nginx's two ports inside the VPC, inline, so that AWS's default allow-all
        # egress rule is left out (rules to the instances' group are separate resources, which
        # alone would leave it in place).
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            description="cvstack fleet load balancer: HTTP from CloudFront VPC origins",
            allow_all_outbound=False,
        )
        for port, purpose in ((ORIGIN_PORT, "requests"), (HEALTH_PORT, "health checks")):
            self.security_group.add_egress_rule(
                ec2.Peer.ipv4(network.vpc.vpc_cidr_block),
                ec2.Port.tcp(port),
                f"{purpose} to nginx on the fleet's instances",
            )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=network.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            internet_facing=False,
            security_group=self.security_group,
            idle_timeout=IDLE_TIMEOUT,
            drop_invalid_header_fields=True,
            preserve_host_header=True,
            xff_header_processing_mode=elbv2.XffHeaderProcessingMode.PRESERVE,
        )
        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "Targets",
            vpc=network.vpc,
            port=ORIGIN_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.INSTANCE,
            targets=[fleet.group],
            deregistration_delay=Duration.minutes(config.fleet_drain_minutes),
            # New requests go to the target with the fewest in flight. AWS does not document
            # whether an upgraded WebSocket stays "in flight"; if not, this is round robin, and
            # a full instance still sends extra sessions away (CVSTACK_MAX_WAIT_S).
            load_balancing_algorithm_type=(
                elbv2.TargetGroupLoadBalancingAlgorithmType.LEAST_OUTSTANDING_REQUESTS
            ),
            health_check=elbv2.HealthCheck(
                path="/ready",
                port=str(HEALTH_PORT),
                protocol=elbv2.Protocol.HTTP,
                healthy_http_codes="200",
                interval=HEALTH_INTERVAL,
                timeout=HEALTH_TIMEOUT,
                unhealthy_threshold_count=UNHEALTHY_AFTER,
                healthy_threshold_count=HEALTHY_AFTER,
            ),
        )
        self.listener = self.load_balancer.add_listener(
            "Http",
            port=ORIGIN_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            open=False,
            default_target_groups=[self.target_group],
        )
        # The listener's targets already admit ORIGIN_PORT from here; the health port too.
        self.load_balancer.connections.allow_to(
            fleet.group, ec2.Port.tcp(HEALTH_PORT), "health checks of nginx's /ready"
        )
