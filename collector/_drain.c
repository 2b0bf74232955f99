/* The collector's ingest drain in C: frames read from a ROUTER socket without a Python call each.
 *
 * collector/fast_drain.py says why and how it is used; this file only moves bytes. libzmq is the
 * copy pyzmq already loaded: its functions come in as addresses (bind()), so this module links
 * against nothing but Python and can never meet a second, different libzmq in the process.
 *
 * drain(handle, limit, single_limit, heads, idents, bodies) reads up to ``limit`` messages
 * [identity, body...] from the socket at ``handle`` (pyzmq's ``Socket.underlying``) without
 * blocking. A body of one part, shorter than ``single_limit`` and starting with heads[len] (a
 * one-envelope Batch, messages.codec.is_single) goes to ``idents``/``bodies``; the first message
 * that is not such a frame stops the drain and comes back whole to the caller. Returns
 * (messages read, odd) where odd is None or (identity, first body part, more parts follow).
 * Raises OSError(errno) for any error but EAGAIN (nothing more waiting).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <string.h>

#define ZMQ_DONTWAIT 1

typedef struct {
    unsigned char bytes[64];
} __attribute__((aligned(8))) zmq_msg;

typedef int (*msg_init_fn)(zmq_msg *);
typedef int (*msg_recv_fn)(zmq_msg *, void *, int);
typedef int (*msg_close_fn)(zmq_msg *);
typedef void *(*msg_data_fn)(zmq_msg *);
typedef size_t (*msg_size_fn)(const zmq_msg *);
typedef int (*msg_more_fn)(const zmq_msg *);
typedef int (*errno_fn)(void);

static msg_init_fn msg_init;
static msg_recv_fn msg_recv;
static msg_close_fn msg_close;
static msg_data_fn msg_data;
static msg_size_fn msg_size;
static msg_more_fn msg_more;
static errno_fn zmq_errno_of;

static PyObject *bind(PyObject *Py_UNUSED(self), PyObject *args) {
    unsigned long long init, recv, close, data, size, more, err;
    if (!PyArg_ParseTuple(args, "KKKKKKK", &init, &recv, &close, &data, &size, &more, &err)) {
        return NULL;
    }
    if (!init || !recv || !close || !data || !size || !more || !err) {
        PyErr_SetString(PyExc_ValueError, "a libzmq function address is 0");
        return NULL;
    }
    msg_init = (msg_init_fn)(uintptr_t)init;
    msg_recv = (msg_recv_fn)(uintptr_t)recv;
    msg_close = (msg_close_fn)(uintptr_t)close;
    msg_data = (msg_data_fn)(uintptr_t)data;
    msg_size = (msg_size_fn)(uintptr_t)size;
    msg_more = (msg_more_fn)(uintptr_t)more;
    zmq_errno_of = (errno_fn)(uintptr_t)err;
    Py_RETURN_NONE;
}

/* Receive one part into a new bytes object; NULL with *error set (EAGAIN or another errno). */
static PyObject *receive(void *socket, int *more, int *error) {
    zmq_msg msg;
    msg_init(&msg);
    if (msg_recv(&msg, socket, ZMQ_DONTWAIT) < 0) {
        *error = zmq_errno_of();
        msg_close(&msg);
        return NULL;
    }
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)msg_data(&msg), (Py_ssize_t)msg_size(&msg));
    *more = msg_more(&msg);
    msg_close(&msg);
    if (bytes == NULL) {
        *error = -1; /* the Python error is set */
    }
    return bytes;
}

static int is_single(PyObject *body, Py_ssize_t single_limit, PyObject *heads) {
    Py_ssize_t size = PyBytes_GET_SIZE(body);
    if (size >= single_limit || size >= PyList_GET_SIZE(heads)) {
        return 0;
    }
    PyObject *head = PyList_GET_ITEM(heads, size);
    Py_ssize_t head_size = PyBytes_GET_SIZE(head);
    return head_size <= size && memcmp(PyBytes_AS_STRING(body), PyBytes_AS_STRING(head), head_size) == 0;
}

static PyObject *fail(int error) {
    if (error == -1) {
        return NULL;
    }
    errno = error;
    return PyErr_SetFromErrno(PyExc_OSError);
}

static PyObject *drain(PyObject *Py_UNUSED(self), PyObject *args) {
    unsigned long long handle;
    Py_ssize_t limit, single_limit;
    PyObject *heads, *idents, *bodies;
    if (!PyArg_ParseTuple(args, "KnnO!O!O!", &handle, &limit, &single_limit, &PyList_Type, &heads, &PyList_Type,
                          &idents, &PyList_Type, &bodies)) {
        return NULL;
    }
    if (msg_recv == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind() was not called");
        return NULL;
    }
    void *socket = (void *)(uintptr_t)handle;
    Py_ssize_t handled = 0;
    while (handled < limit) {
        int more = 0, error = 0;
        PyObject *ident = receive(socket, &more, &error);
        if (ident == NULL) {
            if (error == EAGAIN) {
                break;
            }
            return fail(error);
        }
        handled++;
        PyObject *body = receive(socket, &more, &error); /* a ROUTER's identity part is never alone */
        if (body == NULL) {
            Py_DECREF(ident);
            return fail(error);
        }
        if (!more && is_single(body, single_limit, heads)) {
            int failed = PyList_Append(idents, ident) || PyList_Append(bodies, body);
            Py_DECREF(ident);
            Py_DECREF(body);
            if (failed) {
                return NULL;
            }
            continue;
        }
        return Py_BuildValue("n(NNO)", handled, ident, body, more ? Py_True : Py_False);
    }
    return Py_BuildValue("nO", handled, Py_None);
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS, "bind(init, recv, close, data, size, more, errno): libzmq's functions' addresses."},
    {"drain", drain, METH_VARARGS,
     "drain(handle, limit, single_limit, heads, idents, bodies) -> (messages read, odd message or None)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "collector._drain",
    .m_doc = "The ingest drain's receive loop in C (collector/fast_drain.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__drain(void) { return PyModule_Create(&module); }
