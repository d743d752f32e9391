"""The cost-while-stopped tables in docs/infrastructure.md (single mode, and fleet mode at zero)
are the ones the templates give."""

from __future__ import annotations

import re

import pytest

from backend.paths import REPO_ROOT
from infra_cdk.stopped_cost import markdown_table, stopped_cost
from tests.infra.conftest import Synthesized

DOC = REPO_ROOT / "docs" / "infrastructure.md"


def table(marker: str) -> re.Pattern[str]:
    return re.compile(rf"<!-- {marker}:begin -->\n(.*?)\n<!-- {marker}:end -->", re.S)


@pytest.mark.parametrize(
    ("marker", "mode"),
    [("stopped-cost", "synthesized"), ("fleet-stopped-cost", "fleet_synthesized")],
)
def test_documented_table_matches_the_template(
    marker: str, mode: str, request: pytest.FixtureRequest
) -> None:
    synthesized: Synthesized = request.getfixturevalue(mode)
    documented = table(marker).search(DOC.read_text())
    assert documented, f"{DOC} lost its {marker} markers"
    expected = markdown_table(stopped_cost(synthesized.template.to_json()))
    assert documented.group(1) == expected, (
        f"docs/infrastructure.md's {marker} table is stale; replace it with:\n" + expected
    )


def test_counts_what_is_billed_while_stopped(synthesized: Synthesized) -> None:
    items = {i.item: i for i in stopped_cost(synthesized.template.to_json())}
    assert items["EBS gp3 root volume"].counted == "100 GiB"
    assert items["EBS gp3 root volume"].usd_month == 8.0
    assert items["idle_stop's PutMetricData calls"].counted == "43,800 a month"
    alarms = items["CloudWatch alarms"]
    # IdleNotStopped reads two metrics (EC2's running minutes and the sessions): 11 for 10.
    assert alarms.counted == "11 alarm metrics"
    eip = next(i for name, i in items.items() if name.startswith("Elastic IP"))
    assert (eip.counted, eip.usd_month) == ("0 x 730 h", 0.0)
    secrets = next(i for name, i in items.items() if name.startswith("Secrets Manager"))
    assert (secrets.counted, secrets.usd_month) == ("2", 0.80)
    front_door = [i for name, i in items.items() if "CloudFront" in name or "S3 site" in name]
    assert len(front_door) == 2 and all(round(i.usd_month, 2) == 0 for i in front_door)
    assert sum(i.usd_month for i in items.values()) < 15


def test_a_fleet_at_zero_bills_its_warm_pool_and_its_load_balancer(
    fleet_synthesized: Synthesized,
) -> None:
    items = {i.item: i for i in stopped_cost(fleet_synthesized.template.to_json())}
    assert "EBS gp3 root volume" not in items  # no instance of its own
    warm = items["EBS gp3 root volumes of the warm pool's stopped instances"]
    # AWS's default pool (fleetWarmPoolSize -1) keeps maxSize instances stopped at zero.
    assert (warm.counted, warm.usd_month) == ("4 x 100 GiB", 32.0)
    balancer = next(i for name, i in items.items() if name.startswith("Application Load"))
    assert (balancer.counted, round(balancer.usd_month, 2)) == ("1 x 730 h", 16.43)
    assert "custom metric published while stopped (InstancesRunning)" in items
