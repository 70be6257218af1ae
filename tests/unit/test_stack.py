"""template.yaml as a deployable stack: what a careless edit could break without any other test noticing.

Conditions, Rules and Fn::If are evaluated here for three parameter sets (a created database, an existing
RDS Proxy, an existing endpoint with a secret), so the tests check what CloudFormation would create.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from abtest.settings import Settings, settings_from_env
from localdev.postgres import PROJECT_ROOT
from localdev.template import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
REQUIRED = {
    "JwtIssuer": "https://issuer.example",
    "JwtAudience": "client",
    "VpcId": "vpc-0123abcd",
    "SubnetIds": "subnet-0a,subnet-0b",
}
CREATED: dict[str, str] = {}
EXISTING_PROXY = {
    "DatabaseHost": "abtest.proxy-abc.us-east-1.rds.amazonaws.com",
    "DatabaseProxyResourceId": "prx-0123456789abcdef0",
    "FunctionSecurityGroupIds": "sg-0123abcd,sg-4567ef01",
}
EXISTING_SECRET = {
    "DatabaseHost": "abtest.cluster-abc.us-east-1.rds.amazonaws.com",
    "DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:abtest-AbCdEf",
    "FunctionSecurityGroupIds": "sg-0123abcd",
}
MODES = {"created": CREATED, "existing_proxy": EXISTING_PROXY, "existing_secret": EXISTING_SECRET}
NO_VALUE = object()
DATABASE_TYPES = {
    "AWS::RDS::DBCluster",
    "AWS::RDS::DBInstance",
    "AWS::RDS::DBProxy",
    "AWS::RDS::DBProxyTargetGroup",
    "AWS::RDS::DBSubnetGroup",
    "AWS::SecretsManager::Secret",
    "AWS::SecretsManager::SecretTargetAttachment",
    "AWS::EC2::SecurityGroup",
}
# Kept as they are: deploy scripts, dashboards and the local server depend on them.
FUNCTIONS = {
    "ExperimentsFunction": ("functions/experiments/", "experiments_handler.lambda_handler"),
    "AssignmentsFunction": ("functions/assignments/", "assignments_handler.lambda_handler"),
    "EventsFunction": ("functions/events/", "events_handler.lambda_handler"),
    "MetricsFunction": ("functions/metrics/", "metrics_handler.lambda_handler"),
    "RollupFunction": ("functions/rollup/", "rollup_handler.lambda_handler"),
    "MigrateFunction": ("functions/migrate/", "migrate_handler.lambda_handler"),
    "DeliveryFunction": ("functions/delivery/", "delivery_handler.lambda_handler"),
    "IngestFunction": ("functions/ingest/", "ingest_handler.lambda_handler"),
}
# Beyond the database policy: the alerts' managed policies (issue 23), each for the functions that need it.
ALERT_POLICIES = {
    "ExperimentsFunction": ["AlertRelayPolicy", "WebhookSecretsEncryptPolicy"],
    "RollupFunction": ["AlertRelayPolicy"],
    "DeliveryFunction": ["AlertRelayPolicy", "WebhookSecretsDecryptPolicy"],
}


# ---- a small evaluator of the template's conditions --------------------------------------------------------


def parameters(overrides: dict[str, str]) -> dict[str, str]:
    specs = TEMPLATE["Parameters"].items()
    defaults = {name: str(spec["Default"]) for name, spec in specs if "Default" in spec}
    return {**defaults, **REQUIRED, **overrides}


def holds(condition: Any, params: dict[str, str]) -> bool:
    """The truth of a condition name or a condition function for these parameter values."""
    if isinstance(condition, str):
        return holds(TEMPLATE["Conditions"][condition], params)
    ((function, argument),) = condition.items()
    if function == "Fn::Equals":
        left, right = (resolve(value, params) for value in argument)
        return bool(left == right)
    if function == "Fn::Not":
        return not holds(argument[0], params)
    if function == "Fn::And":
        return all(holds(part, params) for part in argument)
    if function == "Fn::Or":
        return any(holds(part, params) for part in argument)
    if function == "Condition":
        return holds(argument, params)
    raise AssertionError(f"unsupported condition function {function}")


def resolve(value: Any, params: dict[str, str]) -> Any:
    """Value with Ref and Fn::If resolved; other intrinsics become "<Fn::X>" placeholders."""
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            return NO_VALUE if argument == "AWS::NoValue" else params.get(argument, f"<Ref {argument}>")
        if function == "Fn::If":
            name, when_true, when_false = argument
            return resolve(when_true if holds(name, params) else when_false, params)
        if function == "Fn::Sub" and isinstance(argument, list):
            text, variables = argument
            return {function: [text, resolve(variables, params)]}
        if function.startswith("Fn::"):
            return f"<{function}>"
    if isinstance(value, dict):
        resolved = {key: resolve(item, params) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}
    if isinstance(value, list):
        return [item for item in (resolve(item, params) for item in value) if item is not NO_VALUE]
    return value


def created(params: dict[str, str]) -> dict[str, Any]:
    return {
        logical_id: resource
        for logical_id, resource in RESOURCES.items()
        if "Condition" not in resource or holds(resource["Condition"], params)
    }


def rules_pass(params: dict[str, str]) -> bool:
    return all(
        holds(assertion["Assert"], params)
        for rule in TEMPLATE["Rules"].values()
        if "RuleCondition" not in rule or holds(rule["RuleCondition"], params)
        for assertion in rule["Assertions"]
    )


def merge(base: Any, override: Any) -> Any:
    """SAM's Globals semantics: maps merged key by key, the resource's value winning; lists are
    additive (the Globals' entries, then the resource's); any other value is the resource's."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return [*base, *override]
    return override


