"""Discord webhooks: the transport (the ``discord-webhook`` client) and the message format (embeds within limits)."""
