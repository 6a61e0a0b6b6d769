/*
 * silo.kernel._sys: the few Linux calls Python 3.11 lacks, as a small C extension.
 *
 * silo.kernel.libc falls back to ctypes when this module is not built; it exists because
 * importing ctypes and resolving symbols costs 2-3 ms on every silo-runtime call, a sixth of
 * the runtime's whole budget. Every function returns a non-negative result or -errno;
 * silo.kernel.libc turns a negative result into OSError with the call's arguments.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

struct silo_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static const char *opt_bytes(PyObject *o)
{
    return o == Py_None ? NULL : PyBytes_AsString(o);
}

static PyObject *result(long r)
{
    return PyLong_FromLong(r < 0 ? -errno : r);
}

static PyObject *sys_mount(PyObject *self, PyObject *args)
{
    PyObject *src, *fstype, *data;
    const char *target;
    unsigned long flags;
    if (!PyArg_ParseTuple(args, "OyOkO", &src, &target, &fstype, &flags, &data))
        return NULL;
    const char *s = opt_bytes(src), *t = opt_bytes(fstype), *d = opt_bytes(data);
    if (PyErr_Occurred())
        return NULL;
    return result(mount(s, target, t, flags, d));
}

static PyObject *sys_umount2(PyObject *self, PyObject *args)
{
    const char *target;
    int flags;
    if (!PyArg_ParseTuple(args, "yi", &target, &flags))
        return NULL;
    return result(umount2(target, flags));
}

static PyObject *sys_pivot_root(PyObject *self, PyObject *args)
{
    const char *new_root, *put_old;
    if (!PyArg_ParseTuple(args, "yy", &new_root, &put_old))
        return NULL;
    return result(syscall(SYS_pivot_root, new_root, put_old));
}

static PyObject *sys_unshare(PyObject *self, PyObject *args)
{
    int flags;
    if (!PyArg_ParseTuple(args, "i", &flags))
        return NULL;
    return result(unshare(flags));
}

static PyObject *sys_setns(PyObject *self, PyObject *args)
{
    int fd, nstype;
    if (!PyArg_ParseTuple(args, "ii", &fd, &nstype))
        return NULL;
    return result(setns(fd, nstype));
}

static PyObject *sys_prctl(PyObject *self, PyObject *args)
{
    int option;
    unsigned long a2, a3, a4, a5;
    if (!PyArg_ParseTuple(args, "ikkkk", &option, &a2, &a3, &a4, &a5))
        return NULL;
    return result(prctl(option, a2, a3, a4, a5));
}

static PyObject *sys_sethostname(PyObject *self, PyObject *args)
{
    const char *name;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "y#", &name, &len))
        return NULL;
    return result(sethostname(name, (size_t)len));
}

static PyObject *sys_setdomainname(PyObject *self, PyObject *args)
{
    const char *name;
    Py_ssize_t len;
    if (!PyArg_ParseTuple(args, "y#", &name, &len))
        return NULL;
    return result(setdomainname(name, (size_t)len));
}

static PyObject *sys_close_range(PyObject *self, PyObject *args)
{
    unsigned int first, last, flags;
    if (!PyArg_ParseTuple(args, "III", &first, &last, &flags))
        return NULL;
    return result(syscall(SYS_close_range, first, last, flags));
}

static PyObject *sys_mount_setattr(PyObject *self, PyObject *args)
{
    const char *path;
    unsigned long long set, clr;
    unsigned int flags;
    if (!PyArg_ParseTuple(args, "yKKI", &path, &set, &clr, &flags))
        return NULL;
    struct silo_mount_attr attr = {set, clr, 0, 0};
    return result(syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &attr, sizeof attr));
}

static PyObject *sys_capget(PyObject *self, PyObject *args)
{
    int pid;
    if (!PyArg_ParseTuple(args, "i", &pid))
        return NULL;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, pid};
    struct __user_cap_data_struct data[2] = {{0}};
    if (syscall(SYS_capget, &hdr, data) < 0)
        return PyLong_FromLong(-errno);
    return Py_BuildValue("(KKK)",
        (unsigned long long)data[0].effective | (unsigned long long)data[1].effective << 32,
        (unsigned long long)data[0].permitted | (unsigned long long)data[1].permitted << 32,
        (unsigned long long)data[0].inheritable | (unsigned long long)data[1].inheritable << 32);
}

static PyObject *sys_capset(PyObject *self, PyObject *args)
{
    unsigned long long eff, prm, inh;
    if (!PyArg_ParseTuple(args, "KKK", &eff, &prm, &inh))
        return NULL;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {
        {(uint32_t)eff, (uint32_t)prm, (uint32_t)inh},
        {(uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32)},
    };
    return result(syscall(SYS_capset, &hdr, data));
}

static PyMethodDef methods[] = {
    {"mount", sys_mount, METH_VARARGS, "mount(src|None, target, fstype|None, flags, data|None)"},
    {"umount2", sys_umount2, METH_VARARGS, "umount2(target, flags)"},
    {"pivot_root", sys_pivot_root, METH_VARARGS, "pivot_root(new_root, put_old)"},
    {"unshare", sys_unshare, METH_VARARGS, "unshare(flags)"},
    {"setns", sys_setns, METH_VARARGS, "setns(fd, nstype)"},
    {"prctl", sys_prctl, METH_VARARGS, "prctl(option, a2, a3, a4, a5)"},
    {"sethostname", sys_sethostname, METH_VARARGS, "sethostname(name)"},
    {"setdomainname", sys_setdomainname, METH_VARARGS, "setdomainname(name)"},
    {"close_range", sys_close_range, METH_VARARGS, "close_range(first, last, flags)"},
    {"mount_setattr", sys_mount_setattr, METH_VARARGS, "mount_setattr(path, set, clr, flags)"},
    {"capget", sys_capget, METH_VARARGS, "capget(pid) -> (eff, prm, inh) or -errno"},
    {"capset", sys_capset, METH_VARARGS, "capset(eff, prm, inh)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "silo.kernel._sys",
    "Linux calls Python lacks; every function returns a result >= 0 or -errno.", -1, methods,
};

PyMODINIT_FUNC PyInit__sys(void)
{
    return PyModule_Create(&module);
}
