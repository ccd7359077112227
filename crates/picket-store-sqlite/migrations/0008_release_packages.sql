-- Published releases carry their package: digest, size, signed manifest, signing key and
-- publisher on the row; the bytes in 1 MiB chunks keyed by the package's SHA-256, so every
-- replica serves them and a byte range reads only the chunks it covers.
ALTER TABLE releases ADD COLUMN sha256 TEXT;
ALTER TABLE releases ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE releases ADD COLUMN manifest TEXT NOT NULL DEFAULT '{}';
ALTER TABLE releases ADD COLUMN signing_key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE releases ADD COLUMN published_by TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX releases_sha256 ON releases (sha256);

CREATE TABLE release_chunks (
    sha256 TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (sha256, seq)
);
