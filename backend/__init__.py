"""cvstack backend: the real-time vision service and the tools that prepare and serve its models."""
