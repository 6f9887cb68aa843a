"""One Wyoming connection: its requests, its audio sessions, its replies.

Everything here runs in the server's event loop. An audio session (``audio-start`` ..
``audio-stop``) is one stream of the engine, named ``wyoming-<peer>-<n>``: its chunks are
pushed into a :class:`~intentd.daemon.audio.push.PushSource`, ``audio-stop`` ends the
source, the stream stage flushes the last utterance, and once the worker has emitted every
event of the stream (the server's stream-end hand-over) the replies go out
(:mod:`.replies`).

A client that leaves mid-audio ends its source the same way; the stream's verdicts are then
dropped and the stream is forgotten (:meth:`WyomingServer.stream_ended`), so nothing is
left behind. Malformed or unknown events cost one log line each, never the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event as WyomingEvent
from wyoming.event import async_write_event
from wyoming.info import Describe
from wyoming.intent import NotRecognized, Recognize
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler
from wyoming.vad import VoiceStarted, VoiceStopped

from intentd.daemon.audio.push import PushSource, pcm_to_float
from intentd.daemon.errors import IntentdError
from intentd.daemon.output.events import Event, IntentEvent, SpeechEndEvent, SpeechStartEvent
from intentd.daemon.wyoming.replies import session_replies

if TYPE_CHECKING:
    from intentd.daemon.wyoming.server import WyomingServer

log = logging.getLogger(__name__)

# A chunk that finds the stream's queue full waits (PushSource.put: backpressure, not loss).
PUSH_POLL_S = 0.005
# audio-stop -> replies: the model's queue may hold other clients' utterances first.
REPLY_TIMEOUT_S = 60.0


@dataclass
class AudioSession:
    stream: str
    source: PushSource
    rate_hz: int
    width: int
    channels: int
    language: str | None
    verdicts: list[IntentEvent] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    format_errors: int = 0
    abandoned: bool = False  # its client left or started over: no more replies for it


class WyomingSession(AsyncEventHandler):
    """An :class:`AsyncEventHandler` for one client (wyoming's server runs it)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 server: WyomingServer, peer: str, refuse: str | None = None) -> None:
        super().__init__(reader, writer)
        self.server = server
        self.peer = peer
        self.refuse = refuse  # why this connection is turned away (too many clients)
        self.language: str | None = None
        self.audio: AudioSession | None = None
        self._refused_audio = False  # its audio-start was refused: skip to audio-stop
        self._write_lock = asyncio.Lock()
        self._gone = False

    # --- the connection -------------------------------------------------------------

    async def run(self) -> None:
        if self.refuse is not None:
            await self.write_event(Error(text=self.refuse, code="busy").event())
            self.writer.close()
            return
        try:
            await super().run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: disconnect() already freed what it had
        except Exception as exc:  # one client's garbage must not stop the others
            # (wyoming's reader raises on JSON that is not an event object; the connection
            # is already freed by the base class's finally: disconnect()).
            log.warning("wyoming client %s: unreadable data (%s); disconnecting", self.peer,
                        exc.__class__.__name__)

    async def write_event(self, event: WyomingEvent) -> None:
        """Serialized (replies and voice events may race) and quiet once the client left."""
        if self._gone:
            return
        async with self._write_lock:
            try:
                await async_write_event(event, self.writer)
            except (ConnectionError, RuntimeError, OSError):
                self._gone = True

    async def disconnect(self) -> None:
        self._gone = True
        audio, self.audio = self.audio, None
        if audio is not None:
            if not self.server.closing:
                log.info("wyoming client %s left mid-audio; stream %s ends and is freed",
                         self.peer, audio.stream)
            audio.abandoned = True
            audio.source.end()
        self.server.session_closed(self)

    # --- requests -------------------------------------------------------------------

    async def handle_event(self, event: WyomingEvent) -> bool:
        try:
            await self._dispatch(event)
        except (AttributeError, KeyError, TypeError, ValueError, IntentdError) as exc:
            detail = str(exc) if isinstance(exc, IntentdError) else f"malformed {event.type}"
            log.warning("wyoming client %s: %s", self.peer, detail)
            await self.write_event(Error(text=detail, code="bad-request").event())
        return True

    async def _dispatch(self, event: WyomingEvent) -> None:
        if AudioChunk.is_type(event.type):
            await self._chunk(AudioChunk.from_event(event))
        elif AudioStart.is_type(event.type):
            await self._start(AudioStart.from_event(event))
        elif AudioStop.is_type(event.type):
            await self._stop()
        elif Describe.is_type(event.type):
            await self.write_event(self.server.info())
        elif Transcribe.is_type(event.type):
            self.language = Transcribe.from_event(event).language
        elif Recognize.is_type(event.type):
            # Text in, intent out is not what this model does: it hears audio.
            await self.write_event(NotRecognized(
                text="intentd recognizes intents from audio, not from text").event())
        elif Ping.is_type(event.type):
            await self.write_event(Pong(text=Ping.from_event(event).text).event())
        else:
            log.debug("wyoming client %s: ignored event %r", self.peer, event.type)

    async def _start(self, start: AudioStart) -> None:
        if self.audio is not None:  # a new session without audio-stop: the old one is void
            log.info("wyoming client %s: audio-start during audio; the earlier audio is "
                     "dropped", self.peer)
            self.audio.abandoned = True
            self.audio.source.end()
            self.audio = None
        self._refused_audio = True  # until it is accepted: one error, not one per chunk
        pcm_to_float(b"", start.width, start.channels)  # refuses what cannot be decoded
        if not 1000 <= start.rate <= 384000:
            raise IntentdError(f"audio rate {start.rate} Hz is not supported; send 8000-48000")
        self._refused_audio = False
        name = self.server.new_stream_name(self.peer)
        source = PushSource(name, int(start.rate), int(start.channels))
        audio = AudioSession(name, source, int(start.rate), int(start.width),
                             int(start.channels), self.language or self.server.language)
        self.server.open_stream(self, audio)
        self.audio = audio

    async def _chunk(self, chunk: AudioChunk) -> None:
        audio = self.audio
        if audio is None and self._refused_audio:
            return
        if audio is None:  # audio-chunk without audio-start: its own format starts one
            await self._start(AudioStart(chunk.rate, chunk.width, chunk.channels))
            audio = self.audio
            assert audio is not None
        if (chunk.rate, chunk.width, chunk.channels) != (audio.rate_hz, audio.width,
                                                         audio.channels):
            audio.format_errors += 1
            if audio.format_errors == 1:
                raise IntentdError(
                    f"audio-chunk format {chunk.rate} Hz/{chunk.width} B/{chunk.channels} ch "
                    f"differs from audio-start's {audio.rate_hz} Hz/{audio.width} B/"
                    f"{audio.channels} ch; such chunks are dropped")
            return
        block = pcm_to_float(chunk.audio, chunk.width, chunk.channels)
        if block.shape[0]:
            await audio.source.put(block, PUSH_POLL_S)

    async def _stop(self) -> None:
        audio, self.audio = self.audio, None
        if audio is None and self._refused_audio:
            self._refused_audio = False
            return
        if audio is None:
            log.debug("wyoming client %s: audio-stop without audio", self.peer)
            await self.write_event(Error(text="audio-stop without audio-start",
                                         code="bad-request").event())
            return
        audio.source.end()
        try:
            await asyncio.wait_for(audio.done.wait(), REPLY_TIMEOUT_S)
        except TimeoutError:
            log.warning("wyoming stream %s: no verdict within %.0f s of audio-stop",
                        audio.stream, REPLY_TIMEOUT_S)
            await self.write_event(Error(text="no verdict in time",
                                         code="timeout").event())
            return
        for reply in session_replies(audio.verdicts, self.server.sentences(), audio.language):
            await self.write_event(reply)

    # --- from the model worker (through the server, in the loop) --------------------

    def on_event(self, audio: AudioSession, event: Event) -> None:
        if isinstance(event, IntentEvent):
            audio.verdicts.append(event)
        elif self.server.speech_events and not audio.abandoned:
            if isinstance(event, SpeechStartEvent):
                self._send_soon(VoiceStarted(timestamp=round(event.start_s * 1000)).event())
            elif isinstance(event, SpeechEndEvent):
                self._send_soon(VoiceStopped(timestamp=round(event.end_s * 1000)).event())

    def on_ended(self, audio: AudioSession) -> None:
        audio.done.set()

    def _send_soon(self, event: WyomingEvent) -> None:
        task = asyncio.get_running_loop().create_task(self.write_event(event))
        # Keep a reference until done (the loop holds tasks weakly).
        self.server.hold(task)

    async def close(self) -> None:
        """Server shutdown: end the connection (its audio ends with it)."""
        with contextlib.suppress(Exception):
            await self.stop()
