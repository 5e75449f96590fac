-- The archive of finished runs (issue 20). Every table lives in the schema named by the
-- coordinator's `archive_schema` (the connection's search_path), so names here are unqualified.
--
-- Every table is partitioned by RANGE on the run's finish time, one partition per UTC day
-- (`<table>_pYYYYMMDD`, created ahead by the coordinator), with a DEFAULT partition as a safety
-- net for a run whose day has no partition yet. Retention drops whole day partitions of all five
-- tables together. The child tables carry the run's finish time (`run_finished_at`) so that a
-- run's rows always sit in partitions of the same day and go together; they have no foreign keys
-- to `runs` (a foreign key would forbid dropping a referenced partition on its own, and every row
-- is written in the run's own transaction).

-- One row per archived run. `run` is the encoded `baton.v1.Run` (the whole GetRun answer, every
-- step and kept attempt), so an archived GetRun answers exactly what Redis answered; the other
-- columns are what search filters on.
CREATE TABLE runs (
    namespace       text        NOT NULL,
    -- Byte order (COLLATE "C"), the order of ListRuns' page tokens and of the Redis index.
    run_id          text        COLLATE "C" NOT NULL,
    workflow        text        NOT NULL,
    version         integer     NOT NULL,
    -- succeeded, failed, cancelled, timed_out
    status          text        NOT NULL,
    created_at      timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz NOT NULL,
    parent_run_id   text,
    parent_step_id  text,
    idempotency_key text,
    error           text,
    -- The distinct error types of the run's failed attempts.
    error_types     text[]      NOT NULL DEFAULT '{}',
    input           jsonb,
    output          jsonb,
    run             bytea       NOT NULL,
    -- The encoded `baton.v1.Run` without its steps: what ListRuns answers for it.
    summary         bytea       NOT NULL,
    archived_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, run_id, finished_at)
) PARTITION BY RANGE (finished_at);

-- Keyset pages: newest first by (created_at, run_id) within a namespace.
CREATE INDEX runs_page ON runs (namespace, created_at DESC, run_id DESC);
CREATE INDEX runs_status ON runs (namespace, status, created_at DESC);
CREATE INDEX runs_workflow ON runs (namespace, workflow, created_at DESC);
CREATE INDEX runs_parent ON runs (namespace, parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_idempotency_key ON runs (namespace, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_error_types ON runs USING gin (error_types);
CREATE INDEX runs_input ON runs USING gin (input jsonb_path_ops);
CREATE INDEX runs_output ON runs USING gin (output jsonb_path_ops);
-- GetRun of an archived run is served by the primary key's (namespace, run_id) prefix.

-- One row per step of an archived run, in definition order (`position`).
CREATE TABLE steps (
    namespace        text        NOT NULL,
    run_id           text        NOT NULL,
    run_finished_at  timestamptz NOT NULL,
    step_id          text        NOT NULL,
    position         integer     NOT NULL,
    handler          text        NOT NULL,
    kind             text        NOT NULL,
    -- pending, dispatched, running, retrying, waiting, succeeded, failed, skipped, cancelled
    status           text        NOT NULL,
    attempt          integer     NOT NULL,
    output           jsonb,
    error            text,
    started_at       timestamptz,
    finished_at      timestamptz,
    PRIMARY KEY (namespace, run_id, step_id, run_finished_at)
) PARTITION BY RANGE (run_finished_at);

-- One row per kept attempt of a step of an archived run.
CREATE TABLE attempts (
    namespace        text        NOT NULL,
    run_id           text        NOT NULL,
    run_finished_at  timestamptz NOT NULL,
    step_id          text        NOT NULL,
    number           integer     NOT NULL,
    -- succeeded, failed, timed_out
    outcome          text        NOT NULL,
    worker           text,
    input            jsonb,
    error            text,
    error_type       text,
    error_details    text,
    started_at       timestamptz,
    finished_at      timestamptz,
    PRIMARY KEY (namespace, run_id, step_id, number, run_finished_at)
) PARTITION BY RANGE (run_finished_at);

CREATE INDEX attempts_error_type ON attempts (namespace, error_type) WHERE error_type IS NOT NULL;

-- A run's history (the events WatchRun replays), oldest first (`position`). `event` is the
-- encoded `baton.v1.RunEvent`, replayed as it was.
CREATE TABLE run_events (
    namespace        text        NOT NULL,
    run_id           text        NOT NULL,
    run_finished_at  timestamptz NOT NULL,
    position         integer     NOT NULL,
    sequence         text        NOT NULL,
    time             timestamptz,
    kind             text        NOT NULL,
    step_id          text,
    status           text,
    detail           text,
    payload          jsonb,
    event            bytea       NOT NULL,
    PRIMARY KEY (namespace, run_id, position, run_finished_at)
) PARTITION BY RANGE (run_finished_at);

-- The human tasks of an archived run. `task` is the encoded `baton.v1.HumanTask`.
CREATE TABLE human_tasks (
    namespace        text        NOT NULL,
    run_id           text        NOT NULL,
    run_finished_at  timestamptz NOT NULL,
    step_id          text        NOT NULL,
    workflow         text        NOT NULL,
    -- open, completed, cancelled
    status           text        NOT NULL,
    assignees        text[]      NOT NULL DEFAULT '{}',
    created_at       timestamptz,
    completed_by     text,
    completed_at     timestamptz,
    data             jsonb,
    task             bytea       NOT NULL,
    PRIMARY KEY (namespace, run_id, step_id, run_finished_at)
) PARTITION BY RANGE (run_finished_at);

CREATE INDEX human_tasks_status ON human_tasks (namespace, status, created_at DESC);
CREATE INDEX human_tasks_assignees ON human_tasks USING gin (assignees);

CREATE TABLE runs_default PARTITION OF runs DEFAULT;
CREATE TABLE steps_default PARTITION OF steps DEFAULT;
CREATE TABLE attempts_default PARTITION OF attempts DEFAULT;
CREATE TABLE run_events_default PARTITION OF run_events DEFAULT;
CREATE TABLE human_tasks_default PARTITION OF human_tasks DEFAULT;

-- Runs the writer could not store as rows (a value PostgreSQL refuses even after the writer's
-- own clean-up), kept whole with the reason so that nothing is lost: GetRun still answers them.
-- Not partitioned (a handful of rows); retention deletes them by `parked_at`.
CREATE TABLE parked_runs (
    namespace   text        NOT NULL,
    run_id      text        NOT NULL,
    reason      text        NOT NULL,
    run         bytea       NOT NULL,
    history     bytea[]     NOT NULL DEFAULT '{}',
    human_tasks bytea[]     NOT NULL DEFAULT '{}',
    error_types text[]      NOT NULL DEFAULT '{}',
    parked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, run_id)
);
