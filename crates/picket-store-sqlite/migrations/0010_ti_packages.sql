-- Published threat-intelligence packages: integer version (only goes up), digest, size,
-- signed manifest, indicator count, signing key, publisher, signing and publishing times;
-- the bytes in 1 MiB chunks keyed by the package's SHA-256 (as release packages keep theirs),
-- so every replica serves them and a byte range reads only the chunks it covers.
CREATE TABLE ti_packages (
    version INTEGER PRIMARY KEY,
    created_at INTEGER NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    manifest TEXT NOT NULL,
    indicator_count INTEGER NOT NULL,
    signing_key_id TEXT NOT NULL,
    published_by TEXT NOT NULL,
    signed_at INTEGER NOT NULL
);
CREATE INDEX ti_packages_created ON ti_packages (created_at);

CREATE TABLE ti_package_chunks (
    sha256 TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (sha256, seq)
);
