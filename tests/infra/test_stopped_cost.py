"""The cost-while-stopped table in docs/infrastructure.md is the one the template gives."""

from __future__ import annotations

import re

from backend.paths import REPO_ROOT
from infra_cdk.stopped_cost import markdown_table, stopped_cost
from tests.infra.conftest import Synthesized

DOC = REPO_ROOT / "docs" / "infrastructure.md"
TABLE = re.compile(r"<!-- stopped-cost:begin -->\n(.*?)\n<!-- stopped-cost:end -->", re.S)


def test_documented_table_matches_the_template(synthesized: Synthesized) -> None:
    documented = TABLE.search(DOC.read_text())
    assert documented, f"{DOC} lost its stopped-cost markers"
    expected = markdown_table(stopped_cost(synthesized.template.to_json()))
    assert documented.group(1) == expected, (
        "docs/infrastructure.md's cost-while-stopped table is stale; replace it with:\n" + expected
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
