"""Configuration of serving and generative responses (sections of FeedbackBrainConfig)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServingConfig:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass
class GenerativeConfig:
    bedrock_model_id: str = "anthropic.claude-3-haiku-20240307-v1:0"
    use_bedrock: bool = False
