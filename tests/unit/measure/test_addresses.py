"""The installer's address policy: metadata and link-local denied by default, an allow-list when set,
names checked by what they resolve to."""

from __future__ import annotations

import pytest

from controller.measure.addresses import AddressPolicy, AddressRefused

NAMES = {"prometheus.monitoring": ["10.0.0.7"], "rebind.example": ["169.254.169.254"], "v6.example": ["fe80::1"]}


def _policy(**kw: object) -> AddressPolicy:
    return AddressPolicy(resolve=lambda host: NAMES.get(host, []), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("address", [
    "http://169.254.169.254", "http://169.254.169.254:80/latest/meta-data", "http://[fe80::1]:9090",
    "http://metadata.google.internal", "http://rebind.example:9090", "http://v6.example", "http://[fd00:ec2::254]",
])
def test_metadata_and_link_local_are_denied_by_default(address: str) -> None:
    with pytest.raises(AddressRefused, match="denied by the operator's policy"):
        _policy().check(address)


def test_anything_else_is_allowed_without_an_allow_list() -> None:
    for address in ("http://prometheus.monitoring:9090", "https://thanos.example", "http://127.0.0.1:9090"):
        _policy().check(address)


def test_an_allow_list_admits_its_hosts_and_cidrs_only() -> None:
    policy = _policy(allowed=("10.0.0.0/8", "thanos.example"))
    policy.check("http://prometheus.monitoring:9090")  # resolves into 10/8
    policy.check("https://thanos.example")
    with pytest.raises(AddressRefused, match="not in the operator's allow-list"):
        policy.check("http://127.0.0.1:9090")
    with pytest.raises(AddressRefused, match="denied"):
        _policy(allowed=("rebind.example",)).check("http://rebind.example")  # denial wins


def test_the_charts_default_denial_is_the_operators() -> None:
    from pathlib import Path

    import yaml

    from controller.measure.addresses import DEFAULT_DENIED

    values = yaml.safe_load((Path(__file__).parents[3] / "charts/modelrollout/values.yaml").read_text())
    assert tuple(values["analysis"]["deniedAddresses"]) == DEFAULT_DENIED
    assert values["prometheus"]["allowCustomQueries"] is False


def test_a_rollouts_own_promql_needs_the_installers_leave_on_the_operators_prometheus() -> None:
    from controller import api
    from controller.measure.credentials import CredentialsUnavailable
    from controller.measure.measure import AnalysisIO, DefaultPrometheus, _check_custom_queries

    custom = api.Analysis.model_validate({"guardrails": [{"name": "q", "query": "vector(1)", "max": 1}]})
    builtin = api.Analysis.model_validate({"guardrails": [{"name": "e", "template": "errorRate", "ignoreBelow": 0.01}]})
    own = api.Analysis.model_validate({"prometheus": {"address": "http://prom:9090"},
                                       "guardrails": [{"name": "q", "query": "vector(1)", "max": 1}]})

    def io(leave: bool) -> AnalysisIO:
        return AnalysisIO(None, lambda *_: None, default_prometheus=DefaultPrometheus(  # type: ignore[arg-type]
            "http://operator-prom:9090", custom_queries=leave))

    with pytest.raises(CredentialsUnavailable, match="runs only the built-in templates"):
        _check_custom_queries(io(False), custom)
    _check_custom_queries(io(False), builtin)
    _check_custom_queries(io(False), own)
    _check_custom_queries(io(True), custom)


def test_a_refused_address_is_refused_before_any_secret_is_read_or_query_sent() -> None:
    from controller import api
    from controller.measure.measure import AnalysisIO, prometheus_for

    def no_secret(*_: object) -> object:
        raise AssertionError("the Secret is not even read")

    io = AnalysisIO(None, no_secret, addresses=_policy())  # type: ignore[arg-type]
    source = api.PrometheusSource.model_validate({"address": "http://169.254.169.254:80", "secretRef": {"name": "s"}})
    with pytest.raises(AddressRefused, match="no query sent"):
        prometheus_for(io, source, "ns")
