"""The secret that signs session tokens: read by start_server (to sign) and the instance."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct


class SessionSecret(Construct):
    """`secret`: 64 random alphanumerics in Secrets Manager under a fixed, documented name."""

    def __init__(self, scope: Construct, construct_id: str, *, secret_name: str) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            secret_name=secret_name,
            description="cvstack: HMAC key for session tokens (CVSTACK_SESSION_TOKEN_SECRET)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True
            ),
            removal_policy=RemovalPolicy.DESTROY,
        )

    def grant_read(self, grantee: iam.IGrantable) -> None:
        """secretsmanager:GetSecretValue on this secret only."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"], resources=[self.secret.secret_arn]
            )
        )
