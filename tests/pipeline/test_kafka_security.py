"""SASL and SSL pass-through against a real broker that requires them (PLAIN, SCRAM-SHA-512, TLS).

Starts its own single-node KRaft broker from deploy/kafka/lib with a SASL_PLAINTEXT listener and an
SSL listener on ports the kernel hands out (certificates made with the openssl CLI; the shared broker
has neither). Every log line at DEBUG is checked for the passwords.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from pipeline.errors import SinkError
from pipeline.records import from_json
from pipeline.sinks import KafkaConfig, KafkaSink
from tests.brokers import consume
from tests.pipeline.test_records import sample_records
from tests.servers import free_ports

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "deploy" / "kafka" / "lib"
PORT, CONTROLLER_PORT, INTERNAL_PORT, SSL_PORT = free_ports(4)
PLAIN_PASSWORD = "plain-" + uuid.uuid4().hex
SCRAM_PASSWORD = "scram-" + uuid.uuid4().hex
BOOTSTRAP = f"127.0.0.1:{PORT}"


def _properties(state: Path) -> str:
    return f"""
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{CONTROLLER_PORT}
listeners=SASL_PLAINTEXT://127.0.0.1:{PORT},CONTROLLER://127.0.0.1:{CONTROLLER_PORT},INTERNAL://127.0.0.1:{INTERNAL_PORT},SSL://127.0.0.1:{SSL_PORT}
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:{PORT},INTERNAL://127.0.0.1:{INTERNAL_PORT},SSL://127.0.0.1:{SSL_PORT}
controller.listener.names=CONTROLLER
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SSL:SSL
ssl.keystore.type=PEM
ssl.keystore.location={state}/broker-keystore.pem
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_plainuser="{PLAIN_PASSWORD}";
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs={state}/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
"""


def _make_certificates(state: Path) -> None:
    """A test CA and a broker certificate for 127.0.0.1 (PEM; the broker reads key + chain from one file)."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=state, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=avgrid test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
            "-subj", "/CN=127.0.0.1")
    (state / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "broker.pem", "-days", "2", "-extfile", "san.ext")
    (state / "broker-keystore.pem").write_text((state / "broker.key").read_text() + (state / "broker.pem").read_text())


def _java(*args: str) -> list[str]:
    return ["java", "-Xms128m", "-Xmx384m", "-cp", f"{LIB}/*", *args]


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory) -> dict:
    """``{"sasl": bootstrap, "ssl": bootstrap, "ca": CA file}`` of a broker with SASL and SSL listeners."""
    if not (LIB / ".complete").exists():
        pytest.skip("Kafka jars not fetched (make kafka-up)")
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", PORT)) == 0:
            pytest.skip(f"port {PORT} is in use")
    state = tmp_path_factory.mktemp("kafka-sasl")
    _make_certificates(state)
    props = state / "server.properties"
    props.write_text(_properties(state))
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    subprocess.run(_java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props),
                         "--add-scram", f"SCRAM-SHA-512=[name=scramuser,password={SCRAM_PASSWORD}]"),
                   check=True, capture_output=True, timeout=120)
    log = open(state / "broker.log", "wb")
    proc = subprocess.Popen(_java("kafka.Kafka", str(props)), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (state / "broker.log").read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "SASL broker did not open its port in 120 s"
                time.sleep(0.5)
        yield {"sasl": BOOTSTRAP, "ssl": f"127.0.0.1:{SSL_PORT}", "ca": str(state / "ca.pem")}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def sasl_config(mechanism: str, username: str, password: str, **kw) -> KafkaConfig:
    return KafkaConfig(BOOTSTRAP, prefix=f"sasl{uuid.uuid4().hex[:8]}", security_protocol="SASL_PLAINTEXT",
                       sasl_mechanism=mechanism, sasl_username=username, sasl_password=password,
                       **{"connect_timeout_s": 60.0, **kw})


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mechanism,username,password", [("PLAIN", "plainuser", PLAIN_PASSWORD),
                                                         ("SCRAM-SHA-512", "scramuser", SCRAM_PASSWORD)],
                         ids=["PLAIN", "SCRAM-SHA-512"])
def test_sasl_credentials_pass_through_and_stay_out_of_logs(secure_broker, tmp_path, caplog, mechanism,
                                                            username, password):
    caplog.set_level(logging.DEBUG)
    cfg = sasl_config(mechanism, username, password, dead_letter_dir=str(tmp_path))
    records = [r for r in sample_records("cam1", 3) if r.kind == "sentiment"]
    sink = KafkaSink.connect(cfg)
    sink.write(records)
    sink.close()
    assert sink.stats.written["sentiment"] == 3 and sink.stats.dead_lettered == 0

    msgs = consume(BOOTSTRAP, [cfg.topic("sentiment")], 3, security_protocol="SASL_PLAINTEXT",
                   sasl_mechanism=mechanism, sasl_plain_username=username, sasl_plain_password=password)
    got = [from_json("sentiment", m.value) for m in msgs]
    assert got == records

    wrong = "wrong-" + uuid.uuid4().hex
    with pytest.raises(SinkError, match=f"kafka {BOOTSTRAP}: cannot connect") as err:
        KafkaSink.connect(sasl_config(mechanism, username, wrong, connect_timeout_s=3.0))
    assert wrong not in str(err.value) and f"sasl_mechanism={mechanism}, user={username}" in str(err.value)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"Authenticated as {username}" in logged          # the good credentials really were used
    for secret in (password, wrong):
        assert secret not in logged and secret not in caplog.text


