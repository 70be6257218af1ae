"""Scenario tables shared by the unit and the integration suites: one table, run against the in-memory
fake and against the real statement on PostgreSQL, so the two cannot drift apart unnoticed."""
