-- The example runbook (wfed/examples) enqueued with plain SQL: the shell-step spelling,
-- example_definition(python="python3", appctl="wfed/examples/appctl.py").
--
-- The paths are relative to the checkout, where `make run` runs the daemon:
--   sqlite3 wfed.db < wfed/examples/enqueue.sql      (the default config.toml)
--   mariadb wfed < wfed/examples/enqueue.sql         (MariaDB/MySQL; psql works alike)
-- then watch it: .venv/bin/wfectl --config config.toml show maint-example-1
--
-- Each "server" is a directory under `workdir`; `cmd` (an argument list) runs in each of
-- them while the app is stopped. Context values reach the commands as single arguments
-- (a list such as target_servers is spliced in): no shell ever parses them.
INSERT INTO workflows (name, steps, context)
VALUES ('maint-example-1',
'[
  {"step": "shell", "label": "stop the app", "idempotent": true,
   "args": {"cmd": ["python3", "wfed/examples/appctl.py", "stop", "{workdir}", "{target_servers}"],
            "save_as": "stop_output"}},
  {"step": "sleep", "label": "let connections drain", "args": {"seconds": "{drain_seconds}"}},
  {"step": "shell", "label": "run the maintenance command",
   "args": {"cmd": ["python3", "wfed/examples/appctl.py", "exec", "{workdir}", "{target_servers}",
                    "--", "{cmd}"],
            "timeout": 600, "save_as": "maintenance_output"}},
  {"step": "shell", "label": "start the app", "idempotent": true,
   "args": {"cmd": ["python3", "wfed/examples/appctl.py", "start", "{workdir}", "{target_servers}"],
            "save_as": "start_output"}}
]',
'{"target_servers": ["intweb1", "intweb2"], "workdir": "wfed-example", "drain_seconds": 5,
  "cmd": ["sh", "-c", "date > last-maintenance"]}');
