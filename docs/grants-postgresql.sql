-- Least-privilege roles for wfed on PostgreSQL. Database: wfed, schema: public.
-- (`wfectl db grants --database NAME` prints this for another database or other names.)
-- Replace the passwords (or use peer / certificate authentication in pg_hba.conf). Run it
-- as an administrator connected to that database (psql -d wfed; it must exist: CREATE
-- DATABASE wfed), in three parts, in this order:
--   1. the migrate role;
--   2. `wfectl db upgrade` under the migrate role: it creates the tables, and owns them;
--   3. the daemon and operator roles. Their grants name the tables, so before step 2
--      they fail (relation "workflows" does not exist).

-- 1. Schema migrations (`wfectl db upgrade`): creates and alters wfed's tables in the
-- public schema, and owns them. Before PostgreSQL 15, every role may create tables in
-- the public schema: no more.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
CREATE ROLE wfed_migrate LOGIN PASSWORD 'change-me-migrate';
GRANT CONNECT ON DATABASE wfed TO wfed_migrate;
GRANT USAGE, CREATE ON SCHEMA public TO wfed_migrate;

-- 2. Now run `wfectl db upgrade` as wfed_migrate, then the rest.

-- 3. The daemon: reads and writes rows of wfed's tables (retention deletes old workflows;
-- their steps go with them through the foreign key), no DDL. It records its steps'
-- output (and clears an earlier run's), and reads the schema version to refuse running
-- on an outdated schema. The sequences give new rows their ids.
CREATE ROLE wfed_daemon LOGIN PASSWORD 'change-me-daemon';
GRANT CONNECT ON DATABASE wfed TO wfed_daemon;
GRANT USAGE ON SCHEMA public TO wfed_daemon;
GRANT SELECT, INSERT, UPDATE, DELETE ON workflows TO wfed_daemon;
GRANT SELECT, INSERT, UPDATE ON workflow_steps TO wfed_daemon;
GRANT SELECT, INSERT ON workflow_events TO wfed_daemon;
GRANT SELECT, INSERT, DELETE ON workflow_step_output TO wfed_daemon;
GRANT SELECT, INSERT, UPDATE, DELETE ON daemons TO wfed_daemon;
GRANT SELECT ON wfed_schema_version TO wfed_daemon;
-- Notifications: it records a delivery per event and webhook, sends them (deleting old
-- ones), and keeps how far each webhook has read the events.
GRANT SELECT, INSERT, UPDATE, DELETE ON notification_deliveries TO wfed_daemon;
GRANT SELECT, INSERT, UPDATE ON notification_cursors TO wfed_daemon;
GRANT USAGE ON SEQUENCE notification_deliveries_id_seq TO wfed_daemon;
-- Schedules: it fires their ticks, recording each in schedule_fires.
GRANT SELECT, UPDATE ON schedules TO wfed_daemon;
GRANT SELECT, INSERT ON schedule_fires TO wfed_daemon;
-- Concurrency keys: a claim takes slots of keys (inserting their rows), an end gives
-- them up.
GRANT SELECT, INSERT, DELETE ON workflow_locks TO wfed_daemon;
GRANT USAGE ON SEQUENCE workflows_id_seq, workflow_steps_id_seq, workflow_events_id_seq,
    workflow_step_output_id_seq TO wfed_daemon;

-- 3. The operator (wfectl): reads everything; creates and deletes workflows; changes only
-- the columns that control needs; appends events but can never rewrite or delete them.
CREATE ROLE wfed_operator LOGIN PASSWORD 'change-me-operator';
GRANT CONNECT ON DATABASE wfed TO wfed_operator;
GRANT USAGE ON SCHEMA public TO wfed_operator;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO wfed_operator;
GRANT INSERT, DELETE ON workflows TO wfed_operator;
GRANT UPDATE (state, requested, context, current_step, last_error, run_after,
              finished_at, updated_at, window_paused) ON workflows TO wfed_operator;
GRANT INSERT, UPDATE (state, attempts, started_at, finished_at, error)
    ON workflow_steps TO wfed_operator;
GRANT INSERT ON workflow_events TO wfed_operator;
GRANT USAGE ON SEQUENCE workflows_id_seq, workflow_steps_id_seq, workflow_events_id_seq
    TO wfed_operator;
-- Schedules: adds, pauses, resumes and removes them (with their fired ticks).
GRANT INSERT, DELETE, UPDATE (state, next_fire_at, updated_by, updated_at)
    ON schedules TO wfed_operator;
GRANT DELETE ON schedule_fires TO wfed_operator;
GRANT USAGE ON SEQUENCE schedules_id_seq TO wfed_operator;
-- Concurrency keys: stopping a workflow and `wfectl locks release` free its slots.
GRANT DELETE ON workflow_locks TO wfed_operator;
