"""Interactive Brokers: the connection owner, contracts, and the TWS simulator used in tests."""
