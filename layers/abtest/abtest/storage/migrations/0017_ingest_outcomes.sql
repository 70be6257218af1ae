-- Buffered ingestion (issue 27): what the ingest writer decided for each queued event, readable by its
-- id (GET /api/v1/events/outcome). The first decision stays: a redelivered message finds its events
-- already stored and changes nothing here (ON CONFLICT DO NOTHING). Rows older than
-- INGEST_OUTCOME_RETENTION_DAYS are pruned by the writer.
CREATE TABLE IF NOT EXISTS ingest_outcomes (
    experiment_id uuid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('exposure', 'conversion')),
    event_id text NOT NULL,
    status text NOT NULL CHECK (status IN ('accepted', 'duplicate', 'rejected')),
    error text,
    message text,
    queue_message_id text,
    decided_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment_id, event_id, kind)
);

CREATE INDEX IF NOT EXISTS ingest_outcomes_decided_at ON ingest_outcomes (decided_at);
