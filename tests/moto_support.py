"""Where moto 5.2.5 differs from SageMaker, made to answer as SageMaker does (for the tests that need it)."""
from __future__ import annotations

import contextlib
from typing import Iterator

from moto.sagemaker.exceptions import ResourceNotFound
from moto.sagemaker.models import SageMakerModelBackend


@contextlib.contextmanager
def missing_feature_groups_are_not_found() -> Iterator[None]:
    """DescribeFeatureGroup of an unknown group: SageMaker answers ResourceNotFound, moto raises a KeyError."""
    original = SageMakerModelBackend.describe_feature_group

    def describe(self, feature_group_name: str):
        try:
            return original(self, feature_group_name)
        except KeyError:
            raise ResourceNotFound(f"Resource Not Found: Amazon SageMaker can't find a FeatureGroup with name "
                                   f"{feature_group_name}") from None

    SageMakerModelBackend.describe_feature_group = describe
    try:
        yield
    finally:
        SageMakerModelBackend.describe_feature_group = original