@pytest.mark.timeout(120)
def test_ssl_settings_pass_through(secure_broker):
    cfg = KafkaConfig(secure_broker["ssl"], prefix=f"ssl{uuid.uuid4().hex[:8]}", security_protocol="SSL",
                      ssl_cafile=secure_broker["ca"], connect_timeout_s=60.0)
    records = [r for r in sample_records("cam1", 3) if r.kind == "caption"]
    sink = KafkaSink.connect(cfg)
    sink.write(records)
    sink.close()
    assert sink.stats.written["caption"] == 3
    msgs = consume(cfg.bootstrap, [cfg.topic("caption")], 3, security_protocol="SSL",
                   ssl_cafile=secure_broker["ca"])
    assert [from_json("caption", m.value) for m in msgs] == records
    # the CA as read on another machine (the driver), shipped with the settings: no file here
    shipped = dataclasses.replace(cfg, ssl_cafile="/nonexistent/ca.pem",
                                  ssl_pem=(("ssl_cafile", Path(secure_broker["ca"]).read_bytes()),))
    sink = KafkaSink.connect(shipped)
    pem_dir = sink._pem_dir
    sink.write(records)
    sink.close()
    assert sink.stats.written["caption"] == 3 and not Path(pem_dir).exists()
    # a client that does not trust the broker's CA gets a clear error, not a hang
    with pytest.raises(SinkError, match=f"kafka 127.0.0.1:{SSL_PORT}: cannot connect: .*security_protocol=SSL"):
        KafkaSink.connect(KafkaConfig(cfg.bootstrap, security_protocol="SSL", connect_timeout_s=3.0))


def _ray_logs() -> str:
    """Every log file of the running Ray session, as one text."""
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    return "\n".join(p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file())


@pytest.mark.timeout(300)
def test_avgrid_annotate_writes_to_a_scram_broker_with_the_password_from_a_file(secure_broker, tmp_path, ray_local,
                                                                                 capsys, caplog, monkeypatch):
    """The CLI's Kafka security options reach the sink actor: records arrive, and the password shows up
    in no output, log, Ray log or error; a wrong one fails every input with the reason, not a hang."""
    from kafka import KafkaConsumer

    from pipeline.cli import main
    from tests.datasets import read_kind
    from tests.media import MediaSpec, make_media

    monkeypatch.delenv("AVGRID_KAFKA_SASL_PASSWORD", raising=False)
    caplog.set_level(logging.DEBUG)
    clip = make_media(tmp_path / "clip.mp4", MediaSpec(duration_s=6.0, width=160, height=120, flashes=(2.0,),
                                                       clicks=(4.0,))).path
    pw = tmp_path / "kafka-password"
    pw.write_text(SCRAM_PASSWORD + "\n")
    prefix = f"cli{uuid.uuid4().hex[:8]}"
    flags = ["--kafka", BOOTSTRAP, "--kafka-prefix", prefix, "--kafka-security-protocol", "SASL_PLAINTEXT",
             "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-username", "scramuser", "--no-progress"]
    out = tmp_path / "out"
    assert main(["annotate", str(clip), "--out", str(out), *flags, "--kafka-sasl-password-file", str(pw)]) == 0
    expected = {r["record_id"] for k in ("event", "caption") for r in read_kind(str(out), k)}
    assert expected
    consumer = KafkaConsumer(f"{prefix}.event", f"{prefix}.caption", bootstrap_servers=BOOTSTRAP,
                             security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                             sasl_plain_username="scramuser", sasl_plain_password=SCRAM_PASSWORD,
                             auto_offset_reset="earliest", consumer_timeout_ms=5000, enable_auto_commit=False)
    got = {json.loads(m.value)["record_id"] for m in consumer}
    consumer.close()
    assert got == expected

    wrong = tmp_path / "wrong-password"
    wrong_pw = "wrong-" + uuid.uuid4().hex
    wrong.write_text(wrong_pw)
    rc = main(["annotate", str(clip), "--out", str(tmp_path / "out2"), *flags, "--kafka-sasl-password-file",
               str(wrong)])
    printed = capsys.readouterr()
    assert rc == 1 and "cannot connect" in printed.out + printed.err and "user=scramuser" in printed.out + printed.err
    for secret in (SCRAM_PASSWORD, wrong_pw):
        assert secret not in printed.out + printed.err and secret not in caplog.text and secret not in _ray_logs()
