"""A/B testing service shared layer."""
