"""The Triton side of cvstack: model contracts, repository rendering and the local CPU server."""
