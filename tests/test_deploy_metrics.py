"""The Prometheus alert rules and the Grafana dashboard in deploy/ name only metrics digest
exports, with labels those metrics have, so neither can drift from the code.

promtool is not installed on the machines these tests run on, so the rules' PromQL is not
parsed by Prometheus here: these tests read each expression's metric names and label matchers
themselves. Where promtool is installed, the last test also runs `promtool check rules`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from digest.core import counters
from digest.metrics.gauges import Reading, families

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RULES = DEPLOY / "prometheus-alerts.yml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"

# The PromQL words the files use that are not metric names.
PROMQL = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "sum",
        "max",
        "min",
        "avg",
        "count",
        "time",
        "rate",
        "increase",
        "absent",
        "clamp_min",
    }
)
MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def exported() -> dict[str, dict[str, frozenset[str]]]:
    """Every metric name digest exports, with its labels and their fixed values (empty: any)."""
    names: dict[str, dict[str, frozenset[str]]] = {
        f"{spec.name}_total": {label: allowed or frozenset() for label, allowed in spec.labels}
        for spec in counters.ALL
    }
    now = datetime(2026, 12, 7, tzinfo=UTC)
    reading = Reading(1, 0, 1, now, now, now, (("Blog", now),))
    for family in families(reading):
        labels = {label for sample in family.samples for label in sample.labels}
        names[family.name] = {label: frozenset() for label in labels}
    return names


def problems_in(expression: str, known: dict[str, dict[str, frozenset[str]]]) -> list[str]:
    """Names in a PromQL expression that digest does not export, and label matchers its
    metrics do not have (or whose fixed values do not include the one matched)."""
    found = []
    for name, matchers in re.findall(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}", expression):
        if name not in known:
            continue
        for label, operator, wanted in MATCHER.findall(matchers):
            allowed = known[name].get(label)
            if allowed is None:
                found.append(f"{name} has no label {label}")
            elif allowed and operator == "=" and wanted not in allowed:
                found.append(f"{name}{{{label}}} is never {wanted!r}")
            elif allowed and operator in ("=~", "!~"):
                found += [
                    f"{name}{{{label}}} is never {each!r}"
                    for each in wanted.split("|")
                    if each not in allowed
                ]
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expression)
    grouping = re.compile(r"\b(by|without|on|ignoring)\s*\(([^)]*)\)")
    for _, group in grouping.findall(bare):
        for label in filter(None, (part.strip() for part in group.split(","))):
            if not any(label in labels for labels in known.values()):
                found.append(f"no metric of digest's has the label {label}")
    for word in re.findall(r"[a-zA-Z_:][\w:]*", grouping.sub(" ", bare)):
        if word not in PROMQL and word not in known:
            found.append(f"{word} is not a metric digest exports")
    return found


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def test_the_checker_catches_a_drift() -> None:
    """The check itself works: an unknown name, label or label value is reported."""
    known = exported()
    assert problems_in("max(digest_readers)", known) == []
    assert problems_in("max(digest_reader)", known) == [
        "digest_reader is not a metric digest exports"
    ]
    assert problems_in('digest_messages_total{status="sent"}', known) == [
        "digest_messages_total has no label status"
    ]
    assert problems_in('digest_messages_total{outcome="delivered"}', known) == [
        "digest_messages_total{outcome} is never 'delivered'"
    ]
    assert problems_in("sum by (site) (digest_feed_fetches_total)", known) == [
        "no metric of digest's has the label site"
    ]


def test_each_alert_rule_names_only_what_digest_exports() -> None:
    found = rules()
    assert {rule["alert"] for rule in found} >= {
        "DigestSendMissed",
        "DigestFeedStale",
        "DigestComplaintRateHigh",
        "DigestOutboxStuck",
    }
    known = exported()
    for rule in found:
        assert problems_in(rule["expr"], known) == [], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_send_missed_rule_is_the_one_described() -> None:
    """A next slot over an hour in the past, unless a send succeeded since."""
    (rule,) = [rule for rule in rules() if rule["alert"] == "DigestSendMissed"]
    expression = " ".join(rule["expr"].split())
    assert "time() - max(digest_next_slot_timestamp_seconds) > 3600" in expression
    assert "unless" in expression and "digest_last_successful_send_timestamp_seconds" in expression
    (rate,) = [rule for rule in rules() if rule["alert"] == "DigestComplaintRateHigh"]
    assert rate["expr"].strip().endswith("> 0.001")


def test_the_dashboard_is_valid_and_its_queries_name_only_what_digest_exports() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert board["title"] == "digest" and board["uid"]
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    for panel in board["panels"]:
        place = panel["gridPos"]
        assert place["x"] >= 0 and place["x"] + place["w"] <= 24 and place["h"] > 0
    known = exported()
    queries = dashboard_queries()
    for title, expression in queries:
        assert problems_in(expression, known) == [], title
    # Every metric digest exports (but its version) has a panel.
    shown = " ".join(expression for _, expression in queries)
    assert [name for name in known if name not in shown] == ["digest_info"]


def test_promtool_accepts_the_rules_where_it_is_installed(tmp_path: Path) -> None:
    """`promtool check rules`, when promtool is on the PATH (it is not on the test machines:
    then only the checks above, which do not parse PromQL, stand for it)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
