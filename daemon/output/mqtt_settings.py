"""The ``mqtt:`` settings of ``mqtt://`` / ``mqtts://`` targets. Light: the config imports
it; config.yaml documents each key."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MqttConfig:
    """Settings of ``mqtt://``/``mqtts://`` targets (:mod:`intentd.daemon.output.mqtt`)."""

    qos: int = 1  # 0: at most once; 1: at least once (the Hermes default); 2: exactly once
    retain: bool = False
    hermes: bool = True  # hermes/intent/<name> and hermes/nlu/intentNotRecognized
    events: bool = True  # intentd's own event JSON on <topic_prefix>/<stream>/event
    topic_prefix: str = "intentd"
    site_id: str = ""  # Hermes siteId; "" = the stream's name
    lang: str = ""  # Hermes lang; "" = null
    client_id: str = ""  # "" = intentd-<host>-<pid>
    username: str = ""  # when the URL has none
    password: str = field(default="", repr=False)
    ca_file: str = ""  # mqtts: CA bundle; "" = the system's
    cert_file: str = ""  # mqtts: client certificate (with key_file)
    key_file: str = ""
    keepalive_s: int = 60
    queue_events: int = 10000  # waiting while the broker is away; beyond, oldest dropped
    reconnect_max_s: float = 30.0  # reconnect backoff doubles from 1 s up to this
