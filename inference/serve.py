"""Entry point of the endpoint: `python3 -m inference.serve` (the container's `serve`).

SageMaker starts the inference image with the argument `serve` and the model extracted
under /opt/ml/model, and talks to port 8080. Locally, `fbrain serve` / `fbrain deploy` call
`serve_model_dir` with the registered model's directory; both run the same app.

Settings: ServingConfig defaults, overridden by `FBRAIN__SERVING__<FIELD>` environment
variables (how CreateModel's Environment configures the container), then by `--set serving.FIELD=VALUE`;
the reply-drafting routes' GenerativeConfig likewise by `FBRAIN__GENERATIVE__<FIELD>` (e.g.
FBRAIN__GENERATIVE__USE_BEDROCK=true turns Bedrock on for POST /responses and /summaries).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import typing
from pathlib import Path

from inference.capture import CaptureWriter
from inference.config import RUNTIMES, GenerativeConfig, ServingConfig
from processing.settings import SettingsError, add_settings_argument, apply_overrides, load_sections

logger = logging.getLogger(__name__)

SAGEMAKER_MODEL_DIR = "/opt/ml/model"
SECTION_NAMES = {ServingConfig: "serving", GenerativeConfig: "generative"}
"""The configuration sections the endpoint reads (processing.settings names their variables)."""
MODEL_NAME_ENV = "FBRAIN_MODEL_NAME"
MODEL_VERSION_ENV = "FBRAIN_MODEL_VERSION"


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line; access-log messages are already JSON and are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname, "logger": record.name}
        message = record.getMessage()
        if message.startswith("{"):
            try:
                entry.update(json.loads(message))
            except json.JSONDecodeError:
                entry["message"] = message
        else:
            entry["message"] = message
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def config_from_env(config: ServingConfig | GenerativeConfig | None = None,
                    environ: typing.Mapping[str, str] | None = None) -> ServingConfig | GenerativeConfig:
    """A copy of config (ServingConfig when None) with its section's `FBRAIN__<SECTION>__<FIELD>` variables applied
    (e.g. FBRAIN__SERVING__RUNTIME=onnx, FBRAIN__GENERATIVE__USE_BEDROCK=true), by the shared settings parser."""
    config = dataclasses.replace(config) if config else ServingConfig()
    load_sections({SECTION_NAMES[type(config)]: config}, environ=environ)
    return config


def capture_writer_for(config: ServingConfig) -> CaptureWriter | None:
    if not config.capture_dir:
        return None
    return CaptureWriter(
        root=Path(config.capture_dir),
        endpoint_name=config.endpoint_name,
        variant_name=config.variant_name,
        sampling_percentage=config.capture_sampling_percentage,
        queue_size=config.capture_queue_size,
        max_records_per_file=config.capture_max_records_per_file,
    )


def serve_model_dir(
    model_dir: Path | str,
    config: ServingConfig | None = None,
    *,
    model_name: str | None = None,
    model_version: str | None = None,
    generative: GenerativeConfig | None = None,
) -> None:
    """Serve a model directory over HTTP until interrupted (blocks; uvicorn, one process).

    Data capture is on when config.capture_dir is set (locally: `<workspace>/s3/<bucket>/datacapture`);
    `generative` configures POST /responses and /summaries (Bedrock or templates; defaults: templates).
    """
    import uvicorn

    from inference.app import create_app

    config = config or ServingConfig()
    generative = generative or GenerativeConfig()
    configure_logging(config.log_level)
    app = create_app(
        model_dir, config, capture=capture_writer_for(config), model_name=model_name, model_version=model_version,
        generative=generative,
    )
    replies = f"bedrock {generative.bedrock_model_id}" if generative.use_bedrock else "templates"
    logger.info("serving %s on http://%s:%d (runtime %s, capture %s, replies %s)", model_dir, config.host, config.port,
                config.runtime, config.capture_dir or "off", replies)
    # One process: the model call is serialised behind the micro-batcher and ONNX Runtime
    # uses the cores itself; more workers would duplicate the model and fight for cores.
    uvicorn.run(app, host=config.host, port=config.port, log_config=None, access_log=False, workers=1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m inference.serve", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"], help="SageMaker passes `serve`")
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", SAGEMAKER_MODEL_DIR))
    parser.add_argument("--host", default=None, help="default 0.0.0.0 (the container contract)")
    parser.add_argument("--port", type=int, default=None, help="default 8080, or SAGEMAKER_BIND_TO_PORT")
    parser.add_argument("--runtime", choices=RUNTIMES, default=None)
    parser.add_argument("--capture-dir", default=None)
    add_settings_argument(parser, ["serving", "generative"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        config = config_from_env()
        config.host = args.host or "0.0.0.0"
        config.port = args.port or int(os.environ.get("SAGEMAKER_BIND_TO_PORT", config.port))
        if args.runtime:
            config.runtime = args.runtime
        if args.capture_dir is not None:
            config.capture_dir = args.capture_dir
        generative = config_from_env(GenerativeConfig())
        apply_overrides({"serving": config, "generative": generative}, args.settings)
    except SettingsError as exc:  # a bad variable or --set: say which, no traceback
        raise SystemExit(f"python3 -m inference.serve: error: {exc}") from None
    serve_model_dir(args.model_dir, config, model_name=os.environ.get(MODEL_NAME_ENV), model_version=os.environ.get(MODEL_VERSION_ENV),
                    generative=generative)


if __name__ == "__main__":
    main()
