"""The AWS CDK app: one stack that runs the GPU instance on demand and keeps its cost bounded."""
