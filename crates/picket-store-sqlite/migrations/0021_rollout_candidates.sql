-- The rollout job asks once a second which sensors to grant next. It used to read every sensor
-- a rollout concerns with a grant lookup each (4-5 s on a million sensors, inside SQLite's
-- single writer); now it counts the open grants and reads, per ring and reported version, the
-- first few sensors by id (`picket_store::rollouts::sql::COUNT_OPEN`, `pick_pending`).
-- This index serves the open grants: that count, and `expire_grants` (`state = 'granted'
-- AND deadline < now`), which read every grant ever given without it.
-- Append-only: never edit a landed file.
CREATE INDEX update_grants_state_deadline ON update_grants (state, deadline);
