"""The MQTT sink: verdicts as Rhasspy Hermes messages, and intentd's own events, on a broker.

``mqtt://[USER:PASS@]HOST[:PORT][?site_id=..&topic_prefix=..]`` (``mqtts://`` for TLS;
parsed in :mod:`.targets`; settings in the config's ``mqtt:`` section). Per event:

- an intent -> ``hermes/intent/<name>``, a no_match -> ``hermes/nlu/intentNotRecognized``
  (payloads: :mod:`.hermes`; ``siteId`` is the stream's name unless ``site_id`` is set);
- every event -> ``<topic_prefix>/<stream>/event`` (``<topic_prefix>/stats`` for stats) as
  the same JSON line stdout carries.

Delivery: ``emit`` only appends to a bounded queue (the worker never waits on the
network); one publisher thread hands messages to paho in order while connected. With QoS
1/2 paho keeps what it sent until the broker acknowledges it and sends it again after a
reconnect, so nothing is lost when the broker goes away; new messages wait until those went
out again, so order holds. paho reconnects with a backoff doubling from 1 s up to
``mqtt.reconnect_max_s``; the daemon starts even when the broker is down. When the queue is
full the OLDEST message is dropped, counted and logged (as the socket sinks do). QoS 0 is
at most once: what the network loses with the connection is not resent.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from intentd.daemon.config import MqttConfig
from intentd.daemon.errors import ConfigError
from intentd.daemon.output import hermes
from intentd.daemon.output.events import Event, IntentEvent, StatsEvent, to_json_line
from intentd.daemon.output.targets import OutputTarget

log = logging.getLogger(__name__)

MAX_HANDED = 100  # messages paho holds unacknowledged; beyond, the publisher waits
CLOSE_FLUSH_S = 2.0  # at shutdown, how long waiting messages may take to go out
WARN_INTERVAL_S = 10.0

Message = tuple[str, bytes]


class MqttSink:
    def __init__(self, target: OutputTarget, settings: MqttConfig | None = None) -> None:
        if target.kind not in ("mqtt", "mqtts"):
            raise ValueError(f"not an MQTT target: {target}")
        self.target = target
        self.settings = settings or MqttConfig()
        self.name = str(target)
        self.site_id = target.option("site_id") or self.settings.site_id
        self.topic_prefix = target.option("topic_prefix") or self.settings.topic_prefix
        self._queue: collections.deque[Message] = collections.deque()
        self._cond = threading.Condition()
        self._handed: collections.deque[Any] = collections.deque()  # paho MessageInfo
        self._connected = False
        self._resync = False  # reconnected: paho's resends go out before anything new
        self._closing = False
        self._client: Any = None
        self._thread: threading.Thread | None = None
        self._last_warn = -1e9
        self._last_state = ""
        self.published = 0
        self.dropped = 0
        self.connects = 0

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        import paho.mqtt.client as mqtt

        s = self.settings
        tls = self.target.kind == "mqtts"
        files = {"mqtt.ca_file": s.ca_file, "mqtt.cert_file": s.cert_file,
                 "mqtt.key_file": s.key_file}
        for key, path in files.items():
            if path and not tls:
                raise ConfigError(f"{key} is set but output {self.name} is not mqtts://; use "
                                  f"mqtts://{self.target.host}:8883 for TLS")
            if path and not Path(path).is_file():
                raise ConfigError(f"{key}: {path} does not exist or is not a file")
        if bool(s.cert_file) != bool(s.key_file):
            raise ConfigError("mqtt.cert_file and mqtt.key_file go together: give both or "
                              "neither")
        client_id = s.client_id or f"intentd-{socket.gethostname()}-{os.getpid()}"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        user = self.target.user or s.username
        if user:
            password = self.target.password if self.target.user else s.password
            client.username_pw_set(user, password or None)
        if tls:
            try:
                client.tls_set(ca_certs=s.ca_file or None, certfile=s.cert_file or None,
                               keyfile=s.key_file or None)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"output {self.name}: cannot use the TLS files ({exc})") from None
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, round(s.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        assert self.target.host is not None and self.target.port is not None
        client.connect_async(self.target.host, self.target.port, keepalive=s.keepalive_s)
        self._client = client
        client.loop_start()  # retries the first connection too: the daemon starts anyway
        self._thread = threading.Thread(target=self._publish_loop, name="intentd-mqtt",
                                        daemon=True)
        self._thread.start()
        log.info("mqtt: publishing to %s (QoS %d%s)", self.name, s.qos,
                 ", Hermes topics" if s.hermes else "")

    def close(self) -> None:
        deadline = time.monotonic() + CLOSE_FLUSH_S
        with self._cond:
            while (self._queue or self._unacked()) and self._connected and \
                    time.monotonic() < deadline:
                self._cond.wait(0.05)
            left = len(self._queue) + self._unacked()
            self._closing = True
            self._cond.notify_all()
        if left:
            log.warning("mqtt: %d message(s) to %s not delivered at shutdown (broker %s)",
                        left, self.name, "connected" if self._connected else "unreachable")
        if self._thread is not None:
            self._thread.join(1.0)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    # --- producing ------------------------------------------------------------------

    def messages(self, event: Event) -> list[Message]:
        """What one event becomes: (topic, payload) in publishing order."""
        s = self.settings
        out: list[Message] = []
        if s.hermes and isinstance(event, IntentEvent):
            topic, payload = hermes.message(event, self.site_id or event.stream, s.lang or None)
            out.append((topic, json.dumps(payload, ensure_ascii=False).encode()))
        if s.events:
            where = "stats" if isinstance(event, StatsEvent) else f"{event.stream}/event"
            out.append((f"{self.topic_prefix}/{where}", to_json_line(event).encode()))
        return out

    def emit(self, event: Event) -> None:
        messages = self.messages(event)
        with self._cond:
            for m in messages:
                if len(self._queue) >= self.settings.queue_events:
                    self._queue.popleft()
                    self.dropped += 1
                    self._warn(f"mqtt: {self.name}: the queue of {self.settings.queue_events} "
                               f"is full; dropped the oldest message ({self.dropped} so far)")
                self._queue.append(m)
            self._cond.notify_all()

    # --- publishing -----------------------------------------------------------------

    def _unacked(self) -> int:
        while self._handed and self._handed[0].is_published():
            self._handed.popleft()
            self.published += 1
        return len(self._handed)

    def _publish_loop(self) -> None:
        import paho.mqtt.client as mqtt

        qos, retain = self.settings.qos, self.settings.retain
        while True:
            with self._cond:
                while not self._closing and not (
                        self._queue and self._connected and not self._resync
                        and self._unacked() < MAX_HANDED):
                    if self._resync and self._connected and self._unacked() == 0:
                        self._resync = False
                        continue
                    self._cond.wait(0.05)
                if self._closing:
                    return
                topic, payload = self._queue[0]
                info = self._client.publish(topic, payload, qos=qos, retain=retain)
                if info.rc == mqtt.MQTT_ERR_SUCCESS or (qos > 0 and info.rc ==
                                                        mqtt.MQTT_ERR_NO_CONN):
                    # QoS 1/2: paho holds it now and resends it after a reconnect.
                    self._queue.popleft()
                    if qos > 0:
                        self._handed.append(info)
                    else:
                        self.published += 1
                    continue
                # Not taken (QoS 0 while the connection just dropped, paho's queue full):
                # it stays first and is tried again.
                self._cond.wait(0.05)

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any,
                    _props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            self._state(f"mqtt: {self.name} refused the connection: {reason}; retrying",
                        logging.ERROR)
            return
        with self._cond:
            self.connects += 1
            self._connected = True
            self._resync = self.connects > 1
            waiting = len(self._queue) + len(self._handed)
            self._cond.notify_all()
        self._state(f"mqtt: connected to {self.name}"
                    + (f"; {waiting} waiting message(s) go out now" if waiting else ""),
                    logging.INFO)

    def _on_connect_fail(self, _client: Any, _userdata: Any) -> None:
        self._state(f"mqtt: cannot connect to {self.name} (unreachable, refused, or its TLS "
                    f"certificate not trusted); retrying (up to every "
                    f"{self.settings.reconnect_max_s:g} s), messages wait", logging.WARNING)

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any,
                       _props: Any = None) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()
        if not self._closing:
            self._state(f"mqtt: lost {self.name} ({reason}); messages wait (up to "
                        f"{self.settings.queue_events}) and go out in order on reconnect",
                        logging.WARNING)

    def _state(self, text: str, level: int) -> None:
        """Connection news, once per change (paho retries every few seconds)."""
        if text != self._last_state:
            self._last_state = text
            log.log(level, "%s", text)

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_warn >= WARN_INTERVAL_S:
            self._last_warn = now
            log.warning("%s", text)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            unacked = self._unacked()
            return {"sink": self.name, "connected": self._connected,
                    "published": self.published, "waiting": len(self._queue) + unacked,
                    "dropped": self.dropped, "connects": self.connects}
