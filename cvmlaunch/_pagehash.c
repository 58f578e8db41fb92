/*
 * cvmlaunch._pagehash: SHA-384 of many whole 4 KiB pages in one call, the GIL released.
 *
 * A generic primitive: it knows pages and SHA-384, nothing about what the digests are for
 * (the SEV-SNP PAGE_INFO chain stays in cvmlaunch/measure/snp_chain.py).
 *
 * No build-time dependency on OpenSSL: the module uses the libcrypto that Python's _hashlib
 * module has already loaded. At import it imports _hashlib, finds the loaded shared object
 * whose name contains "libcrypto" (dl_iterate_phdr), takes a new reference to it with
 * dlopen(RTLD_NOLOAD) and looks up OpenSSL's SHA-384 (the assembly hashlib uses):
 *
 *   - SHA384_Init / SHA384_Update / SHA384_Final, the low-level API (deprecated in 3.0 but
 *     exported). Preferred: OpenSSL 3.0's one-shot SHA384() goes through EVP_Q_digest,
 *     which fetches the algorithm on every call (about 0.4 us, 8% of a 4 KiB page here).
 *   - else the one-shot SHA384(data, len, md).
 *
 * The prototypes are declared here; SHA512_CTX (openssl/sha.h: 216 bytes, public since
 * OpenSSL 0.9.8, callers allocate it) gets 512 aligned bytes. The functions found are
 * checked on the FIPS 180-2 examples (one block and two blocks) before the module can be
 * used; on any failure the import raises ImportError and callers use hashlib page by page.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <link.h>
#include <stdint.h>
#include <string.h>

#define PAGE_SIZE 4096
#define DIGEST_SIZE 48

/* openssl/sha.h, declared here so that no OpenSSL headers are needed. */
typedef int (*init_fn)(void *ctx);
typedef int (*update_fn)(void *ctx, const void *data, size_t len);
typedef int (*final_fn)(unsigned char *md, void *ctx);
typedef unsigned char *(*oneshot_fn)(const unsigned char *data, size_t len, unsigned char *md);

/* Room for a SHA512_CTX (216 bytes). */
typedef union {
    unsigned char bytes[512];
    uint64_t align64;
    void *align_ptr;
} sha512_ctx_space;

typedef struct {
    init_fn init; /* SHA384_Init, SHA384_Update, SHA384_Final: all set, or all NULL */
    update_fn update;
    final_fn final;
    oneshot_fn oneshot; /* SHA384: used when the low-level functions are not there */
} sha384_impl;

/* Set once, by the first import (under the GIL); only read afterwards. */
static sha384_impl impl;

/* SHA-384 of data[0:len] into md; 0 on failure. */
static int
sha384(const sha384_impl *f, const unsigned char *data, size_t len, unsigned char *md)
{
    if (f->init != NULL) {
        sha512_ctx_space ctx;

        return f->init(&ctx) == 1 && f->update(&ctx, data, len) == 1 &&
               f->final(md, &ctx) == 1;
    }
    return f->oneshot(data, len, md) == md;
}

/* FIPS 180-2, appendix D.1: SHA-384("abc"). */
static const unsigned char ABC_SHA384[DIGEST_SIZE] = {
    0xcb, 0x00, 0x75, 0x3f, 0x45, 0xa3, 0x5e, 0x8b, 0xb5, 0xa0, 0x3d, 0x69,
    0x9a, 0xc6, 0x50, 0x07, 0x27, 0x2c, 0x32, 0xab, 0x0e, 0xde, 0xd1, 0x63,
    0x1a, 0x8b, 0x60, 0x5a, 0x43, 0xff, 0x5b, 0xed, 0x80, 0x86, 0x07, 0x2b,
    0xa1, 0xe7, 0xcc, 0x23, 0x58, 0xba, 0xec, 0xa1, 0x34, 0xc8, 0x25, 0xa7,
};

/* FIPS 180-2, appendix D.2: SHA-384 of this 112-byte (two-block) message. */
static const char TWO_BLOCK_MSG[] =
    "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
    "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
