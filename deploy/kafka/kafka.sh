#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft) for development, tests and CI.
#
#   deploy/kafka/kafka.sh up      start (no-op when ours is already up); prints the bootstrap address
#   deploy/kafka/kafka.sh down    stop gracefully, then SIGKILL; removes the data directory
#   deploy/kafka/kafka.sh kill    SIGKILL only, data kept (fault-injection tests restart with `up`)
#   deploy/kafka/kafka.sh status  exit 0 when our broker process is alive
#   deploy/kafka/kafka.sh consume TOPIC [OPTION...]
#                                 the standard console consumer (kafka-console-consumer) on TOPIC (or on
#                                 the topics an `--include REGEX` option names), run from the same jars;
#                                 OPTIONs are its own (--from-beginning, --max-messages N, --timeout-ms MS,
#                                 --property print.key=true, ...); records go to stdout, one per line
#   deploy/kafka/kafka.sh cluster up|down|status|pid N|kill N|start N|stop N|cont N|wait-ready
#                                 a 3-node KRaft cluster (each node broker + controller) for fault trials:
#                                 replication factor 3, min ISR 2; `kill N` SIGKILLs node N (data kept),
#                                 `start N` starts it again, `stop N` / `cont N` SIGSTOP / SIGCONT it;
#                                 `up` prints the bootstrap list
#
# The broker is the `org.apache.kafka:kafka_2.13` jar and its dependencies, fetched from Maven
# Central by `mvn dependency:copy-dependencies` (cached in ~/.m2) and run with plain `java`.
# Environment:
#   AVGRID_KAFKA_PORT            client port on 127.0.0.1 (default 9092)
#   AVGRID_KAFKA_CONTROLLER_PORT KRaft controller port (default client port + 1)
#   AVGRID_KAFKA_STATE           state directory: data, log, pid, config (default /tmp/avgrid-kafka-<port>)
#   AVGRID_PYTHON                python with kafka-python, for the readiness check (default .venv/bin/python)
#   AVGRID_KAFKA_BOOTSTRAP       `consume`: the cluster to read (default 127.0.0.1:<client port>)
#   AVGRID_KAFKA_CLUSTER_PORT    `cluster`: node N (1-3) listens on this + N - 1, its controller on this + N + 2
#                                (default 19392); state in /tmp/avgrid-kafka-cluster-<port>
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${AVGRID_KAFKA_PORT:-9092}"
cport="${AVGRID_KAFKA_CONTROLLER_PORT:-$((port + 1))}"
state="${AVGRID_KAFKA_STATE:-/tmp/avgrid-kafka-$port}"
lib="$here/lib"
python="${AVGRID_PYTHON:-$repo/.venv/bin/python}"
pidfile="$state/broker.pid"
bootstrap="127.0.0.1:$port"

log() { echo "kafka.sh: $*" >&2; }

# exit 0 when pid file $1 names a live Kafka broker process
pid_alive() {
  [[ -f "$1" ]] || return 1
  local pid
  pid="$(cat "$1")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -q "kafka.Kafka" "/proc/$pid/cmdline" 2>/dev/null
}

alive() { pid_alive "$pidfile"; }

need_java() {
  command -v java >/dev/null || { log "java not found: install a JDK 17 (apt-get install -y openjdk-17-jre-headless)"; exit 1; }
}

need_python() {
  [[ -x "$python" ]] || { log "$python not found: run 'make venv' first or set AVGRID_PYTHON"; exit 1; }
}

fetch_jars() {
  # the stamp holds the pom's hash: a jar set fetched for an older pom.xml is fetched again
  local want
  want="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"
  if [[ -f "$lib/.complete" && "$(cat "$lib/.complete")" == "$want" ]]; then return; fi
  command -v mvn >/dev/null || { log "mvn not found: install maven (apt-get install -y maven)"; exit 1; }
  log "fetching Kafka jars with Maven (cached in ~/.m2)..."
  rm -rf "$lib.new"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$lib.new" -DincludeScope=runtime >&2
  echo "$want" >"$lib.new/.complete"
  # swapped in whole: a broker already running from lib/ finds the same jars at the same paths
  rm -rf "$lib.old"
  if [[ -d "$lib" ]]; then mv "$lib" "$lib.old"; fi
  mv "$lib.new" "$lib"
  rm -rf "$lib.old"
}

