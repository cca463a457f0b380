"""h2 configured the way meshgrpc's relay used it before it moved onto its own
codec: the oracle the codec's property tests compare against, and the in-memory
peers of the relay's protocol tests. Test support only (h2 is a test dependency).

- header_encoding=None and h2's header validation/normalisation off;
- GOAWAY does not close the h2 state machine (h2 moves to CLOSED on GOAWAY and
  clears queued output, python-hyper/h2 issue 1181, where RFC 9113 §6.8 lets
  streams finish);
- no `repr(frame)` per received frame (h2 4.4.1's _receive_frame without it).

Pinned to h2==4.4.1 (pyproject's dev extra): `_receive_frame` mirrors that version.
"""

from __future__ import annotations

import dataclasses

from h2.config import H2Configuration
from h2.connection import ConnectionInputs, ConnectionState, H2Connection, H2ConnectionStateMachine
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated
from h2.exceptions import StreamClosedError, StreamIDTooLowError
from h2.settings import SettingCodes
from hyperframe.frame import RstStreamFrame



@dataclasses.dataclass(frozen=True, slots=True)
class Tuning:
    """Sizes and limits of the relay's HTTP/2 connections (both sides)."""

    # Streams a downstream client may open at once (h2's default of 100 throttles
    # a busy sidecar).
    max_concurrent_streams: int = 1000
    # Initial per-stream receive window we advertise. It is also the most the relay
    # buffers per stream and direction: data is acknowledged only when the other
    # side's window takes it.
    stream_window: int = 1 << 20
    # Connection-level receive window, grown by a WINDOW_UPDATE on stream 0
    # (SETTINGS_INITIAL_WINDOW_SIZE does not apply to the connection window).
    connection_window: int = 16 << 20
    max_header_list_size: int = 1 << 16


DEFAULT_TUNING = Tuning()
_INITIAL_WINDOW = 65535


class GoawayTolerantStateMachine(H2ConnectionStateMachine):
    """Keeps the connection open after GOAWAY in either direction (see module doc)."""

    _transitions = {
        **H2ConnectionStateMachine._transitions,
        (ConnectionState.CLIENT_OPEN, ConnectionInputs.RECV_GOAWAY): (None, ConnectionState.CLIENT_OPEN),
        (ConnectionState.SERVER_OPEN, ConnectionInputs.RECV_GOAWAY): (None, ConnectionState.SERVER_OPEN),
        (ConnectionState.CLIENT_OPEN, ConnectionInputs.SEND_GOAWAY): (None, ConnectionState.CLIENT_OPEN),
        (ConnectionState.SERVER_OPEN, ConnectionInputs.SEND_GOAWAY): (None, ConnectionState.SERVER_OPEN),
    }


class RelayH2Connection(H2Connection):
    """H2Connection with the relay's tweaks (module doc)."""

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config=config)
        self.state_machine = GoawayTolerantStateMachine()

    def _receive_goaway_frame(self, frame):
        # Unlike h2: keep the outbound buffer (responses to streams <= last_stream_id
        # still have to go out).
        events = self.state_machine.process_input(ConnectionInputs.RECV_GOAWAY)
        ev = ConnectionTerminated()
        ev.error_code = _error_code(frame.error_code)
        ev.last_stream_id = frame.last_stream_id
        ev.additional_data = frame.additional_data or None
        events.append(ev)
        return [], events

    def _receive_frame(self, frame):
        # h2 4.4.1's _receive_frame without `repr(frame)` for the trace log.
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            if not self._stream_is_closed_by_reset(e.stream_id):
                raise
            f = RstStreamFrame(e.stream_id)
            f.error_code = e.error_code
            self._prepare_for_sending([f])
            events = e._events
        except StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events


def _error_code(code: int):
    try:
        return ErrorCodes(code)
    except ValueError:
        return code


def _config(client_side: bool) -> H2Configuration:
    return H2Configuration(
        client_side=client_side, header_encoding=None,
        validate_outbound_headers=False, normalize_outbound_headers=False,
        validate_inbound_headers=False, normalize_inbound_headers=False,
        split_outbound_cookies=False,
    )


def new_connection(client_side: bool, tuning: Tuning = DEFAULT_TUNING) -> RelayH2Connection:
    """A started connection (preface + SETTINGS + connection WINDOW_UPDATE queued)."""
    conn = RelayH2Connection(_config(client_side))
    settings = {
        SettingCodes.INITIAL_WINDOW_SIZE: tuning.stream_window,
        SettingCodes.MAX_HEADER_LIST_SIZE: tuning.max_header_list_size,
    }
    if client_side:
        settings[SettingCodes.ENABLE_PUSH] = 0
    else:
        settings[SettingCodes.MAX_CONCURRENT_STREAMS] = tuning.max_concurrent_streams
    conn.local_settings = type(conn.local_settings)(client=client_side, initial_values={
        **{k: v for k, v in conn.local_settings.items()}, **settings})
    conn.decoder.max_header_list_size = tuning.max_header_list_size
    conn.initiate_connection()
    if tuning.connection_window > _INITIAL_WINDOW:
        conn.increment_flow_control_window(tuning.connection_window - _INITIAL_WINDOW)
    return conn
