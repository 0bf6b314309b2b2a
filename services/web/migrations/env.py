from kernel.migrations import run_migrations

run_migrations()
