"""The limits that watch a peer's behaviour over time (limits.py): rates of PING
and SETTINGS, WINDOW_UPDATEs against the DATA we sent, runs of empty frames,
premature resets. Each check counts one frame and decides: it returns why the
connection must end (the connection then sends GOAWAY ENHANCE_YOUR_CALM), or
None. O(1) per frame; time comes from the injected clock.
"""

from __future__ import annotations


class Guard:
    """One connection's flood accounting (module doc)."""

    __slots__ = ("limits", "counters", "clock", "_rate_start", "_pings", "_settings", "_window_updates",
                 "_streams_opened", "_data_frames_sent", "_peer_streams", "_premature", "_empty_run",
                 "_last_ping", "_ping_strikes")

    def __init__(self, limits, counters, clock) -> None:
        self.limits, self.counters, self.clock = limits, counters, clock
        self._rate_start = clock()
        self._pings = self._settings = 0
        self._window_updates = 0
        self._streams_opened = 0
        self._data_frames_sent = 0
        self._peer_streams = 0
        self._premature = 0
        self._empty_run = 0
        self._last_ping = float("-inf")
        self._ping_strikes = 0

    def empty_frame(self, empty: bool, end_stream: bool):
        """A DATA/HEADERS/CONTINUATION frame (Envoy's
        max_consecutive_inbound_frames_with_empty_payload)."""
        if empty and not end_stream:
            self._empty_run += 1
            if self._empty_run > self.limits.max_consecutive_empty_frames:
                self.counters.empty_frames += 1
                return "too many consecutive empty frames"
        else:
            self._empty_run = 0
        return None

    def ping(self):
        self._tick()
        self._pings += 1
        if self._pings > self.limits.max_pings_per_second:
            self.counters.ping_flood += 1
            return "PING flood"
        interval = self.limits.min_ping_interval
        if interval > 0:
            now = self.clock()
            if now - self._last_ping < interval:
                self._ping_strikes += 1
                if self._ping_strikes > self.limits.max_ping_strikes:
                    self.counters.too_many_pings += 1
                    return "too_many_pings"
            self._last_ping = now
        return None

    def settings(self):
        self._tick()
        self._settings += 1
        if self._settings > self.limits.max_settings_per_second:
            self.counters.settings_flood += 1
            return "SETTINGS flood"
        return None

    def _tick(self) -> None:
        now = self.clock()
        if now - self._rate_start >= 1.0:  # a fixed 1 s window
            self._rate_start = now
            self._pings = self._settings = 0

    def window_update(self):
        """Envoy's rule: 5 + 2 * (streams opened + ratio * DATA frames sent)."""
        self._window_updates += 1
        allowed = 5 + 2 * (self._streams_opened
                           + self.limits.window_updates_per_data_frame * self._data_frames_sent)
        if self._window_updates > allowed:
            self.counters.window_update_flood += 1
            return "WINDOW_UPDATE flood"
        return None

    def data_frames_sent(self, n: int) -> None:
        self._data_frames_sent += n
        self._ping_strikes = 0

    def headers_sent(self) -> None:
        self._ping_strikes = 0

    def stream_opened(self, by_peer: bool):
        self._streams_opened += 1
        if by_peer:
            self._peer_streams += 1
            return self._premature_resets()
        return None

    def opened_at(self) -> float:
        return self.clock()

    def peer_reset(self, opened_at: float):
        """The peer reset a stream it opened at `opened_at`."""
        if self.clock() - opened_at < self.limits.premature_reset_seconds:
            self._premature += 1
            return self._premature_resets()
        return None

    def _premature_resets(self):
        limits = self.limits
        if (self._peer_streams >= limits.premature_reset_min_streams
                and self._premature >= limits.premature_reset_ratio * self._peer_streams):
            self.counters.premature_resets += 1
            return "too many streams reset by the peer right after opening"
        return None