static const unsigned char TWO_BLOCK_SHA384[DIGEST_SIZE] = {
    0x09, 0x33, 0x0c, 0x33, 0xf7, 0x11, 0x47, 0xe8, 0x3d, 0x19, 0x2f, 0xc7,
    0x82, 0xcd, 0x1b, 0x47, 0x53, 0x11, 0x1b, 0x17, 0x3b, 0x3b, 0x05, 0xd2,
    0x2f, 0xa0, 0x80, 0x86, 0xe3, 0xb0, 0xf7, 0x12, 0xfc, 0xc7, 0xc7, 0x1a,
    0x55, 0x7e, 0x2d, 0xb9, 0x66, 0xc3, 0xe9, 0xfa, 0x91, 0x74, 0x60, 0x39,
};

static int
works(const sha384_impl *f)
{
    unsigned char md[DIGEST_SIZE];

    return sha384(f, (const unsigned char *)"abc", 3, md) &&
           memcmp(md, ABC_SHA384, DIGEST_SIZE) == 0 &&
           sha384(f, (const unsigned char *)TWO_BLOCK_MSG, sizeof(TWO_BLOCK_MSG) - 1, md) &&
           memcmp(md, TWO_BLOCK_SHA384, DIGEST_SIZE) == 0;
}

/* POSIX guarantees that dlsym's object pointer converts to a function pointer; memcpy says
 * so without ISO C's warning about the cast. */
#define LOOKUP(handle, name, fn_ptr)                                                      \
    do {                                                                                  \
        void *sym_ = dlsym((handle), (name));                                             \
        memcpy(&(fn_ptr), &sym_, sizeof(fn_ptr));                                         \
    } while (0)

/* dl_iterate_phdr callback: the first loaded libcrypto whose SHA-384 gives the right answers
 * (through the low-level functions if it has them, else the one-shot). */
static int
find_sha384(struct dl_phdr_info *info, size_t size, void *found)
{
    const char *name = info->dlpi_name;
    sha384_impl f = {NULL, NULL, NULL, NULL};
    void *handle;

    (void)size;
    if (name == NULL || strstr(name, "libcrypto") == NULL)
        return 0;
    handle = dlopen(name, RTLD_NOW | RTLD_NOLOAD);
    if (handle == NULL)
        return 0;
    LOOKUP(handle, "SHA384_Init", f.init);
    LOOKUP(handle, "SHA384_Update", f.update);
    LOOKUP(handle, "SHA384_Final", f.final);
    LOOKUP(handle, "SHA384", f.oneshot);
    if (f.init == NULL || f.update == NULL || f.final == NULL || !works(&f)) {
        f.init = NULL;
        f.update = NULL;
        f.final = NULL;
        if (f.oneshot == NULL || !works(&f)) {
            dlclose(handle);
            return 0;
        }
    }
    *(sha384_impl *)found = f;
    return 1; /* the handle is kept: the library stays loaded for the process's life */
}

PyDoc_STRVAR(sha384_pages_doc,
"sha384_pages(buffer, first_page, count, /)\n"
"--\n\n"
"The SHA-384 digests of pages first_page .. first_page + count - 1 of buffer (4096 bytes\n"
"each), concatenated: 48 * count bytes. buffer is any C-contiguous object with the buffer\n"
"protocol (bytes, bytearray, memoryview, mmap); every page must lie wholly inside it.\n"
"The GIL is released while the pages are hashed.\n\n"
"Raises ValueError if an argument is negative or a page lies outside the buffer.");

