-- The schema registry: immutable versions numbered 1, 2, 3... per name, one per fingerprint.
CREATE TABLE schema_versions (
    name        TEXT        NOT NULL,
    version     INTEGER     NOT NULL CHECK (version >= 1),
    fingerprint TEXT        NOT NULL,
    schema      JSON        NOT NULL,  -- json, not jsonb: the schema comes back as it was written
    description TEXT        NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (name, version),
    UNIQUE (name, fingerprint)
);

-- Per-name settings (compatibility mode, max_attempts, ...), as one JSON object.
CREATE TABLE schema_configs (
    name   TEXT  PRIMARY KEY,
    config JSONB NOT NULL
);
