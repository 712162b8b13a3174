"""Amazon Bedrock through the bedrock-runtime Converse API: retries, timeouts, usage and cost.

Every caller passes text that is already PII-masked; this client only talks to Bedrock. It
retries throttling and transient errors with capped exponential backoff and raises
`BedrockUnavailable` when it gives up, so callers can fall back to templates.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from inference.config import GenerativeConfig

LOG = logging.getLogger(__name__)
RETRYABLE_ERRORS = frozenset({
    "ThrottlingException", "ServiceUnavailableException", "ModelNotReadyException",
    "InternalServerException", "ModelTimeoutException",
})


class BedrockUnavailable(RuntimeError):
    """Bedrock could not answer (after retries, or with a non-retryable error)."""

    def __init__(self, message: str, error_code: str | None = None, attempts: int = 0):
        super().__init__(message)
        self.error_code = error_code
        self.attempts = attempts


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class ConverseResult:
    text: str
    stop_reason: str
    usage: Usage
    latency_ms: float
    attempts: int
    model_id: str


@dataclass
class UsageLedger:
    """Running totals of what this process spent on Bedrock."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    failures: int = 0
    entries: list[dict[str, Any]] = field(default_factory=list)

    def record(self, purpose: str, result: ConverseResult) -> None:
        self.calls += 1
        self.input_tokens += result.usage.input_tokens
        self.output_tokens += result.usage.output_tokens
        self.cost_usd += result.usage.cost_usd
        self.entries.append({"purpose": purpose, "model_id": result.model_id, "latency_ms": round(result.latency_ms, 1),
                             "input_tokens": result.usage.input_tokens, "output_tokens": result.usage.output_tokens,
                             "cost_usd": result.usage.cost_usd, "attempts": result.attempts})


def make_runtime_client(config: GenerativeConfig):
    """A bedrock-runtime client with our timeouts and botocore's own retries off (we retry)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "bedrock-runtime",
        region_name=config.region,
        config=Config(connect_timeout=config.connect_timeout_seconds, read_timeout=config.read_timeout_seconds,
                      retries={"max_attempts": 1, "mode": "standard"}),
    )


class BedrockClient:
    def __init__(self, config: GenerativeConfig, client=None, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self._client = client
        self._sleep = sleep
        self.ledger = UsageLedger()

    @property
    def client(self):
        if self._client is None:
            self._client = make_runtime_client(self.config)
        return self._client

    def converse_request(self, system: str, user_text: str) -> dict[str, Any]:
        request: dict[str, Any] = {
            "modelId": self.config.bedrock_model_id,
            "system": [{"text": system}],
            "messages": [{"role": "user", "content": [{"text": user_text}]}],
            "inferenceConfig": {"maxTokens": self.config.max_tokens, "temperature": self.config.temperature,
                                "topP": self.config.top_p},
        }
        if self.config.guardrail_id:
            request["guardrailConfig"] = {"guardrailIdentifier": self.config.guardrail_id,
                                          "guardrailVersion": self.config.guardrail_version}
        return request

    def converse(self, system: str, user_text: str, purpose: str = "converse") -> ConverseResult:
        from botocore.exceptions import BotoCoreError, ClientError

        request = self.converse_request(system, user_text)
        started = time.monotonic()
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                response = self.client.converse(**request)
                break
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in RETRYABLE_ERRORS or attempt == self.config.max_attempts:
                    self.ledger.failures += 1
                    raise BedrockUnavailable(f"Bedrock {code or 'error'} after {attempt} attempt(s): {exc}",
                                             code, attempt) from exc
                delay = min(self.config.backoff_max_seconds, self.config.backoff_base_seconds * 2 ** (attempt - 1))
                delay *= 0.5 + random.random() / 2  # jitter so parallel callers do not retry in lockstep
                LOG.warning("bedrock %s (attempt %d/%d), retrying in %.2fs", code, attempt,
                            self.config.max_attempts, delay)
                self._sleep(delay)
            except BotoCoreError as exc:  # timeouts, connection errors: not worth hammering
                self.ledger.failures += 1
                raise BedrockUnavailable(f"Bedrock unreachable: {exc}", type(exc).__name__, attempt) from exc
        usage = response.get("usage", {})
        tokens_in, tokens_out = int(usage.get("inputTokens", 0)), int(usage.get("outputTokens", 0))
        cost = (tokens_in * self.config.input_price_per_1k_tokens + tokens_out * self.config.output_price_per_1k_tokens) / 1000
        text = "".join(block.get("text", "") for block in response["output"]["message"]["content"])
        result = ConverseResult(text=text.strip(), stop_reason=response.get("stopReason", ""),
                                usage=Usage(tokens_in, tokens_out, round(cost, 8)),
                                latency_ms=(time.monotonic() - started) * 1000, attempts=attempt,
                                model_id=self.config.bedrock_model_id)
        self.ledger.record(purpose, result)
        return result
