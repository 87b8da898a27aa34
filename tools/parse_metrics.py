"""Reads Prometheus text (the exposition format 0.0.4) on stdin with
prometheus_client's own parser and prints what it understood as JSON, for
tests/metrics.rs to check wren's /metrics against a real client:

    {"families": {name: type}, "samples": [{"name", "labels", "value"}]}

A line the parser refuses fails the script (exit 1, the error on stderr).
"""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    families = {}
    samples = []
    for family in text_string_to_metric_families(sys.stdin.read()):
        families[family.name] = family.type
        for sample in family.samples:
            samples.append(
                {"name": sample.name, "labels": sample.labels, "value": sample.value}
            )
    json.dump({"families": families, "samples": samples}, sys.stdout)


if __name__ == "__main__":
    main()
