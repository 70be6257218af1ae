"""Settings parsing and the AWS credential paths (Secrets Manager, IAM auth), with moto."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from abtest.errors import Unavailable
from abtest.settings import settings_from_env
from abtest.storage.database import connection_params


def test_database_url_wins() -> None:
    settings = settings_from_env({"DATABASE_URL": "postgresql://u@h/db", "DB_HOST": "ignored"})
    assert connection_params(settings) == {"conninfo": "postgresql://u@h/db", "connect_timeout": 5}


def test_empty_values_count_as_unset_and_types_are_checked() -> None:
    settings = settings_from_env({"DATABASE_URL": "", "DB_PORT": "6543", "DB_IAM_AUTH": "true"})
    assert settings.database_url is None
    assert settings.db_port == 6543
    assert settings.db_iam_auth is True
    with pytest.raises(ValueError, match="db_port"):
        settings_from_env({"DB_PORT": "not-a-port"})


def test_nothing_configured_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        connection_params(settings_from_env({}))


@mock_aws
def test_secrets_manager_credentials_with_the_proxy_host_preferred() -> None:
    session = boto3.session.Session(region_name="eu-west-1")
    arn = session.client("secretsmanager").create_secret(
        Name="abtest/db",
        SecretString=json.dumps(
            {"username": "app", "password": "s3cret", "host": "cluster.local", "port": 5433, "dbname": "x"}
        ),
    )["ARN"]
    settings = settings_from_env(
        {"DB_SECRET_ARN": arn, "DB_HOST": "proxy.local", "AWS_REGION": "eu-west-1", "DB_SSLMODE": "require"}
    )

    params = connection_params(settings, session)

    assert params["user"] == "app"
    assert params["password"] == "s3cret"
    assert params["host"] == "proxy.local"
    assert params["port"] == 5433
    assert params["dbname"] == "x"
    assert params["sslmode"] == "require"


@mock_aws
def test_secret_without_a_password_is_unavailable() -> None:
    session = boto3.session.Session(region_name="eu-west-1")
    arn = session.client("secretsmanager").create_secret(
        Name="bad", SecretString=json.dumps({"username": "app"})
    )["ARN"]
    with pytest.raises(Unavailable):
        connection_params(settings_from_env({"DB_SECRET_ARN": arn, "AWS_REGION": "eu-west-1"}), session)


@mock_aws
def test_iam_auth_generates_a_signed_token_over_tls() -> None:
    session = boto3.session.Session(
        region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    settings = settings_from_env(
        {"DB_HOST": "proxy.local", "DB_USER": "app", "DB_IAM_AUTH": "1", "AWS_REGION": "eu-west-1"}
    )

    params = connection_params(settings, session)

    assert params["user"] == "app"
    assert params["host"] == "proxy.local"
    assert params["sslmode"] == "require"
    assert params["password"].startswith("proxy.local:5432/?Action=connect")
    assert "DBUser=app" in params["password"]
    assert "X-Amz-Signature=" in params["password"]


def test_iam_auth_needs_a_user() -> None:
    settings = settings_from_env({"DB_HOST": "proxy.local", "DB_IAM_AUTH": "true"})
    with pytest.raises(Unavailable, match="DB_USER"):
        connection_params(settings)
