-- Every first page of a filtered, sorted list as an index range on a million sensors
-- (issue 2: p99 under 50 ms; issue 5: the Sensors page under 100 ms). Append-only: never
-- edit a landed file.
--
-- 1. A filter on one value with the sort that the data bunches it in. Walking the sort
--    index and checking the filter per row (what a page does when many sensors match) stops
--    after `limit` matches only if the matches are spread over the sort order. Names begin
--    with the sensor's type (`adfs...`, `dc...`), so the first domain controller by name
--    comes after every ADFS sensor; locally managed sensors are never seen, so by
--    `-last_seen_at` they all come last. With `(column, sort, id)` the page reads the
--    filter's range in sort order (picket_store::query::SORTED_FILTER_INDEXES). The portal
--    sorts by name unless asked otherwise, so the choice filters that group sensors the way
--    names tend to (type, mode, zone) and health get one with the name; subscription and
--    status have theirs already (sensors_subscription_name, sensors_status_name).
CREATE INDEX sensors_type_name ON sensors (sensor_type, name_lower, id);
CREATE INDEX sensors_mode_name ON sensors (mode, name_lower, id);
CREATE INDEX sensors_zone_name ON sensors (zone, name_lower, id);
CREATE INDEX sensors_health_name ON sensors (health_rank, name_lower, id);
CREATE INDEX sensors_mode_last_seen ON sensors (mode, (COALESCE(last_seen_at, -1)), id);

-- 2. The sort keys that had no `(sort expression, id)` index: a first page sorted on them
--    sorted the whole table. (`sensor_status` depends on `now`: it cannot be indexed.)
CREATE INDEX sensors_subscription_sort ON sensors (subscription, id);
CREATE INDEX sensors_mode_sort ON sensors (mode, id);
CREATE INDEX sensors_service_status_sort ON sensors (service_status, id);
CREATE INDEX sensors_tags_sort ON sensors (tags, id);
CREATE INDEX sensors_open_issues_sort ON sensors (open_issues, id);
CREATE INDEX sensors_delayed_sort ON sensors ((CASE WHEN delayed_update THEN 1 ELSE 0 END), id);

-- Statistics for the expression indexes (the planner's estimates of their ranges).
ANALYZE sensors;
