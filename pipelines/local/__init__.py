"""The embedded pipeline runner behind `fbrain pipeline run --local`: it executes the pipeline
definition JSON itself (the one CodePipeline upserts to SageMaker) on this machine."""
from pipelines.local.executions import ExecutionNotFound, ExecutionRecord, StepRecord, list_executions, load_execution
from pipelines.local.registry import latest_approved_model_dir, resolve_champion
from pipelines.local.runner import PlannedStep, RunnerError, plan_pipeline, run_pipeline
from pipelines.local.settings import RunnerSettings

__all__ = [
    "ExecutionNotFound", "ExecutionRecord", "PlannedStep", "RunnerError", "RunnerSettings", "StepRecord",
    "latest_approved_model_dir", "list_executions", "load_execution", "plan_pipeline", "resolve_champion",
    "run_pipeline",
]
