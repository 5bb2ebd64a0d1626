"""Anthropic's Messages API through the official ``anthropic`` SDK: the transport and the price list."""
