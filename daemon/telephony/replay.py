"""``intentd-replay``: WAV files sent as concurrent phone calls over WebSocket, in the media
stream format of Twilio (what ``intentd --listen ws://...`` takes), at real-time pace, so
that operators can load-test their own deployment (and the CI tests use it).

Each call is ``connected``, ``start`` (callSid ``<prefix><n>``, streamSid, the tracks,
``customParameters`` with the file names and ``--param``), 20 ms ``media`` chunks of 8 kHz
mu-law on each track with their timestamps, then ``stop``. ``--calls`` more than the files
cycle through them; ``--tracks both`` sends the next file as the outbound track (the
agent), padded with line silence to the longer one. One JSON summary line goes to stdout;
``--calls-out`` writes a line per call (ids, files, when its audio started, the close).

    intentd-replay ws://127.0.0.1:8765/media calls/ --calls 100 --tracks both --spread-s 30
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

RATE_HZ = 8000
SILENCE = b"\xff"  # mu-law's zero
OPEN_TIMEOUT_S = 20.0
CLOSE_WAIT_S = 30.0


@dataclass
class CallResult:
    callSid: str  # the platform's spelling, as the events carry it
    streamSid: str
    inbound: str
    outbound: str | None
    start_unix: float | None = None  # wall time of the first media chunk (stream time 0)
    audio_s: float = 0.0
    sent_s: float = 0.0  # audio sent before the end (less when the server closed early)
    max_behind_ms: float = 0.0  # how late the sender got against the real-time schedule
    close_code: int | None = None
    close_reason: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        done = self.sent_s + 1e-6 >= self.audio_s
        return not self.error and self.close_code in (1000, None) and done


def load_mulaw(path: Path) -> bytes:
    """A sound file as 8 kHz mono G.711 mu-law bytes."""
    import soundfile as sf
    import soxr

    from intentd.daemon.telephony.messages import encode_mulaw

    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != RATE_HZ:
        mono = soxr.resample(mono, rate, RATE_HZ, quality="HQ")
    return encode_mulaw(np.clip(mono, -1.0, 1.0))


def find_files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(x for x in p.iterdir() if x.suffix.lower() in (".wav", ".flac"))
        elif p.is_file():
            out.append(p)
        else:
            raise SystemExit(f"intentd-replay: error: {p}: no such file or folder")
    if not out:
        raise SystemExit("intentd-replay: error: no .wav or .flac files in " + " ".join(paths))
    return out


def chunks(audio: bytes, chunk_bytes: int, n: int) -> list[str]:
    """``n`` base64 payloads (the audio padded with silence), encoded once per file."""
    audio = audio.ljust(n * chunk_bytes, SILENCE)
    return [base64.b64encode(audio[i * chunk_bytes:(i + 1) * chunk_bytes]).decode()
            for i in range(n)]


async def run_call(url: str, k: int, args: argparse.Namespace, files: list[Path],
                   audio: dict[Path, bytes]) -> CallResult:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    inbound = files[k % len(files)]
    outbound = files[(k + 1) % len(files)] if args.tracks == "both" else None
    res = CallResult(f"{args.call_prefix}{k:04d}", f"MZ{args.call_prefix}{k:04d}", inbound.name,
                     outbound.name if outbound else None)
    chunk_bytes = RATE_HZ * args.chunk_ms // 1000
    lengths = [len(audio[inbound])] + ([len(audio[outbound])] if outbound else [])
    n = -(-max(lengths) // chunk_bytes)
    res.audio_s = n * chunk_bytes / RATE_HZ
    tracks = {"inbound": chunks(audio[inbound], chunk_bytes, n)}
    if outbound is not None:
        tracks["outbound"] = chunks(audio[outbound], chunk_bytes, n)
    params = {"file": inbound.name, **({"outbound_file": outbound.name} if outbound else {}),
              **dict(args.param)}
    seq = 0

    def msg(event: str, body: dict[str, object]) -> str:
        nonlocal seq
        seq += 1
        return json.dumps({"event": event, "sequenceNumber": str(seq), event: body,
                           "streamSid": res.streamSid})

    try:
        async with connect(url, compression=None, open_timeout=OPEN_TIMEOUT_S,
                           close_timeout=5, max_size=2**20) as ws:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call",
                                      "version": "1.0.0"}))
            await ws.send(msg("start", {
                "streamSid": res.streamSid, "callSid": res.callSid, "accountSid": "ACreplay",
                "tracks": list(tracks), "customParameters": params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE_HZ,
                                "channels": 1}}))
            t0 = time.monotonic()
            res.start_unix = time.time()
            step = args.chunk_ms / 1000
            try:
                for i in range(n):
                    if args.realtime:
                        late = time.monotonic() - (t0 + i * step)
                        if late < 0:
                            await asyncio.sleep(-late)
                        else:
                            res.max_behind_ms = max(res.max_behind_ms, late * 1000)
                    stamp = str(i * args.chunk_ms)
                    for name, payload in tracks.items():
                        seq += 1
                        # Written out, not json.dumps: this is the sender's hot loop.
                        await ws.send(
                            f'{{"event": "media", "sequenceNumber": "{seq}", "media": '
                            f'{{"track": "{name}", "chunk": "{i + 1}", "timestamp": '
                            f'"{stamp}", "payload": "{payload[i]}"}}, '
                            f'"streamSid": "{res.streamSid}"}}')
                    res.sent_s = (i + 1) * step
                await ws.send(msg("stop", {"accountSid": "ACreplay", "callSid": res.callSid}))
                await asyncio.wait_for(ws.wait_closed(), CLOSE_WAIT_S)
            except ConnectionClosed:
                pass
            except TimeoutError:
                res.error = "the server did not close after stop"
            if ws.close_code is not None:
                res.close_code, res.close_reason = ws.close_code, ws.close_reason or ""
    except (OSError, TimeoutError) as exc:
        res.error = f"{exc.__class__.__name__}: {exc}"
    except Exception as exc:  # a handshake refused (HTTP 503/404), a protocol error
        res.error = f"{exc.__class__.__name__}: {exc}"
    res.max_behind_ms = round(res.max_behind_ms, 1)
    return res


async def replay(args: argparse.Namespace) -> list[CallResult]:
    files = find_files(args.paths)
    used = {files[k % len(files)] for k in range(args.calls or len(files))}
    if args.tracks == "both":
        used |= {files[(k + 1) % len(files)] for k in range(args.calls or len(files))}
    audio = {}
    for f in sorted(used):
        try:
            audio[f] = load_mulaw(f)
        except (RuntimeError, OSError, ValueError) as exc:  # soundfile's unreadable file
            raise SystemExit(f"intentd-replay: error: {f}: cannot read audio ({exc})") from None
    total = args.calls or len(files)
    gate = asyncio.Semaphore(args.concurrency or total)

    async def one(k: int) -> CallResult:
        if args.spread_s and total > 1:
            await asyncio.sleep(args.spread_s * k / (total - 1))
        async with gate:
            return await run_call(args.url, k, args, files, audio)

    return list(await asyncio.gather(*(one(k) for k in range(total))))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="intentd-replay", description="Send WAV files as concurrent phone calls to "
        "intentd --listen ws://... in the telephony media-stream format (Twilio's), at "
        "real-time pace: a load test for your deployment. Prints one JSON summary line.")
    p.add_argument("url", help="the daemon's media-stream address, e.g. ws://HOST:8765/media")
    p.add_argument("paths", nargs="+", metavar="PATH", help="WAV/FLAC files or folders of them")
    p.add_argument("--calls", type=int, default=0,
                   help="calls in all (default: one per file; more cycle through the files)")
    p.add_argument("--concurrency", type=int, default=0,
                   help="calls at once (default: all); the next starts as one ends")
    p.add_argument("--tracks", choices=("inbound", "both"), default="inbound",
                   help="both: the next file is the call's outbound track (the agent)")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=True,
                   help="pace the chunks as a live call does (default) or send at once")
    p.add_argument("--chunk-ms", type=int, default=20, help="media chunk length (Twilio: 20)")
    p.add_argument("--spread-s", type=float, default=0.0,
                   help="start the calls evenly over this many seconds (default: together)")
    p.add_argument("--call-prefix", default="CAreplay", help="callSid = PREFIX + number")
    p.add_argument("--param", action="append", default=[], type=_param, metavar="KEY=VALUE",
                   help="a customParameters entry for every call (repeatable)")
    p.add_argument("--calls-out", metavar="FILE", help="write one JSON line per call here")
    return p


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE")
    return key, value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.chunk_ms < 1 or args.calls < 0 or args.concurrency < 0:
        raise SystemExit("intentd-replay: error: --chunk-ms >= 1, --calls and --concurrency "
                         ">= 0")
    t0 = time.monotonic()
    results = asyncio.run(replay(args))
    wall = time.monotonic() - t0
    if args.calls_out:
        with open(args.calls_out, "w", encoding="utf-8") as f:
            for r in results:
                f.write(json.dumps(asdict(r)) + "\n")
    codes: dict[str, int] = {}
    for r in results:
        key = "error" if r.error else str(r.close_code)
        codes[key] = codes.get(key, 0) + 1
    print(json.dumps({
        "calls": len(results), "ok": sum(r.ok for r in results),
        "refused": sum(r.close_code == 1013 for r in results), "close_codes": codes,
        "audio_s": round(sum(r.sent_s for r in results), 1), "wall_s": round(wall, 1),
        "max_behind_ms": max((r.max_behind_ms for r in results), default=0.0),
        "errors": sorted({r.error or r.close_reason for r in results if not r.ok})[:5]}),
        flush=True)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
