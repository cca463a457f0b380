# Cython declarations for connection.py (compiled at install time; see setup.py):
# the connection's state as C fields, its internal steps as C methods.

cimport cython

from meshgrpc.codec.guard cimport Guard
from meshgrpc.codec.streams cimport Stream

cdef class Connection:
    cdef public bint client
    cdef public object limits, counters, clock, encoder, decoder, failed
    cdef public Guard guard
    cdef public dict streams
    cdef object _on_request, _on_response, _on_trailers, _on_data, _on_reset
    cdef object _on_window_update, _on_settings, _on_goaway, _on_ping_ack
    cdef list _out
    cdef Py_ssize_t _queued_control
    cdef list _pending
    cdef Py_ssize_t _pending_len, _need
    cdef bint _await_preface, _await_settings
    cdef public long long peer_max_concurrent_streams, peer_initial_window, max_outbound_frame_size
    cdef public long long peer_max_header_list_size, conn_send_window, conn_recv_window
    cdef long long _conn_unacked
    cdef public long long highest_inbound, open_inbound, open_outbound
    cdef long long _next_outbound
    cdef public object goaway_sent, goaway_received
    cdef long long _block_sid
    cdef list _block_parts
    cdef Py_ssize_t _block_len
    cdef bint _block_end_stream
    cdef Py_ssize_t _max_frame_size, _max_header_list_size
    cdef long long _stream_window, _connection_window

    cpdef detach(self)
    cdef _bind(self, handler)
    cdef _start(self)
    cpdef bytes data_to_send(self)
    cdef _control(self, bytes frame)
    cdef _fail(self, int code, str message)
    cpdef receive(self, bytes data)
    @cython.locals(end=Py_ssize_t, hi=int, lo=int, ftype=int, flags=int, sid=cython.longlong,
                   length=Py_ssize_t, start=Py_ssize_t, max_frame=Py_ssize_t)
    cdef Py_ssize_t _frames(self, bytes buf, Py_ssize_t pos) except -1
    cdef _hold(self, bytes rest, Py_ssize_t need)
    cdef Py_ssize_t _preface(self, bytes buf) except -2
    cdef _frame(self, int ftype, int flags, long long sid, bytes buf, object view, Py_ssize_t start, Py_ssize_t end)
    cdef _calm(self, why)
    @cython.locals(pad=Py_ssize_t)
    cdef tuple _unpad(self, int flags, bytes buf, Py_ssize_t start, Py_ssize_t end)
    cdef bint _is_idle(self, long long sid)
    @cython.locals(stream=Stream, state=int, flow_len=Py_ssize_t)
    cdef _recv_data(self, int flags, long long sid, bytes buf, object view, Py_ssize_t start, Py_ssize_t end)
    cdef _recv_headers(self, int flags, long long sid, bytes buf, Py_ssize_t start, Py_ssize_t end)
    cdef _recv_continuation(self, int flags, long long sid, bytes buf, Py_ssize_t start, Py_ssize_t end)
    cdef _check_block_size(self)
    cdef _decode(self, bytes block, int kind)
    @cython.locals(stream=Stream, state=int)
    cdef _header_block(self, long long sid, bytes block, bint end_stream, bint self_dependent)
    @cython.locals(stream=Stream, state=int, code=int)
    cdef _new_request(self, long long sid, bytes block, bint end_stream, bint self_dependent)
    cdef _recv_priority(self, int flags, long long sid, bytes buf, Py_ssize_t start, Py_ssize_t end)
    @cython.locals(stream=Stream)
    cdef _recv_rst_stream(self, int flags, long long sid, bytes buf, Py_ssize_t start, Py_ssize_t end)
    cdef _recv_settings(self, int flags, long long sid, bytes buf, Py_ssize_t start, Py_ssize_t end)
    @cython.locals(stream=Stream)
    cdef _apply_setting(self, int ident, long long value)
    cdef _recv_push_promise(self, int flags, long long sid, bytes buf, Py_ssize_t start, Py_ssize_t end)
    cdef _recv_ping(self, int flags, long long sid, bytes buf, Py_ssize_t start, Py_ssize_t end)
    cdef _recv_goaway(self, int flags, long long sid, bytes buf, Py_ssize_t start, Py_ssize_t end)
    @cython.locals(stream=Stream, increment=cython.longlong)
    cdef _recv_window_update(self, int flags, long long sid, bytes buf, Py_ssize_t start, Py_ssize_t end)
    cdef _set_state(self, Stream stream, int state)
    cdef _close(self, Stream stream)
    cdef _stream_error(self, Stream stream, int code)
    cpdef long long next_stream_id(self)
    @cython.locals(stream=Stream)
    cpdef long long send_window(self, long long stream_id)
    @cython.locals(stream=Stream, state=int)
    cpdef send_headers(self, long long stream_id, headers, bint end_stream=*)
    @cython.locals(stream=Stream)
    cdef Stream _open_stream(self, long long stream_id)
    @cython.locals(stream=Stream, state=int, n=Py_ssize_t)
    cpdef send_data(self, long long stream_id, data, bint end_stream=*)
    @cython.locals(out=list, size=Py_ssize_t, pos=Py_ssize_t)
    cdef _queue_data(self, long long stream_id, data, Py_ssize_t n, bint end_stream)
    @cython.locals(stream=Stream)
    cpdef reset_stream(self, long long stream_id, int code=*)
    cpdef acknowledge(self, long long stream_id, long long n)
    @cython.locals(stream=Stream, credit=cython.longlong)
    cpdef acknowledge_stream(self, long long stream_id, long long n)
    cpdef acknowledge_connection(self, long long n)
    cpdef bint peer_settings_received(self)
    @cython.locals(credit=cython.longlong)
    cdef _credit_connection(self, long long n)
    cpdef ping(self, bytes payload=*)
    cpdef goaway(self, int code=*, last_stream_id=*, bytes debug=*)

cdef long long _credit(long long unacked, long long window, long long maximum)
