# Cython declarations for guard.py (compiled at install time; see setup.py).

cdef class Guard:
    cdef public object limits, counters, clock
    cdef double _rate_start
    cdef long long _pings, _settings, _window_updates, _streams_opened, _data_frames_sent
    cdef long long _peer_streams, _premature, _empty_run, _ping_strikes
    cdef double _last_ping

    cpdef empty_frame(self, bint empty, bint end_stream)
    cpdef ping(self)
    cpdef settings(self)
    cdef _tick(self)
    cpdef window_update(self)
    cpdef data_frames_sent(self, long long n)
    cpdef headers_sent(self)
    cpdef stream_opened(self, bint by_peer)
    cpdef double opened_at(self) except? -1.0
    cpdef peer_reset(self, double opened_at)
    cdef _premature_resets(self)
