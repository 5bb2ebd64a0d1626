"""Local stand-ins of the outside services (Discord, Telegram, Anthropic, X, Reddit) on loopback.

Tests, benchmarks and rehearsals point the platform's real client libraries at these over a real socket; each
records the requests it receives and can be scripted to answer rate limits and errors.  They bind 127.0.0.1 only.
"""
