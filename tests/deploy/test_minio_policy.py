"""``compose/minio/thumbor-policy.json``: Thumbor's MinIO account may read the originals and
read, write and delete the results — nothing else, no wildcard."""

from __future__ import annotations

import json

from .conftest import POLICY_FILE


def test_policy_grants_exactly_the_least_privilege():
    policy = json.loads(POLICY_FILE.read_text())
    assert policy["Version"] == "2012-10-17"
    granted = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource"}, statement
        actions = statement["Action"]
        resources = statement["Resource"]
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        for action in actions:
            assert "*" not in action, f"wildcard action {action}"
            for resource in resources:
                granted.add((action, resource))
    assert granted == {
        ("s3:ListBucket", "arn:aws:s3:::images"),
        ("s3:GetObject", "arn:aws:s3:::images/*"),
        ("s3:ListBucket", "arn:aws:s3:::images-derived"),
        ("s3:GetObject", "arn:aws:s3:::images-derived/*"),
        ("s3:PutObject", "arn:aws:s3:::images-derived/*"),
        ("s3:DeleteObject", "arn:aws:s3:::images-derived/*"),
    }