static PyObject *
sha384_pages(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    Py_ssize_t first, count, npages, i;
    PyObject *out;
    unsigned char *md;
    const unsigned char *base;
    int ok = 1;

    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "sha384_pages() takes 3 arguments (buffer, first_page, count), %zd given",
                     nargs);
        return NULL;
    }
    first = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (first == -1 && PyErr_Occurred())
        return NULL;
    count = PyNumber_AsSsize_t(args[2], PyExc_OverflowError);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (first < 0 || count < 0) {
        PyErr_Format(PyExc_ValueError,
                     "sha384_pages: first_page (%zd) and count (%zd) must not be negative",
                     first, count);
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    npages = view.len / PAGE_SIZE;
    if (first > npages || count > npages - first) {
        PyErr_Format(PyExc_ValueError,
                     "sha384_pages: first_page %zd + count %zd is more than the %zd whole "
                     "pages in the buffer (%zd bytes)",
                     first, count, npages, view.len);
        PyBuffer_Release(&view);
        return NULL;
    }
    out = PyBytes_FromStringAndSize(NULL, count * DIGEST_SIZE);
    if (out == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    md = (unsigned char *)PyBytes_AS_STRING(out);
    base = (const unsigned char *)view.buf + (size_t)first * PAGE_SIZE;
    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < count && ok; i++)
        ok = sha384(&impl, base + (size_t)i * PAGE_SIZE, PAGE_SIZE,
                    md + (size_t)i * DIGEST_SIZE);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (!ok) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "sha384_pages: OpenSSL's SHA-384 failed");
        return NULL;
    }
    return out;
}

PyDoc_STRVAR(sha384_doc,
"sha384(buffer, /)\n"
"--\n\n"
"The SHA-384 digest (48 bytes) of buffer, with the same OpenSSL code as sha384_pages.\n"
"For short messages: it skips hashlib's object and its per-call algorithm fetch (about\n"
"half the cost of hashing 112 bytes). The GIL is held (the message is short).");

static PyObject *
sha384_one(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    unsigned char md[DIGEST_SIZE];
    int ok;

    (void)module;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    ok = sha384(&impl, (const unsigned char *)view.buf, (size_t)view.len, md);
    PyBuffer_Release(&view);
    if (!ok) {
        PyErr_SetString(PyExc_RuntimeError, "sha384: OpenSSL's SHA-384 failed");
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)md, DIGEST_SIZE);
}

static PyMethodDef methods[] = {
    {"sha384_pages", (PyCFunction)(void (*)(void))sha384_pages, METH_FASTCALL,
     sha384_pages_doc},
    {"sha384", (PyCFunction)sha384_one, METH_O, sha384_doc},
    {NULL, NULL, 0, NULL},
};

static int
exec_module(PyObject *module)
{
    if (impl.init == NULL && impl.oneshot == NULL) {
        sha384_impl found = {NULL, NULL, NULL, NULL};
        /* _hashlib links libcrypto: importing it loads the library looked for. */
        PyObject *hashlib_module = PyImport_ImportModule("_hashlib");

        if (hashlib_module == NULL) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ImportError,
                            "cvmlaunch._pagehash: _hashlib (OpenSSL) is not available");
            return -1;
        }
        Py_DECREF(hashlib_module);
        if (!dl_iterate_phdr(find_sha384, &found)) {
            PyErr_SetString(PyExc_ImportError,
                            "cvmlaunch._pagehash: no loaded libcrypto with a working SHA-384");
            return -1;
        }
        impl = found;
    }
    if (PyModule_AddIntConstant(module, "PAGE_SIZE", PAGE_SIZE) < 0 ||
        PyModule_AddIntConstant(module, "DIGEST_SIZE", DIGEST_SIZE) < 0 ||
        PyModule_AddStringConstant(module, "BACKEND",
                                   impl.init != NULL ? "SHA384_Init/Update/Final"
                                                     : "SHA384") < 0)
        return -1;
    return 0;
}

static PyModuleDef_Slot slots[] = {
    {Py_mod_exec, (void *)exec_module},
    {0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "cvmlaunch._pagehash",
    .m_doc = "SHA-384 of whole 4 KiB pages in batches, the GIL released, with the OpenSSL "
             "that _hashlib loaded (no build-time OpenSSL dependency).",
    .m_size = 0,
    .m_methods = methods,
    .m_slots = slots,
};

PyMODINIT_FUNC
PyInit__pagehash(void)
{
    return PyModuleDef_Init(&moduledef);
}
