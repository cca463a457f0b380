# Cython declarations for hpack.py (compiled at install time; see setup.py).

cimport cython

cdef class DynamicTable:
    cdef public list entries
    cdef public long long size, maxsize, version, inserted
    cdef dict _fields, _names

    cpdef tuple get(self, long long index)
    cpdef add(self, bytes name, bytes value)
    cpdef resize(self, long long maxsize)
    cdef _evict_to(self, long long limit)
    cpdef long long find_field(self, tuple field)
    cpdef long long find_name(self, bytes name)

cdef class Encoder:
    cdef public DynamicTable table
    cdef public long long hits
    cdef readonly dict _cache
    cdef long long _size_min, _size_final

    cpdef set_max_table_size(self, long long size)
    @cython.locals(n=Py_ssize_t)
    cpdef bytes encode(self, headers)
    cdef bytes _size_update(self)
    @cython.locals(table=DynamicTable, version=cython.longlong, hit=tuple)
    cdef bytes _cached(self, headers)
    @cython.locals(table=DynamicTable, index=cython.longlong, out=list)
    cdef bytes _encode_fields(self, headers)

cdef class Decoder:
    cdef public DynamicTable table
    cdef public long long max_table_size, max_header_list_size, hits
    cdef public object validate
    cdef readonly dict _cache

    @cython.locals(table=DynamicTable, version=cython.longlong, hit=tuple)
    cpdef tuple decode(self, bytes block, int kind)
    @cython.locals(table=DynamicTable, out=list, pos=Py_ssize_t, end=Py_ssize_t, b=int, budget=cython.longlong,
                   index=cython.longlong, size=cython.longlong)
    cdef list _decode_fields(self, bytes block)
    cdef tuple _literal(self, bytes block, Py_ssize_t pos, int prefix_bits)
