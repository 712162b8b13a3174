"""Configuration of serving and generative responses (sections of FeedbackBrainConfig)."""
from __future__ import annotations

import typing
from typing import Annotated, Literal

from pydantic import Field

from processing.settings import settings_section


Runtime = Literal["onnx-int8", "onnx", "torch"]
"""How inference.predictor runs the model (the endpoint, the live loop's scorer, the text monitor)."""
RUNTIMES: tuple[str, ...] = typing.get_args(Runtime)


@settings_section
class ServingConfig:
    # --- HTTP server (SageMaker bring-your-own-container contract) ---
    host: str = "127.0.0.1"
    """Address uvicorn binds to; the container entry point binds 0.0.0.0."""
    port: int = 8080
    """SageMaker sends /ping and /invocations to port 8080."""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    """Level of the structured (JSON) request log."""

    # --- runtime ---
    runtime: Runtime = "onnx-int8"
    """`onnx-int8` (onnx/model.int8.onnx), `onnx` (onnx/model.onnx) or `torch` (HF weights, GPU if present)."""
    onnx_intra_op_threads: int = 2
    """ONNX Runtime threads per batch; 2 matches the 2-core machine and an ml.c6i.large."""
    onnx_inter_op_threads: int = 1
    """ONNX Runtime threads across graph branches; the encoder is sequential, so 1."""
    onnx_allow_spinning: bool = False
    """Let idle ONNX Runtime threads spin-wait: ~2 ms lower single-text latency, but fewer requests/s under
    concurrent load (spinning threads take the core from the HTTP loop), so off (docs/results.md)."""
    onnx_single_text_session: bool = True
    """Run one-text model calls on a second ONNX Runtime session whose threads spin-wait, batches on the
    main one: a lone request gets spinning's latency, while under load (merged batches) the spinning
    session is mostly idle. Costs a second copy of the weights in memory (measurements: docs/results.md)."""
    sub_batch_size: int = 8
    """Most texts in one model call: a batch runs as length-sorted groups, so short texts are not padded to long ones."""
    group_call_overhead_tokens: float = 0.0
    """0: fixed groups of `sub_batch_size`. Above 0: groups are cut where the padding they save is worth more
    than one extra model call costing this many padded tokens. Faster, but dynamic int8 quantisation scales
    activations per call, so scores would move with the grouping: off until activations are statically
    calibrated (docs/results.md)."""
    torch_threads: int = 2
    """torch.set_num_threads for the PyTorch runtime on CPU."""
    flag_lexicon: str = ""
    """Keyword lexicon file for the rule-based flags; empty means inference/lexicons/flags_v1.json."""

    # --- micro-batching ---
    max_batch_size: int = 32
    """Texts merged into one model call across concurrent requests."""
    max_batch_wait_ms: float = 1.0
    """How long the first queued text waits for others before its batch runs."""
    adaptive_batch_wait: bool = True
    """Wait only while requests overlap (the last batch merged several); a lone client's requests run at once."""
    max_queue_texts: int = 4096
    """Texts waiting for the model at most; beyond it requests get 503 (back-pressure)."""

    # --- request limits ---
    max_payload_bytes: int = 6 * 1024 * 1024
    """Request bodies above this get 413 (SageMaker real-time endpoints cap payloads at 6 MB)."""
    max_instances_per_request: int = 1000
    """Texts in one request at most (400 above it)."""
    max_text_chars: int = 20_000
    """A text longer than this (characters) is refused, whatever `overlength`: 400 on /invocations, 413 on
    /responses and /summaries (inference.replies.api; the text drafted for is the text scored)."""
    max_summary_items: int = 500
    """Feedback items in one /summaries cluster at most (400 above it): the summary prompt quotes
    representatives of the whole cluster, so its cost grows with the items."""
    max_seq_length: int = 0
    """Tokens per text; 0 means the model's max_seq_length from fbrain_model.json."""
    overlength: Literal["truncate", "reject"] = "truncate"
    """Texts longer than max_seq_length tokens: `truncate` (answer with truncated=true) or `reject` (400)."""

    # --- data capture (local emulation of SageMaker's DataCaptureConfig) ---
    capture_dir: str = ""
    """Root of captured files (`<root>/<endpoint>/<variant>/yyyy/mm/dd/hh/`); empty disables capture."""
    capture_sampling_percentage: Annotated[float, Field(ge=0.0, le=100.0)] = 100.0
    """Share of requests captured, 0-100 (SageMaker's InitialSamplingPercentage)."""
    capture_queue_size: int = 1000
    """Captured requests waiting for the writer thread; when full, new ones are dropped and counted."""
    capture_max_records_per_file: int = 1000
    """A capture file is closed and a new one started after this many records (and every hour)."""
    endpoint_name: str = "feedback-brain"
    """Endpoint name in capture keys and in the model's metadata."""
    variant_name: str = "AllTraffic"
    """Production variant name in capture keys and endpoint configs."""

    # --- AWS deployment (inference/deploy.py) ---
    deploy_instance_count: int = 1
    """Initial instances of the production variant."""
    autoscaling_min_instances: int = 1
    """Application Auto Scaling MinCapacity."""
    autoscaling_max_instances: int = 4
    """Application Auto Scaling MaxCapacity."""
    autoscaling_target_invocations: float = 700.0
    """Target of SageMakerVariantInvocationsPerInstance (invocations per instance per minute)."""
    autoscaling_scale_in_cooldown_s: int = 300
    """Seconds between scale-in activities."""
    autoscaling_scale_out_cooldown_s: int = 60
    """Seconds between scale-out activities."""
    rollout_mode: Literal["canary", "linear", "all_at_once"] = "canary"
    """Blue/green traffic shifting: `canary`, `linear` or `all_at_once`."""
    rollout_step_percent: int = 10
    """Canary size, or the linear step size, in percent of capacity."""
    rollout_wait_s: int = 300
    """Seconds between traffic-shifting steps (WaitIntervalInSeconds)."""
    rollout_termination_wait_s: int = 300
    """Seconds the old fleet is kept after the shift completes (TerminationWaitInSeconds)."""
    rollback_5xx_errors: int = 5
    """Rollback alarm: more than this many Invocation5XXErrors per minute."""
    rollback_p99_latency_ms: float = 250.0
    """Rollback alarm: p99 ModelLatency above this, in milliseconds."""
    rollback_evaluation_minutes: int = 2
    """Consecutive one-minute periods an alarm condition must hold before it fires."""


