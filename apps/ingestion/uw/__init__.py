"""Unusual Whales: the socket channels, their payloads and how each becomes a normalized row."""
