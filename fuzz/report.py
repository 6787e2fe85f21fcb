#!/usr/bin/env python3
"""Sums the fuzzing runs logged under fuzz/work/logs/ into a table (docs/fuzzing.md).

    python3 fuzz/report.py

Per target: the fuzzing time (run.sh's own measure, after the build), runs (libFuzzer's
executed units), exec/s over all of them, the coverage of the last run (cov: edges, ft:
features, corpus entries), and the crashes (runs that ended on a finding).
"""

import glob
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    targets = {}
    for log in sorted(glob.glob(os.path.join(HERE, "work", "logs", "*.log"))):
        name = re.sub(r"-\d{8}-\d{6}\.log$", "", os.path.basename(log))
        text = open(log, errors="replace").read()
        t = targets.setdefault(
            name, {"runs": 0, "secs": 0, "sessions": 0, "crashes": 0, "last": None}
        )
        ran = re.search(r"^hull-fuzz: target=\S+ seconds=(\d+) exit=(\d+)", text, re.M)
        units = re.search(r"^stat::number_of_executed_units: *(\d+)", text, re.M)
        lines = re.findall(r"^#(\d+)\s+\S+\s+cov: (\d+) ft: (\d+) corp: (\d+)", text, re.M)
        if not ran or not lines:
            continue  # a run that never started fuzzing (build failure)
        t["sessions"] += 1
        t["secs"] += int(ran.group(1))
        t["runs"] += int(units.group(1)) if units else int(lines[-1][0])
        if re.search(r"deadly signal|panicked at|ERROR: AddressSanitizer|ERROR: libFuzzer", text):
            t["crashes"] += 1
        t["last"] = lines[-1]
    print("| target | fuzzing time | runs | exec/s | cov (edges) | ft (features) | corpus | crashes |")
    print("|---|---|---|---|---|---|---|---|")
    total = 0
    for name, t in sorted(targets.items()):
        if not t["sessions"]:
            continue
        total += t["secs"]
        _, cov, ft, corp = t["last"] or ("", "-", "-", "-")
        rate = t["runs"] // t["secs"] if t["secs"] else 0
        print(
            f"| `{name}` | {t['secs'] // 60} min {t['secs'] % 60} s | {t['runs']} | {rate} | "
            f"{cov} | {ft} | {corp} | {t['crashes']} |"
        )
    print(f"\nTotal fuzzing time: {total // 60} min {total % 60} s.")


if __name__ == "__main__":
    main()