# server.properties and log4j2.properties of one KRaft node (broker + controller) in directory $1:
# node id $2, controller quorum voters $3, client port $4, controller port $5, replication factor $6
# for topics and internal topics alike (one node: 1, or consumer groups and transactions wait forever
# for replicas that do not exist), min ISR $7; lines on stdin are appended (what only one kind of node
# needs)
node_properties() {
  local d="$1" id="$2" voters="$3" p="$4" cp="$5" rf="$6" isr="$7"
  mkdir -p "$d/data"
  {
    cat <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$p,CONTROLLER://127.0.0.1:$cp
advertised.listeners=PLAINTEXT://127.0.0.1:$p
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$d/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
auto.create.topics.enable=true
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
# fsync on every write: "nothing acknowledged is lost" must survive kill -9 of the broker in tests.
log.flush.interval.messages=1
EOF
    cat
  } >"$d/server.properties"
  log4j_config "$d"
}

write_config() {
  node_properties "$state" 1 "1@127.0.0.1:$cport" "$port" "$cport" 1 1 </dev/null
}

# broker.log in directory $1: Kafka's own lines at INFO, the client libraries' at WARN
log4j_config() {
  cat >"$1/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $1/broker.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.org.name = org.apache.kafka
logger.org.level = WARN
EOF
}

run_java() {
  java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$state/log4j2.properties" -cp "$lib/*" "$@"
}

# the broker of node directory $1 (heap -Xms$2 -Xmx$3), its pid in $1/broker.pid. setsid: the broker
# must outlive the shell (and make's process group) that started it.
launch() {
  local d="$1"
  setsid java "-Xms$2" "-Xmx$3" -XX:+UseG1GC -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$d/log4j2.properties" -cp "$lib/*" \
    kafka.Kafka "$d/server.properties" >"$d/stdout.log" 2>&1 < /dev/null &
  echo $! >"$d/broker.pid"
}

wait_ready() {
  # Ready means: a record can be produced and consumed back, not only that the port is open.
  local deadline=$((SECONDS + ${AVGRID_KAFKA_START_TIMEOUT:-90}))
  while (( SECONDS < deadline )); do
    if ! alive; then
      log "broker exited during start-up; last log lines:"
      tail -n 30 "$state/broker.log" "$state/stdout.log" >&2 2>/dev/null || true
      return 1
    fi
    if "$python" "$here/ready.py" "$bootstrap" 2>>"$state/ready.log"; then
      return 0
    fi
    sleep 1
  done
  log "broker at $bootstrap not ready after ${AVGRID_KAFKA_START_TIMEOUT:-90}s; see $state/broker.log"
  return 1
}

up() {
  if alive; then
    wait_ready
    echo "$bootstrap"
    return
  fi
  need_java
  need_python
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "port $port is in use by another process; set AVGRID_KAFKA_PORT to use a free port"
    exit 1
  fi
  fetch_jars
  write_config
  if [[ ! -f "$state/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(run_java kafka.tools.StorageTool random-uuid 2>"$state/format.log" | tail -n 1)"
    run_java kafka.tools.StorageTool format -t "$cluster_id" -c "$state/server.properties" \
      >"$state/format.log" 2>&1 || { log "storage format failed:"; cat "$state/format.log" >&2; exit 1; }
  fi
  log "starting broker on $bootstrap (state in $state)"
  launch "$state" 256m 512m
  wait_ready
  echo "$bootstrap"
}

stop() {
  local signal="$1"
  if ! alive; then
    rm -f "$pidfile"
    return 0
  fi
  local pid
  pid="$(cat "$pidfile")"
  if [[ "$signal" == TERM ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  rm -f "$pidfile"
}

consume() {
  # TOPIC first is --topic TOPIC; without it, name the topics in the options (--include REGEX)
  if [[ $# -lt 1 ]]; then
    echo "usage: $0 consume TOPIC|--include REGEX [kafka-console-consumer option...]" >&2; exit 2
  fi
  local topic=()
  if [[ "$1" != -* ]]; then topic=(--topic "$1"); shift; fi
  need_java
  fetch_jars
  exec java -Xmx256m -Djava.awt.headless=true "-Dlog4j2.configurationFile=$here/tools-log4j2.properties" \
    -cp "$lib/*" org.apache.kafka.tools.consumer.ConsoleConsumer \
    --bootstrap-server "${AVGRID_KAFKA_BOOTSTRAP:-$bootstrap}" ${topic[@]+"${topic[@]}"} "$@"
}

# -- a 3-node cluster for fault trials (benchmarks/reliability.py) ---------------------------------
cbase="${AVGRID_KAFKA_CLUSTER_PORT:-19392}"
cstate="/tmp/avgrid-kafka-cluster-$cbase"
cluster_bootstrap() { echo "127.0.0.1:$cbase,127.0.0.1:$((cbase + 1)),127.0.0.1:$((cbase + 2))"; }
node_pidfile() { echo "$cstate/node$1/broker.pid"; }

node_alive() { pid_alive "$(node_pidfile "$1")"; }

# node $1 of 3: replication factor 3, min ISR 2; a killed node leaves the ISR within seconds, so
# acks=all goes on with the other two
node_config() {
  local n="$1"
  node_properties "$cstate/node$n" "$n" \
    "1@127.0.0.1:$((cbase + 3)),2@127.0.0.1:$((cbase + 4)),3@127.0.0.1:$((cbase + 5))" \
    "$((cbase + n - 1))" "$((cbase + n + 2))" 3 2 <<EOF
broker.session.timeout.ms=6000
broker.heartbeat.interval.ms=1000
replica.lag.time.max.ms=6000
EOF
}

node_start() {
  if node_alive "$1"; then return; fi
  launch "$cstate/node$1" 128m 384m
}

node_signal() {
  local sig="$1" n="$2" pid
  node_alive "$n" || { log "cluster node $n is not running"; return 1; }
  pid="$(cat "$(node_pidfile "$n")")"
  kill "-$sig" "$pid"
  if [[ "$sig" == KILL ]]; then
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$(node_pidfile "$n")"
  fi
}

cluster_ready() {
  local deadline=$((SECONDS + ${AVGRID_KAFKA_START_TIMEOUT:-120}))
  while (( SECONDS < deadline )); do
    if "$python" "$here/ready.py" "$(cluster_bootstrap)" 2>>"$cstate/ready.log"; then return 0; fi
    sleep 1
  done
  log "cluster at $(cluster_bootstrap) not ready; see $cstate/node*/broker.log"
  return 1
}

