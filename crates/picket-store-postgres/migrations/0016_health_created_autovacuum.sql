-- A health filter sorted by onboarding date as an index range, and autovacuum that keeps
-- the sensors table's visibility map fresh on a big fleet (issue 2: list p99 under 50 ms on
-- a million sensors). Append-only: never edit a landed file.
--
-- 1. `health_status=...&sort=-created_at`: walking `sensors_created` from the newest row
--    passes every newly onboarded sensor (all healthy) before the first unhealthy one, and
--    the walk grows with each onboarding. With `(health_rank, created_at, id)` the page
--    reads the filter's range in sort order (picket_store::query::SORTED_FILTER_INDEXES).
CREATE INDEX sensors_health_created ON sensors (health_rank, created_at, id);

-- 2. The exact `total` of a list is an index-only scan, which reads the heap for every entry
--    on a page whose visibility-map bit is clear (every page written since the last VACUUM;
--    ~5 us a page when cached, so 20,000 fetches are ~100 ms). By default autovacuum vacuums
--    a table once its dead rows pass 50 + 20 % of its rows (200,000 on a million sensors,
--    pages that hold ~19 rows each: nearly every page can be dirty before it runs) and after
--    inserts past 1,000 + 20 %. PostgreSQL's docs (Routine Vacuuming, "The Autovacuum
--    Daemon" and "Updating the Visibility Map"; CREATE TABLE, Storage Parameters) let a big,
--    busy table lower its own thresholds. Dead rows land on random pages, so the threshold
--    is about the number of dirty pages: 1,000 + 0.2 % (~3,000 on a million sensors, 6-12 % of
--    the pages with the new row versions) keeps a count's heap fetches to ~10 % of its rows. It stays
--    above PostgreSQL 14+'s 2 % bypass (below it a vacuum skips the index pass and leaves
--    those pages out of the map). Inserts: 1,000 + 1 % (onboarded rows on the last pages);
--    statistics: 1,000 + 2 %. A small fleet vacuums after ~1,000 changes, never per write, and
--    the vacuum stays cost-throttled (autovacuum_vacuum_cost_delay). Heartbeats rewrite
--    `last_seen_at` on every sensor every interval, so on a live fleet pages are dirtied again
--    between vacuums whatever the setting: this bounds how stale the map gets after bursts,
--    it does not keep it clean under full heartbeat load (see BENCHMARKS.md, issue 2).
ALTER TABLE sensors SET (
    autovacuum_vacuum_scale_factor = 0.002,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_analyze_threshold = 1000
);
