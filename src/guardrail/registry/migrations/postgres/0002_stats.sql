-- Conformance stats: per-minute rollups that every instance adds to, so any instance can read
-- cluster-wide totals. Histograms are dense arrays of bucket counts (guardrail.stats.model);
-- adding two rollups adds them element by element.
CREATE TABLE stats_rollups (
    minute            BIGINT   NOT NULL,  -- unix seconds at the start of the minute, UTC
    schema            TEXT     NOT NULL,
    version           TEXT     NOT NULL,
    model             TEXT     NOT NULL,
    outcome           TEXT     NOT NULL,
    count             BIGINT   NOT NULL,
    attempts          BIGINT   NOT NULL,
    prompt_tokens     BIGINT   NOT NULL,
    completion_tokens BIGINT   NOT NULL,
    latency           BIGINT[] NOT NULL,
    upstream_latency  BIGINT[] NOT NULL,
    PRIMARY KEY (minute, schema, version, model, outcome)
);

CREATE TABLE stats_paths (
    minute  BIGINT NOT NULL,
    schema  TEXT   NOT NULL,
    version TEXT   NOT NULL,
    model   TEXT   NOT NULL,
    outcome TEXT   NOT NULL,
    path    TEXT   NOT NULL,
    keyword TEXT   NOT NULL,
    count   BIGINT NOT NULL,
    PRIMARY KEY (minute, schema, version, model, outcome, path, keyword)
);

-- Redacted failing outputs, newest kept per (schema, version).
CREATE TABLE stats_samples (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         DOUBLE PRECISION NOT NULL,
    request_id TEXT   NOT NULL,
    schema     TEXT   NOT NULL,
    version    TEXT   NOT NULL,
    model      TEXT   NOT NULL,
    outcome    TEXT   NOT NULL,
    attempts   INTEGER NOT NULL,
    errors     JSONB  NOT NULL,  -- [[path, keyword, message], ...]
    output     TEXT,
    redaction  TEXT   NOT NULL,
    digest     TEXT
);
CREATE INDEX stats_samples_by_schema ON stats_samples (schema, version, id);

-- Element-wise sum of two histograms (a missing bucket counts as 0).
CREATE FUNCTION guardrail_add_buckets(a BIGINT[], b BIGINT[]) RETURNS BIGINT[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i), '{}')
    FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i)
$$;