def functions() -> dict[str, dict[str, Any]]:
    """Each function's properties with the Globals applied."""
    defaults = TEMPLATE["Globals"]["Function"]
    return {
        logical_id: merge(defaults, resource["Properties"])
        for logical_id, resource in RESOURCES.items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def environment(params: dict[str, str]) -> dict[str, str]:
    variables: dict[str, Any] = resolve(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"], params)
    return {name: str(value) for name, value in variables.items()}


def alarms() -> list[dict[str, Any]]:
    return [r["Properties"] for r in RESOURCES.values() if r["Type"] == "AWS::CloudWatch::Alarm"]


# ---- functions ---------------------------------------------------------------------------------------------


def test_function_ids_code_and_handlers_are_kept() -> None:
    assert {k: (v["CodeUri"], v["Handler"]) for k, v in functions().items()} == FUNCTIONS
    assert RESOURCES["HttpApi"]["Type"] == "AWS::Serverless::HttpApi"
    assert RESOURCES["AbTestLayer"]["Type"] == "AWS::Serverless::LayerVersion"
    authorizer = RESOURCES["HttpApi"]["Properties"]["Auth"]["Authorizers"]["JwtAuthorizer"]
    assert authorizer["JwtConfiguration"]["issuer"] == {"Ref": "JwtIssuer"}
    assert authorizer["JwtConfiguration"]["audience"] == [{"Ref": "JwtAudience"}]
    assert {"JwtIssuer", "JwtAudience", "ScopePrefix"} <= set(TEMPLATE["Parameters"])


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_is_arm64_traced_json_logged_python312(logical_id: str) -> None:
    function = functions()[logical_id]
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == ["arm64"]
    assert function["Tracing"] == "Active"
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    assert function["VpcConfig"]["SubnetIds"] == {"Ref": "SubnetIds"}


@pytest.mark.parametrize("logical_id", sorted(FUNCTIONS))
def test_every_function_shares_the_abtest_layer_and_only_the_ranking_one_gets_numpy(logical_id: str) -> None:
    """One shared layer (hashing, models, repository code and the dependencies) for every function;
    numpy, which only the recommender needs, in NumpyLayer, attached to AssignmentsFunction alone."""
    layers = functions()[logical_id]["Layers"]
    if logical_id == "AssignmentsFunction":
        assert layers == [{"Ref": "AbTestLayer"}, {"Ref": "NumpyLayer"}]
    else:
        assert layers == [{"Ref": "AbTestLayer"}]


def test_every_function_logs_to_its_own_group_with_the_retention_parameter() -> None:
    groups = {logical_id: f["LoggingConfig"]["LogGroup"]["Ref"] for logical_id, f in functions().items()}
    assert len(set(groups.values())) == len(groups), groups
    for logical_id, group in groups.items():
        assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup", logical_id
        assert RESOURCES[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, logical_id
    assert TEMPLATE["Parameters"]["LogRetentionDays"]["Default"] == 30


@pytest.mark.parametrize("logical_id", ["AbTestLayer", "NumpyLayer"])
def test_layer_is_built_by_sam_for_python312_on_arm64(logical_id: str) -> None:
    layer = RESOURCES[logical_id]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Metadata"] == {"BuildMethod": "python3.12", "BuildArchitecture": "arm64"}
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert (PROJECT_ROOT / layer["Properties"]["ContentUri"] / "requirements.txt").is_file()


def test_rollup_runs_on_a_schedule_with_an_explicit_input() -> None:
    events = RESOURCES["RollupFunction"]["Properties"]["Events"].values()
    (schedule,) = [event["Properties"] for event in events if event["Type"] == "Schedule"]
    assert re.fullmatch(r"rate\(\d+ minutes?\)", schedule["Schedule"])
    assert isinstance(json.loads(schedule["Input"]), dict)


def test_routes_are_explicit_and_authorized() -> None:
    for logical_id, function in functions().items():
        for name, event in function.get("Events", {}).items():
            if event["Type"] != "HttpApi":
                continue
            props = event["Properties"]
            assert props["ApiId"] == {"Ref": "HttpApi"}, name
            assert props["Method"].upper() != "ANY", name
            # The service's routes, and OpenFeature's fixed paths (OFREP, docs/openfeature.md).
            assert props["Path"].startswith(("/api/v1/", "/ofrep/v1/evaluate/flags")), name
            assert "+}" not in props["Path"], name
            assert props["Auth"]["Authorizer"] == "JwtAuthorizer", f"{logical_id}.{name}"


def test_every_function_gets_only_the_database_policy() -> None:
    # ...and the events function, with buffered ingestion, may send to its queue (issue 27).
    send = {"Fn::If": ["BufferedIngest", {"Ref": "IngestQueueSendPolicy"}, {"Ref": "AWS::NoValue"}]}
    for logical_id, function in functions().items():
        extra = [{"Ref": name} for name in ALERT_POLICIES.get(logical_id, [])]
        if logical_id == "EventsFunction":
            extra.append(send)
        assert function["Policies"] == [{"Ref": "DatabaseAccessPolicy"}, *extra], logical_id


@pytest.mark.parametrize("mode", sorted(MODES))
def test_database_policy_is_least_privilege(mode: str) -> None:
    policy = RESOURCES["DatabaseAccessPolicy"]["Properties"]["PolicyDocument"]
    document = resolve(policy, parameters(MODES[mode]))
    (statement,) = document["Statement"]
    if mode == "existing_secret":
        assert statement == {
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": EXISTING_SECRET["DatabaseSecretArn"],
        }
    else:
        assert statement["Action"] == "rds-db:connect"
        template, values = statement["Resource"]["Fn::Sub"]
        assert template.endswith(":dbuser:${ProxyId}/${DatabaseUser}")
        expected = EXISTING_PROXY["DatabaseProxyResourceId"] if mode == "existing_proxy" else "<Fn::Select>"
        assert values["ProxyId"] == expected


def test_no_iam_statement_uses_wildcards_or_put_metric_data() -> None:
    def statements(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            found = [s for s in node.get("Statement", []) if isinstance(s, dict) and "Effect" in s]
            return found + [s for value in node.values() for s in statements(value)]
        if isinstance(node, list):
            return [s for value in node for s in statements(value)]
        return []

    # A KMS key policy names its own key as "*" (the only form it takes): it is not a wildcard grant.
    found = statements({k: r for k, r in RESOURCES.items() if r["Type"] != "AWS::KMS::Key"})
    assert found
    for statement in found:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert "*" not in actions, statement
        assert "cloudwatch:PutMetricData" not in actions, statement
        assert statement.get("Resource") != "*", statement


# ---- environment -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", sorted(MODES))
def test_environment_matches_the_settings_for_each_database_mode(mode: str) -> None:
    env = environment(parameters(MODES[mode]))
    powertools = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
    assert set(env) <= {name.upper() for name in Settings.model_fields} | powertools
    assert "DATABASE_URL" not in env  # local only: it would win over everything else
    assert "AWS_REGION" not in env  # reserved: Lambda sets it
    settings = settings_from_env(env)
    assert settings.auth_mode == "jwt"
    assert settings.db_host
    assert settings.db_sslmode == "require"
    if mode == "existing_secret":
        assert (settings.db_iam_auth, settings.db_user) == (False, None)
        assert settings.db_secret_arn == EXISTING_SECRET["DatabaseSecretArn"]
    else:
        assert (settings.db_iam_auth, settings.db_user, settings.db_secret_arn) == (True, "abtest_app", None)


def test_statement_timeout_reaches_the_functions_and_the_role_from_one_parameter() -> None:
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["DB_STATEMENT_TIMEOUT_MS"] == {"Ref": "DatabaseStatementTimeoutMs"}
    properties = RESOURCES["DatabaseMigrations"]["Properties"]
    assert properties["StatementTimeoutMs"] == {"Ref": "DatabaseStatementTimeoutMs"}


# ---- database --------------------------------------------------------------------------------------------


def test_the_database_is_created_only_without_an_existing_host() -> None:
    assert TEMPLATE["Conditions"]["CreateDatabase"] == {"Fn::Equals": [{"Ref": "DatabaseHost"}, ""]}
    created_types = {r["Type"] for r in created(parameters(CREATED)).values()}
    assert created_types >= DATABASE_TYPES
    for mode in ("existing_proxy", "existing_secret"):
        assert not {r["Type"] for r in created(parameters(MODES[mode])).values()} & DATABASE_TYPES, mode


def test_rules_accept_the_three_modes_and_refuse_mixtures() -> None:
    for overrides in MODES.values():
        assert rules_pass(parameters(overrides)), overrides
    host = {"DatabaseHost": EXISTING_PROXY["DatabaseHost"], "FunctionSecurityGroupIds": "sg-0123abcd"}
    proxy = {"DatabaseProxyResourceId": EXISTING_PROXY["DatabaseProxyResourceId"]}
    secret = {"DatabaseSecretArn": EXISTING_SECRET["DatabaseSecretArn"]}
    assert not rules_pass(parameters(host))
    assert not rules_pass(parameters({**host, **proxy, **secret}))
    assert not rules_pass(parameters({**EXISTING_PROXY, "FunctionSecurityGroupIds": ""}))
    assert not rules_pass(parameters(proxy))
    assert not rules_pass(parameters({"FunctionSecurityGroupIds": "sg-0123abcd"}))


def test_created_cluster_is_aurora_serverless_v2_postgresql_behind_an_iam_tls_proxy() -> None:
    resources = created(parameters(CREATED))
    by_type = {r["Type"]: r for r in resources.values()}
    cluster = by_type["AWS::RDS::DBCluster"]["Properties"]
    assert cluster["Engine"] == "aurora-postgresql"
    assert re.fullmatch(r"1[56]\.\d+", TEMPLATE["Parameters"]["DatabaseEngineVersion"]["Default"])
    assert cluster["EngineVersion"] == {"Ref": "DatabaseEngineVersion"}
    assert cluster["ServerlessV2ScalingConfiguration"]["MinCapacity"] == 0.5
    assert cluster["StorageEncrypted"] is True
    assert by_type["AWS::RDS::DBInstance"]["Properties"]["DBInstanceClass"] == "db.serverless"
    proxy = by_type["AWS::RDS::DBProxy"]["Properties"]
    assert proxy["EngineFamily"] == "POSTGRESQL"
    assert proxy["RequireTLS"] is True
    assert [auth["IAMAuth"] for auth in proxy["Auth"]] == ["REQUIRED"]
    secret = by_type["AWS::SecretsManager::Secret"]["Properties"]
    assert secret["GenerateSecretString"]["GenerateStringKey"] == "password"
    assert set('/@" ') <= set(secret["GenerateSecretString"]["ExcludeCharacters"])  # refused by RDS
    attachment = by_type["AWS::SecretsManager::SecretTargetAttachment"]["Properties"]
    assert attachment["TargetType"] == "AWS::RDS::DBCluster"
    assert RESOURCES[attachment["TargetId"]["Ref"]]["Type"] == "AWS::RDS::DBCluster"


def test_migrations_run_on_deploy_before_the_functions_change() -> None:
    migrations = RESOURCES["DatabaseMigrations"]
    assert migrations["Type"].startswith("Custom::")
    properties = migrations["Properties"]
    assert properties["ServiceToken"] == {"Fn::GetAtt": "MigrateFunction.Arn"}
    # The migrations ship in the layer: a new layer version is what makes CloudFormation send an Update.
    assert properties["LayerVersion"] == {"Ref": "AbTestLayer"}
    assert functions()["MigrateFunction"]["Timeout"] < properties["ServiceTimeout"] <= 3600
    for logical_id in FUNCTIONS.keys() - {"MigrateFunction"}:
        assert RESOURCES[logical_id].get("DependsOn") == "DatabaseMigrations", logical_id


# ---- alarms and outputs ----------------------------------------------------------------------------------


def test_http_api_5xx_alarm() -> None:
    def metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
        stats = [m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m]
        return stats + ([alarm] if "MetricName" in alarm else [])

    api_5xx = [
        metric
        for alarm in alarms()
        for metric in metrics(alarm)
        if metric["Namespace"] == "AWS/ApiGateway" and metric["MetricName"] == "5xx"
    ]
    assert api_5xx, "no alarm watches the HTTP API's 5xx metric"
    assert all(metric["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "HttpApi"}}] for metric in api_5xx)


def test_srm_alarm_watches_the_metric_powertools_publishes() -> None:
    variables = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    (srm,) = [alarm for alarm in alarms() if alarm.get("MetricName") == "SrmDetected"]
    assert srm["Namespace"] == variables["POWERTOOLS_METRICS_NAMESPACE"]
    assert srm["Dimensions"] == [{"Name": "service", "Value": variables["POWERTOOLS_SERVICE_NAME"]}]


def test_alarms_notify_the_topic_only_when_one_is_given() -> None:
    topic = "arn:aws:sns:us-east-1:123456789012:oncall"
    for alarm in alarms():
        with_topic = resolve(alarm, parameters({"AlarmTopicArn": topic}))
        assert with_topic["AlarmActions"] == [topic]
        assert "AlarmActions" not in resolve(alarm, parameters(CREATED))


def test_outputs_name_the_api_the_database_endpoint_and_the_secret() -> None:
    outputs = TEMPLATE["Outputs"]
    assert {"ApiUrl", "DatabaseEndpoint", "DatabaseProxyEndpoint", "DatabaseSecretArn"} <= set(outputs)
    assert outputs["DatabaseSecretArn"]["Condition"] == "CreateDatabase"


# ---- cfn-lint --------------------------------------------------------------------------------------------


def test_cfn_lint_finds_no_errors_or_warnings() -> None:
    api = pytest.importorskip("cfnlint.api", reason="cfn-lint is not installed (a dev dependency)")
    matches = api.lint((PROJECT_ROOT / "template.yaml").read_text(encoding="utf-8"))
    problems = [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches if m.rule.id[0] in "EW"]
    assert problems == []
