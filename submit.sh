#!/usr/bin/env bash
# shopguard's one entry point: set up, test, run the demo, or submit a job to Spark.
#
#   ./submit.sh setup                      virtual environment + dependencies (+ a Java check)
#   ./submit.sh test [pytest args]         the whole test suite
#   ./submit.sh demo [job args]            generate -> features -> train -> score -> summary on demo data
#   ./submit.sh <job> [job args]           spark-submit jobs/<job>.py: generate features train score summary
#                                          evaluate label maintenance;  ./submit.sh <job> --help for its options
#   ./submit.sh models | runs [args]       model versions (* the champion); past job runs and their outcome
#   ./submit.sh promote VERSION|--rollback the model that decides, by hand; no args: the promotion record
#   ./submit.sh nightly --date D | --from D1 --to D2   features, train when due, score, evaluate, monitor
#   ./submit.sh cluster-up | cluster-down  a Spark standalone cluster on this machine (--profile standalone)
#   ./submit.sh warehouse [up|down]        the metastore + Spark's Thrift JDBC server (docs/warehouse.md)
#
# Job args: --profile local|cluster, --conf-file FILE, --conf-dir DIR, --set section.key=value, --master URL,
# --date YYYY-MM-DD, --log-file FILE. Arguments and settings are checked before Spark starts.
# Exit codes: 0 success, 1 unexpected, 2 configuration or arguments, 3 missing/empty/unreadable input,
# 4 another writer committed first (docs/operations.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${SHOPGUARD_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
cd "$ROOT"

die() { echo "submit.sh: $*" >&2; exit 1; }
usage_error() { echo "submit.sh: $*" >&2; exit 2; }  # configuration or arguments: nothing ran

check_java() {
  local java="java"
  [[ -n "${JAVA_HOME:-}" ]] && java="$JAVA_HOME/bin/java"
  command -v "$java" >/dev/null 2>&1 || die "Java not found. Spark 4 needs Java 17 or newer: sudo apt-get install -y openjdk-17-jre-headless"
  local version
  version="$("$java" -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')"
  # the versions shopguard runs on are written once, in Python (standard library only: no venv yet)
  python3 "$ROOT/lib/shopguard/javaversion.py" "$version" || die "Java at $(command -v "$java") refused (above)"
  echo "Java $version"
}

need_venv() {
  [[ -x "$PY" ]] || usage_error "no virtual environment at $VENV; run ./submit.sh setup first"
  # Python workers must run the interpreter that has pandas, pyarrow and Keras.
  export PYSPARK_PYTHON="$PY" PYSPARK_DRIVER_PYTHON="$PY"
  export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}" TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
  unset SPARK_HOME  # use the Spark that pyspark ships, whatever else is on the machine
  # Spark's log configuration (warnings only) and the JVM's class archive come with the driver's options
  # (shopguard.driverjvm), not through SPARK_CONF_DIR: a directory on the class path cannot be archived.
  # The jobs find conf/ here, also when the driver imports the package from the zip given to --py-files.
  export SHOPGUARD_CONF_DIR="${SHOPGUARD_CONF_DIR:-$ROOT/conf}"
}

pip_install() {
  # Quiet, but a failure stops setup with pip's own output.
  local out
  out="$("$PY" -m pip install --quiet "$@" 2>&1)" || { echo "$out" >&2; die "pip install $* failed"; }
  [[ -z "$out" ]] || echo "$out" | grep -v "^WARNING: Location" || true
}

install_chromium() {
  # The evaluation report is checked in a real browser by the tests (Debian's chromium package).
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then return; fi
  local sudo=""
  [[ "$(id -u)" == 0 ]] || sudo="sudo -n"
  if command -v apt-get >/dev/null 2>&1 && { [[ -z "$sudo" ]] || sudo -n true 2>/dev/null; }; then
    echo "installing Debian's chromium (for the report rendering test)"
    $sudo apt-get install -y -q chromium >/dev/null 2>&1 \
      || { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q chromium >/dev/null 2>&1; } \
      || echo "submit.sh: could not install chromium; the report rendering test will fail until it is installed" >&2
  else
    echo "submit.sh: please install chromium (apt-get install chromium); the report rendering test needs it" >&2
  fi
}

