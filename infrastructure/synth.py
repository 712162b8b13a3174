"""`make synth`: write the templates, then fail on any unsuppressed cdk-nag finding or cfn-lint error.

    python -m infrastructure.synth [--config FILE] [--set section.field=value ...] [--outdir DIR]

Offline: no AWS account, no context lookups, no Docker. Exit status 0 only when every stack
synthesises, cdk-nag's AwsSolutions pack reports nothing unsuppressed (each suppression
carries its reason in the stack's code) and cfn-lint reports nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

for _silenced in ("DEPRECATED", "END_OF_LIFE", "UNTESTED"):  # the Node.js support notice of the jsii runtime
    os.environ.setdefault(f"JSII_SILENCE_WARNING_{_silenced}_NODE_VERSION", "1")

NAG_PREFIX = "AwsSolutions-"
CFN_LINT_IGNORED = {
    "W3005": "CDK puts a DependsOn on a role *and* its default policy, so that a resource is created only once the "
             "role's permissions exist; cfn-lint sees the role half as redundant with the GetAtt of its ARN.",
}
"""cfn-lint checks not applied, each with the reason."""


@dataclass
class SynthReport:
    outdir: Path
    templates: list[Path]
    nag_findings: list[str] = field(default_factory=list)
    """Unsuppressed AwsSolutions errors and warnings: `<stack path>: <message>`."""
    lint_findings: list[str] = field(default_factory=list)
    resource_counts: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.nag_findings and not self.lint_findings


def nag_findings(assembly) -> list[str]:
    """Error and warning annotations cdk-nag left on the assembly's stacks (suppressed ones are not annotated)."""
    findings = []
    for stack in assembly.stacks_recursively:
        for message in stack.messages:
            level = str(message.level).lower()
            text = str(message.entry.data)
            if NAG_PREFIX in text and ("error" in level or "warn" in level):
                findings.append(f"{message.id}: {text.splitlines()[0]}")
    return findings


def lint_templates(templates: list[Path]) -> list[str]:
    """cfn-lint findings, one line each (empty when clean)."""
    if not templates:
        return []
    result = subprocess.run([sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())",
                             "--format", "parseable", "--ignore-checks", *CFN_LINT_IGNORED, "--", *map(str, templates)],
                            capture_output=True, text=True, check=False)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0 and not lines:
        lines = [f"cfn-lint exited {result.returncode}"]
    return lines


def synthesize(config=None, outdir: Path | str | None = None, lint: bool = True):
    """Build and synthesise the app; returns (assembly, report)."""
    from infrastructure.app import DEFAULT_OUTDIR, build_app

    outdir = Path(outdir or DEFAULT_OUTDIR)
    if (outdir / "manifest.json").is_file():  # an earlier cloud assembly: start clean (no stale assets)
        shutil.rmtree(outdir)
    built = build_app(config, outdir=outdir)
    assembly = built.app.synth()
    templates = sorted(Path(stack.template_full_path) for stack in assembly.stacks)
    report = SynthReport(outdir=outdir, templates=templates, nag_findings=nag_findings(assembly))
    for path in templates:
        report.resource_counts[path.name.removesuffix(".template.json")] = len(
            json.loads(path.read_text(encoding="utf-8")).get("Resources", {}))
    if lint:
        report.lint_findings = lint_templates(templates)
    return assembly, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infrastructure.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="JSON or YAML config file (pipelines.config.load_config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    parser.add_argument("--outdir", help="where the cloud assembly goes (default infrastructure/cdk.out)")
    parser.add_argument("--no-lint", action="store_true", help="skip cfn-lint")
    args = parser.parse_args(argv)
    from pipelines.config import load_config

    config = load_config(args.config, args.overrides)
    _, report = synthesize(config, args.outdir, lint=not args.no_lint)
    for name, count in report.resource_counts.items():
        print(f"{name}: {count} resources")
    print(f"templates in {report.outdir}")
    for finding in report.nag_findings:
        print(f"cdk-nag: {finding}", file=sys.stderr)
    for finding in report.lint_findings:
        print(f"cfn-lint: {finding}", file=sys.stderr)
    if not report.clean:
        print(f"{len(report.nag_findings)} cdk-nag and {len(report.lint_findings)} cfn-lint findings", file=sys.stderr)
        return 1
    print("cdk-nag AwsSolutions: no unsuppressed findings; cfn-lint: clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
