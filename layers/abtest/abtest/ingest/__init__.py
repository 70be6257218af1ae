"""Buffered ingestion (INGEST_MODE=buffered): the door queues, the writer stores.

`messages` (pure) turns accepted requests into queue messages and back; `queue` sends them (SQS, or an
in-process queue on the local server); `writer` stores each message's events in one statement with the
same rules as direct ingestion, and records every event's outcome (Powertools' batch utilities report
the messages that failed, so a poisoned message never blocks its batch).
"""
