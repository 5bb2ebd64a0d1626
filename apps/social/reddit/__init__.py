"""Publishing to Reddit through its OAuth API."""
