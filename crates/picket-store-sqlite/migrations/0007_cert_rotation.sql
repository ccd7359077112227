-- Two-phase certificate rotation (issue 3): the certificate a sensor proposed (authenticated
-- with its pinned one) waits here until it confirms over a connection presenting it; the
-- pinned certificate's expiry is kept for the cert_expiring health issue.
ALTER TABLE sensors ADD COLUMN pending_cert_fingerprint TEXT;
ALTER TABLE sensors ADD COLUMN pending_cert_expires_at INTEGER;
ALTER TABLE sensors ADD COLUMN cert_expires_at INTEGER;
CREATE UNIQUE INDEX sensors_pending_cert_fingerprint ON sensors (pending_cert_fingerprint);
CREATE INDEX sensors_cert_expires_at ON sensors (cert_expires_at);
