"""The EventGuard workers. Each subpackage exposes ``create(ctx: WorkerContext) -> Service``."""