@settings_section
class GenerativeConfig:
    use_bedrock: bool = False
    """Draft with Amazon Bedrock; False (the local default) uses the playbook templates."""
    bedrock_model_id: str = "anthropic.claude-3-haiku-20240307-v1:0"
    region: str = "us-east-1"
    max_tokens: int = 400
    temperature: float = 0.2
    top_p: float = 0.9
    guardrail_id: str = ""
    """Bedrock guardrail identifier; empty means no guardrail."""
    guardrail_version: str = "DRAFT"
    max_attempts: int = 4
    """Calls per request, the first included, when Bedrock throttles or is unavailable."""
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 8.0
    connect_timeout_seconds: float = 3.0
    read_timeout_seconds: float = 30.0
    input_price_per_1k_tokens: float = 0.00025
    """USD, for the cost recorded per call (defaults: Claude 3 Haiku on-demand)."""
    output_price_per_1k_tokens: float = 0.00125
    prompt_version: str = "v1"
    """Folder under inference/replies/prompts/ holding the prompt templates."""
    playbook_version: str = "v1"
    max_reply_chars: int = 1200
    min_reply_chars: int = 40
    second_stage_margin: float = 0.2
    """Send an item to the LLM when top-1 minus top-2 probability is below this."""
    high_value_order_threshold: float = 500.0
    """Order value (USD) above which an item counts as high value for second-stage scoring."""
    summary_quotes: int = 3
    """Representative quotes per cluster summary."""
    max_reply_aspects: int = 2
    """Aspects a template reply addresses at most (most likely first): a reply, not a report."""
