# Cython declarations for streams.py (compiled at install time; see setup.py).

cdef class Stream:
    cdef public long long stream_id
    cdef public int state
    cdef public long long send_window
    cdef public long long recv_window
    cdef public long long unacked
    cdef public int blocks_in
    cdef public bint inbound
    cdef public double opened_at
