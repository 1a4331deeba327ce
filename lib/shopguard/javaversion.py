"""Which Java versions shopguard runs on, the one place that rule is written.

Spark 4.2 runs on Java 17, 21 and 25, and deprecates 25 before 25.0.3: those builds' G1 collector may move
objects a native library has pinned (JDK-8377811), which corrupted zstd-compressed Parquet and ORC files
silently on Spark clusters. A silent loss is worse than a job that does not start, so those builds are
refused; any other version from 17 on runs, with a warning where Spark does not name it.

Checked by `./submit.sh setup` before it installs anything (this file runs on its own there, with the
machine's python3, before the virtual environment exists: standard library only), and by every job on the
JVM its session started (`shopguard.runtime.build_spark`), since JAVA_HOME may change after setup, and on a
cluster on its executors' JVMs too (`shopguard.runtime.check_executors_java`).

    python3 lib/shopguard/javaversion.py "25.0.2"    # exit 1 and the reason; exit 0 (and any warning) otherwise
"""

from __future__ import annotations

import re
import sys

SUPPORTED_FEATURES = (17, 21, 25)  # the Java versions Spark 4.2 names
# feature release -> ((interim, update) of its first build shopguard runs on, why the earlier ones are refused)
FLOORS: dict[int, tuple[tuple[int, int], str]] = {
    25: (
        (0, 3),
        "its G1 collector may move pinned objects and corrupt compressed Parquet silently (JDK-8377811)",
    ),
}
_VERSION = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def parse(version: str) -> tuple[int, int, int]:
    """(feature, interim, update) of a `java.version` string: '25.0.3', '25' (a GA release), '21-ea',
    '1.8.0_392' (Java 8's scheme)."""
    found = _VERSION.match(version.strip())
    if found is None:
        raise ValueError(f"not a Java version: {version!r}")
    numbers = [int(part) if part else 0 for part in found.groups()]
    if numbers[0] == 1:  # 1.8.0_392 is Java 8
        return numbers[1], 0, 0
    return numbers[0], numbers[1], numbers[2]


def refusal(version: str) -> str | None:
    """Why shopguard does not run on Java `version`, naming what to install instead; None where it does."""
    feature, interim, update = parse(version)
    if feature < 17:
        return f"Java {version}: Spark 4 needs Java 17 or newer (set JAVA_HOME, or install openjdk-17-jre-headless)"
    if feature in FLOORS and (interim, update) < FLOORS[feature][0]:
        (first_interim, first_update), why = FLOORS[feature]
        first = f"{feature}.{first_interim}.{first_update}"
        return (
            f"Java {version}: Spark 4.2 deprecates Java {feature} before {first} because {why}; "
            f"install {first} or later, or point JAVA_HOME at Java 17 or 21"
        )
    return None


def warning(version: str) -> str | None:
    """A line for a version that runs but that Spark does not name (a non-LTS release), else None."""
    feature = parse(version)[0]
    if feature in SUPPORTED_FEATURES or refusal(version) is not None:
        return None
    listed = ", ".join(map(str, SUPPORTED_FEATURES))
    return f"Java {version} is not one Spark 4.2 names ({listed}); it may work, but shopguard is not tested on it"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: javaversion.py VERSION", file=sys.stderr)
        return 2
    try:
        reason = refusal(argv[0])
    except ValueError as exc:
        reason = str(exc)
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    note = warning(argv[0])
    if note is not None:
        print(f"warning: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