submit() {
  local job="$1"; shift
  [[ -f "jobs/$job.py" ]] || usage_error "unknown job '$job'; expected one of: $(ls jobs/*.py | xargs -n1 basename | sed 's/\.py$//' | tr '\n' ' ')(or setup, test, demo, models, runs)"
  need_venv
  local arg
  for arg in "$@"; do
    [[ "$arg" == "-h" || "$arg" == "--help" ]] && exec "$PY" -m shopguard.cli help "$job"
  done
  local options=() text status=0
  # Every argument and setting is checked here, before a JVM starts: a mistake costs a second, not ten.
  text="$("$PY" -m shopguard.cli submit-args "$job" "$@")" || status=$?
  (( status == 0 )) || exit "$status"
  mapfile -t options <<< "$text"
  local master="${options[1]}"
  if [[ "$master" != local* ]]; then
    # Executors get the package as a zip; their Python environment comes from spark.archives (docs/cluster.md).
    mkdir -p build && rm -f build/shopguard.zip
    (cd lib && "$PY" -m zipfile -c ../build/shopguard.zip shopguard)
    options+=(--py-files build/shopguard.zip)
  fi
  "$VENV/bin/spark-submit" "${options[@]}" "jobs/$job.py" "$@"
}

case "${1:-help}" in
  setup)
    command -v python3 >/dev/null || die "python3 not found; install Python 3.11"
    check_java
    python3 -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' || die "Python 3.11 or newer needed, found $(python3 --version)"
    [[ -x "$PY" ]] || python3 -m venv "$VENV"
    pip_install --upgrade pip
    pip_install -e ".[dev,bench]"
    install_chromium
    # Delta Lake's jars for this Spark, through Spark's own Ivy from Maven Central (conf/spark/ivysettings.xml)
    # into storage.delta_jars (git-ignored); set storage.delta_jars: null in conf/local to go without them.
    "$PY" -m shopguard.deltajars 2> >(grep -v "^\s*found \|^downloading \|SUCCESSFUL" >&2) \
      || die "could not fetch Delta's jars (above); set storage.delta_jars: null in conf/local to use delta-rs only"
    # The driver JVM's class-data archive (spark.class_archive): jobs start ~3 s sooner. Without it they run.
    PYSPARK_PYTHON="$PY" "$PY" -m shopguard.driverjvm \
      || echo "submit.sh: no class archive (above); jobs start without it, ~3 s slower each" >&2
    TF_CPP_MIN_LOG_LEVEL=3 "$PY" -c 'import pyspark, deltalake, keras, shopguard; print(f"pyspark {pyspark.__version__}, deltalake {deltalake.__version__}, keras {keras.__version__}: ready")'
    ;;
  test)
    shift
    need_venv
    # lint, formatting and types first: seconds, not the half hour of the suite
    "$VENV/bin/ruff" check lib jobs tests bench && "$VENV/bin/ruff" format --check --quiet lib jobs tests bench \
      || die "ruff found problems (above): .venv/bin/ruff check --fix lib jobs tests bench && .venv/bin/ruff format lib jobs tests bench"
    "$PY" -m mypy || die "mypy found type errors (above); the settings are in pyproject.toml [tool.mypy]"
    exec "$PY" -m pytest "$@"
    ;;
  demo)
    shift
    need_venv
    date="$("$PY" -c 'import datetime as d; print(d.datetime.now(d.timezone.utc).date() - d.timedelta(days=1))')"
    submit generate --end-date "$date" "$@"
    submit features --date "$date" "$@"
    submit train --date "$date" "$@"
    submit score --date "$date" "$@"
    submit summary --date "$date" "$@"
    ;;
  models|runs|promote)
    need_venv
    exec "$PY" -m shopguard.cli "$@"
    ;;
  warehouse)
    need_venv
    shift
    exec "$PY" -m shopguard.warehouse "${@:-up}"
    ;;
  cluster-up|cluster-down)
    need_venv
    command="${1#cluster-}"; shift
    exec "$PY" -m shopguard.cluster "$command" "$@"
    ;;
  help|-h|--help)
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    ;;
  *)
    submit "$@"
    ;;
esac
