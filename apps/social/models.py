"""Social queue: posts for X and Reddit drafted from trades and reports (built in the social-queue work)."""
