"""The CDK app: Data -> ML -> Ingest -> Operations, Security, CI/CD.

Every name and size comes from the project configuration (`pipelines.config.load_config`),
so the deployed resources are the ones the code expects. Synthesis is offline: no account, no
context lookups; stacks are environment-agnostic in the account and pinned to `aws.region`.

    python -m infrastructure.synth            # templates + cdk-nag + cfn-lint (what `make synth` runs)
    cd infrastructure && python app.py        # templates only (what `cdk synth` / `cdk deploy` runs)
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

for _silenced in ("DEPRECATED", "END_OF_LIFE", "UNTESTED"):  # the Node.js support notice of the jsii runtime
    os.environ.setdefault(f"JSII_SILENCE_WARNING_{_silenced}_NODE_VERSION", "1")
if __package__ in (None, ""):  # run as a script (`cdk synth` runs `python3 app.py` in this folder):
    # import from the repository root, never this folder (its module names would shadow installed ones)
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from pipelines.infrastructure_config import InfrastructureConfig
from infrastructure.lambda_packages import build_lambda_package, check_handler_isolated
from pipelines.config import FeedbackBrainConfig, load_config

DEFAULT_OUTDIR = Path(__file__).resolve().parent / "cdk.out"
CONFIG_CONTEXT = "fbrain:config"
"""CDK context key of a config file (`cdk synth -c fbrain:config=path.yaml`)."""
OVERRIDES_CONTEXT = "fbrain:set"
"""CDK context key of `section.field=value` overrides, separated by commas."""


@dataclass
class FeedbackBrainApp:
    app: cdk.App
    stacks: dict[str, cdk.Stack] = field(default_factory=dict)


def build_app(config: FeedbackBrainConfig | None = None, outdir: Path | str = DEFAULT_OUTDIR,
              settings: InfrastructureConfig | None = None, nag: bool = True) -> FeedbackBrainApp:
    """Every stack of the deployment in one CDK app (nothing is synthesised yet)."""
    from infrastructure.stacks.cicd import CiCdStack
    from infrastructure.stacks.data import DataStack
    from infrastructure.stacks.ml import DEPLOY_HANDLER, MlStack
    from infrastructure.stacks.operations import OperationsStack
    from infrastructure.stacks.security import SecurityStack

    config = config or load_config()
    settings = settings or config.infrastructure
    outdir = Path(outdir)
    # S3 server access logs are granted to the logging service by bucket policy, not by a (legacy) ACL.
    app = cdk.App(outdir=str(outdir), context={"@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True})
    env = cdk.Environment(region=config.aws.region)
    prefix = "".join(part.capitalize() for part in settings.project.split("-"))
    packages_dir = outdir / "lambda-packages"

    def package(handler: str):
        built = build_lambda_package(handler, packages_dir)
        check_handler_isolated(built)
        return built

    stacks: dict[str, cdk.Stack] = {}
    data = stacks["data"] = DataStack(app, f"{prefix}Data", config=config, settings=settings, env=env,
                                      description="feedback-brain data: KMS key, S3 lake and pipeline buckets, Glue, DynamoDB")
    ml = stacks["ml"] = MlStack(app, f"{prefix}Ml", config=config, settings=settings, data=data,
                                deploy_package=package(DEPLOY_HANDLER), env=env,
                                description="feedback-brain ML: images, roles, SageMaker pipeline, registry, Feature Store, "
                                            "deploy-on-approval, retraining rules")
    from infrastructure.stacks.ingest import SUBMIT_HANDLER, IngestStack

    ingest = stacks["ingest"] = IngestStack(
        app, f"{prefix}Ingest", config=config, settings=settings, data=data, submit_package=package(SUBMIT_HANDLER),
        env=env, description="feedback-brain ingest: API Gateway -> Lambda -> Kinesis -> consumer Lambda -> tables")
    stacks["operations"] = OperationsStack(app, f"{prefix}Operations", config=config, settings=settings, data=data,
                                           ml=ml, ingest=ingest, env=env,
                                           description="feedback-brain operations: alert detection schedule, operations API, secrets, "
                                                       "dashboard, alarms")
    stacks["security"] = SecurityStack(app, f"{prefix}Security", settings=settings, data=data, env=env,
                                       description="feedback-brain security: GuardDuty, Macie, CloudTrail, Access Analyzer")
    stacks["cicd"] = CiCdStack(app, f"{prefix}CiCd", config=config, settings=settings, data=data, ml=ml, env=env,
                               description="feedback-brain CI/CD: GitHub -> CodePipeline -> CodeBuild (buildspec.yml)")
    for stack in stacks.values():
        cdk.Tags.of(stack).add("project", settings.project)
    if nag:
        cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True, reports=True))
    return FeedbackBrainApp(app=app, stacks=stacks)


def config_from_context(app_context: dict) -> FeedbackBrainConfig:
    overrides = [item for item in str(app_context.get(OVERRIDES_CONTEXT, "")).split(",") if item.strip()]
    return load_config(app_context.get(CONFIG_CONTEXT) or None, overrides)


def main() -> None:
    """`cdk synth` entry point: context `fbrain:config` / `fbrain:set` choose the configuration."""
    probe = cdk.App()
    context = {key: probe.node.try_get_context(key) for key in (CONFIG_CONTEXT, OVERRIDES_CONTEXT)}
    outdir = os.environ.get("CDK_OUTDIR") or str(DEFAULT_OUTDIR)
    built = build_app(config_from_context({k: v for k, v in context.items() if v}), outdir=outdir)
    built.app.synth()


if __name__ == "__main__":
    main()
