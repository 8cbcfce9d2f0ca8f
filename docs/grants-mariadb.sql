-- Least-privilege accounts for wfed on MariaDB / MySQL. Database: wfed.
-- (`wfectl db grants --database NAME` prints this for another database or other names.)
-- Replace the passwords (or use unix_socket / ed25519 authentication), and narrow '%' to
-- the hosts that connect. Run it as an administrator in three parts, in this order:
--   1. the migrate account (the database must exist: CREATE DATABASE wfed);
--   2. `wfectl db upgrade` under the migrate account: it creates the tables;
--   3. the daemon and operator accounts. Their grants name the tables, so before step 2
--      they fail with ERROR 1146 (Table 'wfed.workflows' doesn't exist).

-- 1. Schema migrations (`wfectl db upgrade`): DDL on wfed's database, nothing else.
CREATE USER IF NOT EXISTS 'wfed_migrate'@'%' IDENTIFIED BY 'change-me-migrate';
GRANT ALL PRIVILEGES ON wfed.* TO 'wfed_migrate'@'%';

-- 2. Now run `wfectl db upgrade` as wfed_migrate, then the rest.

-- 3. The daemon: reads and writes rows of wfed's tables (retention deletes old workflows),
-- no DDL. It records its steps' output (and clears an earlier run's), and reads the
-- schema version to refuse running on an outdated schema.
CREATE USER IF NOT EXISTS 'wfed_daemon'@'%' IDENTIFIED BY 'change-me-daemon';
GRANT SELECT, INSERT, UPDATE, DELETE ON wfed.workflows TO 'wfed_daemon'@'%';
GRANT SELECT, INSERT, UPDATE ON wfed.workflow_steps TO 'wfed_daemon'@'%';
GRANT SELECT, INSERT ON wfed.workflow_events TO 'wfed_daemon'@'%';
GRANT SELECT, INSERT, DELETE ON wfed.workflow_step_output TO 'wfed_daemon'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON wfed.daemons TO 'wfed_daemon'@'%';
GRANT SELECT ON wfed.wfed_schema_version TO 'wfed_daemon'@'%';
-- Notifications: it records a delivery per event and webhook, sends them (deleting old
-- ones), and keeps how far each webhook has read the events.
GRANT SELECT, INSERT, UPDATE, DELETE ON wfed.notification_deliveries TO 'wfed_daemon'@'%';
GRANT SELECT, INSERT, UPDATE ON wfed.notification_cursors TO 'wfed_daemon'@'%';
-- Schedules: it fires their ticks, recording each in schedule_fires.
GRANT SELECT, UPDATE ON wfed.schedules TO 'wfed_daemon'@'%';
GRANT SELECT, INSERT ON wfed.schedule_fires TO 'wfed_daemon'@'%';
-- Concurrency keys: a claim takes slots of keys (inserting their rows), an end gives
-- them up.
GRANT SELECT, INSERT, DELETE ON wfed.workflow_locks TO 'wfed_daemon'@'%';

-- 3. The operator (wfectl): reads everything; creates and deletes workflows; changes only
-- the columns that control needs; appends events but can never rewrite or delete them.
CREATE USER IF NOT EXISTS 'wfed_operator'@'%' IDENTIFIED BY 'change-me-operator';
GRANT SELECT ON wfed.* TO 'wfed_operator'@'%';
GRANT INSERT, DELETE ON wfed.workflows TO 'wfed_operator'@'%';
GRANT UPDATE (state, requested, context, current_step, last_error, run_after,
              finished_at, updated_at, window_paused) ON wfed.workflows TO 'wfed_operator'@'%';
GRANT INSERT, UPDATE (state, attempts, started_at, finished_at, error)
    ON wfed.workflow_steps TO 'wfed_operator'@'%';
GRANT INSERT ON wfed.workflow_events TO 'wfed_operator'@'%';
-- Schedules: adds, pauses, resumes and removes them (with their fired ticks).
GRANT INSERT, DELETE, UPDATE (state, next_fire_at, updated_by, updated_at)
    ON wfed.schedules TO 'wfed_operator'@'%';
GRANT DELETE ON wfed.schedule_fires TO 'wfed_operator'@'%';
-- Concurrency keys: stopping a workflow and `wfectl locks release` free its slots.
GRANT DELETE ON wfed.workflow_locks TO 'wfed_operator'@'%';
