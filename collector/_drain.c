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
 *
 * With CURVE, drain(..., senders, check) also reads each message's "User-Id" (the sender's key, as
 * the ZAP handler named it; "" when there is none) and calls check(identity, key), a pure function
 * giving the refusal reason or "": a frame that passes and is one envelope adds its key to
 * ``senders``; any other message stops the drain as odd = (identity, body part, more, key, refusal).
 * check is called once per run of messages with the same identity and key.
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
typedef const char *(*msg_gets_fn)(const zmq_msg *, const char *);

static msg_init_fn msg_init;
static msg_recv_fn msg_recv;
static msg_close_fn msg_close;
static msg_data_fn msg_data;
static msg_size_fn msg_size;
static msg_more_fn msg_more;
static errno_fn zmq_errno_of;
static msg_gets_fn msg_gets;

static PyObject *bind(PyObject *Py_UNUSED(self), PyObject *args) {
    unsigned long long init, recv, close, data, size, more, err, gets;
    if (!PyArg_ParseTuple(args, "KKKKKKKK", &init, &recv, &close, &data, &size, &more, &err, &gets)) {
        return NULL;
    }
    if (!init || !recv || !close || !data || !size || !more || !err || !gets) {
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
    msg_gets = (msg_gets_fn)(uintptr_t)gets;
    Py_RETURN_NONE;
}

/* Receive one part into a new bytes object; NULL with *error set (EAGAIN or another errno, or -1 when
 * a Python error is set). With ``key``, also the part's "User-Id" as a new str ("" without one). */
static PyObject *receive(void *socket, int *more, int *error, PyObject **key) {
    zmq_msg msg;
    msg_init(&msg);
    if (msg_recv(&msg, socket, ZMQ_DONTWAIT) < 0) {
        *error = zmq_errno_of();
        msg_close(&msg);
        return NULL;
    }
    PyObject *bytes = PyBytes_FromStringAndSize((const char *)msg_data(&msg), (Py_ssize_t)msg_size(&msg));
    *more = msg_more(&msg);
    if (bytes != NULL && key != NULL) {
        const char *user = msg_gets(&msg, "User-Id");
        *key = PyUnicode_DecodeUTF8(user ? user : "", user ? (Py_ssize_t)strlen(user) : 0, "replace");
        if (*key == NULL) {
            Py_CLEAR(bytes);
        }
    }
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

/* What a CURVE drain remembers between messages: the last identity and key checked, and the answer. */
typedef struct {
    PyObject *check, *ident, *key, *refusal;
} Checked;

/* check(ident, key), or the last answer when both are the same as last time; a new reference. */
static PyObject *refusal_of(Checked *last, PyObject *ident, PyObject *key) {
    if (last->refusal != NULL && PyBytes_GET_SIZE(ident) == PyBytes_GET_SIZE(last->ident) &&
        memcmp(PyBytes_AS_STRING(ident), PyBytes_AS_STRING(last->ident), PyBytes_GET_SIZE(ident)) == 0 &&
        PyUnicode_Compare(key, last->key) == 0) {
        Py_INCREF(last->refusal);
        return last->refusal;
    }
    PyObject *refusal = PyObject_CallFunctionObjArgs(last->check, ident, key, NULL);
    if (refusal == NULL) {
        return NULL;
    }
    Py_INCREF(ident);
    Py_INCREF(key);
    Py_INCREF(refusal);
    Py_XSETREF(last->ident, ident);
    Py_XSETREF(last->key, key);
    Py_XSETREF(last->refusal, refusal);
    return refusal;
}

/* Add a passing one-envelope frame to the lists; 0, or -1 with a Python error set. */
static int collect(PyObject *idents, PyObject *bodies, PyObject *senders, PyObject *ident, PyObject *body,
                   PyObject *key) {
    if (PyList_Append(idents, ident) || PyList_Append(bodies, body)) {
        return -1;
    }
    return key != NULL ? PyList_Append(senders, key) : 0;
}

/* The loop of drain(); ``last.check`` is NULL without CURVE. */
static PyObject *drain_loop(void *socket, Py_ssize_t limit, Py_ssize_t single_limit, PyObject *heads,
                            PyObject *idents, PyObject *bodies, PyObject *senders, Checked *last) {
    Py_ssize_t handled = 0;
    while (handled < limit) {
        int more = 0, error = 0;
        PyObject *key = NULL, *refusal = NULL;
        PyObject *ident = receive(socket, &more, &error, last->check != NULL ? &key : NULL);
        if (ident == NULL) {
            return error == EAGAIN ? Py_BuildValue("nO", handled, Py_None) : fail(error);
        }
        handled++;
        PyObject *body = receive(socket, &more, &error, NULL); /* a ROUTER's identity part is never alone */
        if (body != NULL && key != NULL) {
            refusal = refusal_of(last, ident, key);
        }
        if (body == NULL || (key != NULL && refusal == NULL)) {
            Py_DECREF(ident);
            Py_XDECREF(key);
            Py_XDECREF(body);
            return body == NULL ? fail(error) : NULL;
        }
        int passes = refusal == NULL || !PyObject_IsTrue(refusal);
        if (passes && !more && is_single(body, single_limit, heads)) {
            int failed = collect(idents, bodies, senders, ident, body, key);
            Py_DECREF(ident);
            Py_DECREF(body);
            Py_XDECREF(key);
            Py_XDECREF(refusal);
            if (failed) {
                return NULL;
            }
            continue;
        }
        if (key == NULL) {
            return Py_BuildValue("n(NNO)", handled, ident, body, more ? Py_True : Py_False);
        }
        return Py_BuildValue("n(NNONN)", handled, ident, body, more ? Py_True : Py_False, key, refusal);
    }
    return Py_BuildValue("nO", handled, Py_None);
}

static PyObject *drain(PyObject *Py_UNUSED(self), PyObject *args) {
    unsigned long long handle;
    Py_ssize_t limit, single_limit;
    PyObject *heads, *idents, *bodies, *senders = Py_None, *check = Py_None;
    if (!PyArg_ParseTuple(args, "KnnO!O!O!|OO", &handle, &limit, &single_limit, &PyList_Type, &heads, &PyList_Type,
                          &idents, &PyList_Type, &bodies, &senders, &check)) {
        return NULL;
    }
    if (msg_recv == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "bind() was not called");
        return NULL;
    }
    if ((senders == Py_None) != (check == Py_None) || (senders != Py_None && !PyList_Check(senders))) {
        PyErr_SetString(PyExc_TypeError, "senders (a list) and check go together");
        return NULL;
    }
    Checked last = {check == Py_None ? NULL : check, NULL, NULL, NULL};
    PyObject *result = drain_loop((void *)(uintptr_t)handle, limit, single_limit, heads, idents, bodies, senders, &last);
    Py_XDECREF(last.ident);
    Py_XDECREF(last.key);
    Py_XDECREF(last.refusal);
    return result;
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_VARARGS,
     "bind(init, recv, close, data, size, more, errno, gets): libzmq's functions' addresses."},
    {"drain", drain, METH_VARARGS,
     "drain(handle, limit, single_limit, heads, idents, bodies[, senders, check]) -> (messages read, odd or None)."},
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
