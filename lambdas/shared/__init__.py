"""Code every lifecycle Lambda bundles: AWS error wording, instance lookups, API responses."""
