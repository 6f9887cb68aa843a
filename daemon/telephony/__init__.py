"""Telephony ingest (``--listen``): phone calls forked to intentd over the network.

- ``ws://HOST:PORT/PATH``: the WebSocket media-stream format of Twilio (Telnyx and
  SignalWire send the same shape); each call track is a stream ``<callSid>/<track>``
  (:mod:`.ws`, messages in :mod:`.messages`);
- ``tcp://HOST:PORT``: one JSON header line, then raw audio (:mod:`.tcp`).

``server`` owns the event loop thread, admission (``telephony.max_streams``) and the
hand-over to the engine; ``track`` turns one track's chunks into stream audio; ``replay``
is ``intentd-replay``, the operators' load generator.
"""
