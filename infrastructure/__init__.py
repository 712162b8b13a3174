"""The AWS deployment of feedback-brain as a CDK v2 app (see docs/deploy.md)."""
