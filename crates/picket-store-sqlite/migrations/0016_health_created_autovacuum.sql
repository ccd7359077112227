-- A health filter sorted by onboarding date as an index range (issue 2: list p99 under 50 ms
-- on a million sensors). Append-only: never edit a landed file. (PostgreSQL's 0016 also
-- lowers autovacuum thresholds on `sensors`; SQLite has no visibility map to keep fresh.)
--
-- `health_status=...&sort=-created_at`: walking `sensors_created` from the newest row passes
-- every newly onboarded sensor (all healthy) before the first unhealthy one, and the walk
-- grows with each onboarding. With `(health_rank, created_at, id)` the page reads the
-- filter's range in sort order (picket_store::query::SORTED_FILTER_INDEXES).
CREATE INDEX sensors_health_created ON sensors (health_rank, created_at, id);
