-- Alerts, signed webhooks and digests (issue 23).

-- What the rollup's monitor keeps per experiment between ticks: the sequential SRM test's state
-- (abtest.stats.sequential_srm, as JSON), the users per tested variant it has already seen (each check
-- adds the difference), the chi-squared p-value of the totals, and when exposures last grew.
CREATE TABLE experiment_monitor (
    experiment_id    uuid PRIMARY KEY REFERENCES experiments (id) ON DELETE CASCADE,
    variant_ids      uuid[] NOT NULL,
    srm_state        jsonb,
    seen_users       bigint[] NOT NULL,
    seen_exposures   bigint NOT NULL DEFAULT 0,
    -- The attributed conversions the last results evaluation saw: unchanged statistics are not
    -- analysed again (their conditions cannot have changed).
    seen_conversions bigint NOT NULL DEFAULT 0,
    chi2_p           double precision,
    last_exposure_at timestamptz,
    checked_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per experiment and UTC day: the two SRM p-values at the day's last check (the time series).
CREATE TABLE srm_daily (
    experiment_id uuid NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    day           date NOT NULL,
    sequential_p  double precision NOT NULL,
    chi2_p        double precision,
    PRIMARY KEY (experiment_id, day)
);

-- Stored alerts with their evidence. No foreign key to experiments: an alert is history.
CREATE TABLE alerts (
    id            uuid PRIMARY KEY,
    experiment_id uuid,
    kind          text NOT NULL,
    subject       text NOT NULL DEFAULT '',
    evidence      jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX alerts_time_idx ON alerts (created_at DESC, id DESC);
CREATE INDEX alerts_experiment_idx ON alerts (experiment_id, created_at DESC, id DESC);
CREATE INDEX alerts_kind_idx ON alerts (kind, created_at DESC, id DESC);

-- Each condition's state at the last evaluation: an alert fires on a transition only.
CREATE TABLE alert_conditions (
    experiment_id uuid NOT NULL,
    kind          text NOT NULL,
    subject       text NOT NULL DEFAULT '',
    active        boolean NOT NULL,
    value         jsonb,
    changed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment_id, kind, subject)
);

-- The outbox: written in the transaction that stores the alert; the relay fans it out to the webhooks
-- and the event bus, then sets relayed_at (at least once: a crash before that relays it again).
CREATE TABLE alert_outbox (
    alert_id   uuid PRIMARY KEY REFERENCES alerts (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    relayed_at timestamptz
);
CREATE INDEX alert_outbox_pending_idx ON alert_outbox (created_at) WHERE relayed_at IS NULL;

-- Subscriptions. The secret is stored encrypted (KMS in AWS, a local key), never hashed: signing
-- needs it in clear.
CREATE TABLE webhooks (
    id                   uuid PRIMARY KEY,
    url                  text NOT NULL,
    kinds                text[] NOT NULL,
    digest               jsonb,
    description          text NOT NULL DEFAULT '',
    secret_ciphertext    bytea NOT NULL,
    -- After a rotation the old secret still signs (beside the new one) until previous_secret_until,
    -- so receivers can switch without dropping deliveries.
    previous_secret_ciphertext bytea,
    previous_secret_until      timestamptz,
    enabled              boolean NOT NULL DEFAULT true,
    disabled_reason      text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_digest_at       timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- One message per webhook and alert (or digest, or test): its id is the webhook-id of every attempt.
-- UNIQUE (webhook_id, alert_id): relaying an alert again never makes a second message with a new id.
CREATE TABLE webhook_messages (
    id              text PRIMARY KEY,
    webhook_id      uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    alert_id        uuid REFERENCES alerts (id) ON DELETE CASCADE,
    type            text NOT NULL,
    body            text NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    delivered_at    timestamptz,
    CONSTRAINT webhook_messages_status_check CHECK (status IN ('pending', 'delivered', 'failed')),
    CONSTRAINT webhook_messages_alert_key UNIQUE (webhook_id, alert_id)
);
CREATE INDEX webhook_messages_due_idx ON webhook_messages (next_attempt_at) WHERE status = 'pending';

-- The delivery log: one row per attempt.
CREATE TABLE webhook_deliveries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id   text NOT NULL REFERENCES webhook_messages (id) ON DELETE CASCADE,
    webhook_id   uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    status_code  integer,
    ok           boolean NOT NULL,
    error        text,
    duration_ms  integer
);
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, id DESC);
