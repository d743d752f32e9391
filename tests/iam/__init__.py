"""IAM proven under moto with enforcement on, with the synthesized template's exact policies."""
