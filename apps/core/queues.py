"""Queue names, one per pipeline stage (also the first part of every task name)."""

INGESTION = "ingestion"
ANALYTICS = "analytics"
SIGNALS = "signals"
RISK = "risk"
EXECUTION = "execution"
DISTRIBUTION = "distribution"
COMMENTARY = "commentary"
OPS = "ops"
ALL = (INGESTION, ANALYTICS, SIGNALS, RISK, EXECUTION, DISTRIBUTION, COMMENTARY, OPS)