cluster_cmd() {
  local cmd="${1:-}" n="${2:-}"
  case "$cmd" in
    up)
      need_java
      need_python
      fetch_jars
      mkdir -p "$cstate"
      local id=""
      [[ -f "$cstate/cluster.id" ]] && id="$(cat "$cstate/cluster.id")"
      if [[ -z "$id" ]]; then     # what StorageTool random-uuid prints, without a JVM start
        id="$("$python" -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
        echo "$id" >"$cstate/cluster.id"
      fi
      local pids=()
      for i in 1 2 3; do
        node_config "$i"
        if [[ ! -f "$cstate/node$i/data/meta.properties" ]]; then
          java -cp "$lib/*" kafka.tools.StorageTool format -t "$id" -c "$cstate/node$i/server.properties" \
            >"$cstate/format$i.log" 2>&1 &
          pids+=("$!")
        fi
      done
      for pid in "${pids[@]}"; do
        wait "$pid" || { log "storage format failed:"; cat "$cstate"/format*.log >&2; exit 1; }
      done
      log "starting a 3-node cluster on $(cluster_bootstrap) (state in $cstate)"
      for i in 1 2 3; do node_start "$i"; done
      cluster_ready
      cluster_bootstrap ;;
    down)
      for i in 1 2 3; do
        if node_alive "$i"; then kill -CONT "$(cat "$(node_pidfile "$i")")" 2>/dev/null || true; node_signal KILL "$i"; fi
      done
      rm -rf "$cstate"; log "cluster on $(cluster_bootstrap) stopped" ;;
    status) for i in 1 2 3; do node_alive "$i" || exit 1; done; cluster_bootstrap ;;
    pid) node_alive "$n" && cat "$(node_pidfile "$n")" ;;
    kill) node_signal KILL "$n" ;;
    stop) node_signal STOP "$n" ;;
    cont) node_signal CONT "$n" ;;
    start) node_start "$n" ;;
    wait-ready) cluster_ready ;;
    *) echo "usage: $0 cluster up|down|status|pid N|kill N|start N|stop N|cont N|wait-ready" >&2; exit 2 ;;
  esac
}

case "${1:-}" in
  up) up ;;
  down) stop TERM; rm -rf "$state"; log "broker on $bootstrap stopped" ;;
  kill) stop KILL; log "broker on $bootstrap killed (data kept in $state)" ;;
  status) if alive; then echo "$bootstrap"; else exit 1; fi ;;
  consume) shift; consume "$@" ;;
  cluster) shift; cluster_cmd "$@" ;;
  *) echo "usage: $0 up|down|kill|status|consume TOPIC|--include REGEX [OPTION...]|cluster up|down|status|..." >&2
     exit 2 ;;
esac
