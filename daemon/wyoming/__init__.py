"""The Wyoming server (Home Assistant's protocol for voice services): each connection's audio
is a stream of the engine's own, and its verdicts go back as ``transcript`` + ``intent``.

``server`` owns the socket, the event loop thread and the hand-over of events from the
model worker; ``session`` is one connection; ``replies`` builds the protocol's messages.
"""
