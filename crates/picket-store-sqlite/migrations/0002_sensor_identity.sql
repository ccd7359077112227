-- Sensor identity and liveness (issue 3): the resources a sensor reports in its heartbeats.
-- Activation reuses the columns of 0001 (activation_token_hash, cert_fingerprint UNIQUE).
ALTER TABLE sensors ADD COLUMN rss_bytes INTEGER;
ALTER TABLE sensors ADD COLUMN cpu_permille INTEGER;
