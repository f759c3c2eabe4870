"""The stack's Prometheus: its generated configuration and its rules, checked and unit-tested by promtool."""

from __future__ import annotations

import subprocess

import yaml

from shopflow.deploy.system_servers import RULES_FILE, Prometheus
from shopflow.settings import Settings


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True)


def test_the_generated_configuration_passes_promtool_and_finds_processes_by_file(tmp_path):
    settings = Settings(home=tmp_path / "home", prometheus_scrape_interval_s=2, postgres_password="unused")
    prometheus = Prometheus("prometheus", settings, needs_java=False)

    prometheus.prepare()

    checked = _promtool("check", "config", str(prometheus.config_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(prometheus.config_path.read_text())
    assert config["global"]["scrape_interval"] == "2s"
    assert config["global"]["external_labels"] == {"stack": settings.stack_name}
    [files] = [c["file_sd_configs"][0]["files"] for c in config["scrape_configs"] if "file_sd_configs" in c]
    assert files == [str(settings.targets_dir / "*.json")]


def test_the_rules_pass_promtool_check_and_their_unit_tests():
    checked = _promtool("check", "rules", str(RULES_FILE))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    tested = _promtool("test", "rules", str(RULES_FILE.with_name("rules_test.yml")))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_severity_a_summary_an_action_and_a_unit_test():
    rules = yaml.safe_load(RULES_FILE.read_text())
    alerts = [r for group in rules["groups"] for r in group["rules"] if "alert" in r]
    tested = {t["alertname"] for case in yaml.safe_load(RULES_FILE.with_name("rules_test.yml").read_text())["tests"]
              for t in case.get("alert_rule_test", [])}

    assert len(alerts) >= 9
    for alert in alerts:
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["action"], alert["alert"]
    assert {a["alert"] for a in alerts} == tested
