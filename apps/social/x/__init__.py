"""Publishing to X (Twitter) through API v2."""
