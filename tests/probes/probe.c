/*
 * lamina's isolation probes: run inside a container, try what a hostile container would try,
 * and say what happened, one line per probe:
 *
 *     name <TAB> outcome <TAB> detail
 *
 * outcome is one of
 *     blocked  the attempt failed (detail: the errno name, or the step that failed; a child
 *              killed by SIGSYS, a seccomp filter's kill, counts as blocked too)
 *     allowed  the attempt got through (detail: "ok", what was read, or the errno the kernel
 *              returned after every permission check passed, e.g. EINVAL for a deliberately
 *              invalid argument)
 *     info     a fact, not an attempt (detail: the value, e.g. CapEff)
 *     skipped  the probe needs a parameter that was not given
 *     error    the probe itself failed (a signal other than SIGSYS, no result)
 *
 * Why one forked child per probe: a probe changes its own process (it unshares, joins a
 * keyring, changes its personality...) and may be killed by a seccomp filter; a crash or a
 * signal is then that probe's result, not the end of the suite.
 *
 * Nothing here harms the host, even where isolation fails: files and devices are opened for
 * writing and closed, never written; syscalls that would change the host get arguments the
 * kernel refuses only after its permission checks (an invalid reboot magic, kexec flags,
 * paths that do not exist); what is mounted is mounted on a fresh directory of the
 * container's own /tmp and unmounted at once; TIOCSTI is given a NULL character pointer, so
 * even a terminal that accepts it gets EFAULT and nothing is injected.
 *
 * Parameters (all optional; a probe whose parameter is missing says "skipped"):
 *     --marker TEXT         the text at the start of the block device below
 *     --block MAJ:MIN       a host block device (a loop device) holding the marker
 *     --device PATH         a device given with --device, expected to hold the marker
 *     --key DESC            the description of a "user" key in host root's user keyring
 *     --key-id SERIAL       that key's serial number
 *     --host-session SERIAL the session keyring of the process that started the container
 *     --other-cgroup REL    another container's cgroup, relative to a hierarchy's root
 *                           (lamina/<id>; docker/<id> under docker)
 *     --caller-stdout DEV:INO  st_dev:st_ino of the file the caller's stdout was
 *     --list                print the probe names and exit
 *     NAME...               run only these probes (default: all)
 *
 * Built static (make probes) so that it runs in any image; x86_64 Linux.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/quota.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define DETAIL_MAX 240
#define PROBE_TIMEOUT_S 5
#define MAX_FDS 1024
#define TMPFS_MAGIC_NUMBER 0x01021994
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif

/* ---- parameters and results ------------------------------------------------------------ */

static struct {
    const char *marker, *block, *device, *key, *key_id, *host_session, *other_cgroup;
    const char *caller_stdout;
    char fds_at_start[DETAIL_MAX]; /* descriptors above 2 open when main() began */
} params;

struct result {
    char outcome[16];
    char detail[DETAIL_MAX];
};

static void set(struct result *r, const char *outcome, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set(struct result *r, const char *outcome, const char *fmt, ...)
{
    va_list ap;
    snprintf(r->outcome, sizeof r->outcome, "%s", outcome);
    va_start(ap, fmt);
    vsnprintf(r->detail, sizeof r->detail, fmt, ap);
    va_end(ap);
}

/* The errno's name (EPERM), stable across libc versions, unlike strerror's text. */
static const char *ename(int e)
{
    static char buf[16];
    const char *name = strerrorname_np(e);
    if (name)
        return name;
    snprintf(buf, sizeof buf, "errno%d", e);
    return buf;
}

/* Denials: a permission check (EPERM, EACCES), a read-only mount (EROFS), a seccomp filter
 * that answers ENOSYS (docker's, for clone3) or a kernel built without the call. */
static int denied(int e)
{
    return e == EPERM || e == EACCES || e == EROFS || e == ENOSYS;
}

/* The outcome of a syscall attempt: allowed when it succeeded or failed on its (deliberately
 * invalid) arguments after the permission checks, blocked when it was denied. */
static void syscall_result(struct result *r, long rc, int err)
{
    if (rc >= 0)
        set(r, "allowed", "ok");
    else
        set(r, denied(err) ? "blocked" : "allowed", "%s", ename(err));
}

/* Run a syscall whose success returns a descriptor: close it, report. */
static void fd_result(struct result *r, long fd)
{
    int err = errno;
    if (fd >= 0)
        close((int)fd);
    syscall_result(r, fd, err);
}

/* Open for writing (never write) and close: the attempt that matters for /proc, /sys and
 * cgroup files, where permission is decided at open. */
static void open_for_writing(struct result *r, const char *path)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        set(r, "blocked", "%s", ename(errno));
        return;
    }
    close(fd);
    set(r, "allowed", "opened");
}

static int read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n, total = 0;
    if (fd < 0)
        return -1;
    while (total < (ssize_t)size - 1 && (n = read(fd, buf + total, size - 1 - total)) > 0)
        total += n;
    close(fd);
    buf[total] = 0;
    return (int)total;
}

/* One field of /proc/self/status ("CapEff", "Seccomp", ...), without its whitespace. */
static void status_field(struct result *r, const char *field)
{
    static char status[8192];
    size_t len = strlen(field);
    char *line = status;
    if (read_file("/proc/self/status", status, sizeof status) < 0) {
        set(r, "error", "/proc/self/status:%s", ename(errno));
        return;
    }
    while (line && *line) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            set(r, "info", "%s", line + len + 1 + strspn(line + len + 1, " \t"));
            return;
        }
        line = next;
    }
    set(r, "info", "absent");
}

/* A fresh directory in the container's own /tmp, for nodes and mounts. */
static int scratch_dir(char *dir, size_t size)
{
    snprintf(dir, size, "/tmp/lamina-probe-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

/* ---- capabilities, no_new_privs, seccomp mode -------------------------------------------- */

static void p_status_seccomp(struct result *r) { status_field(r, "Seccomp"); }
static void p_status_nonewprivs(struct result *r) { status_field(r, "NoNewPrivs"); }
static void p_status_capeff(struct result *r) { status_field(r, "CapEff"); }
static void p_status_capbnd(struct result *r) { status_field(r, "CapBnd"); }
static void p_status_capinh(struct result *r) { status_field(r, "CapInh"); }

/* ---- devices ----------------------------------------------------------------------------- */

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The device nodes directly in /dev (symlinks and directories aside), sorted; a long list
 * (a privileged container sees the host's) is given as a count. */
static void p_dev_nodes(struct result *r)
{
    static char names[256][64];
    const char *sorted[256];
    char path[300], out[DETAIL_MAX] = "";
    struct dirent *e;
    struct stat st;
    int n = 0, i;
    DIR *d = opendir("/dev");
    if (!d) {
        set(r, "error", "/dev: %s", ename(errno));
        return;
    }
    while ((e = readdir(d)) && n < 256) {
        snprintf(path, sizeof path, "/dev/%s", e->d_name);
        if (lstat(path, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) {
            snprintf(names[n], sizeof names[n], "%.63s", e->d_name);
            sorted[n] = names[n];
            n++;
        }
    }
    closedir(d);
    if (n > 12) {
        set(r, "info", "%d nodes", n);
        return;
    }
    qsort(sorted, n, sizeof sorted[0], compare_names);
    for (i = 0; i < n; i++)
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", i ? "," : "", sorted[i]);
    set(r, "info", "%s", out);
}

/* Every device docker's allow-list gives a container opens for reading and writing. */
static void p_dev_allowlist(struct result *r)
{
    static const char *const devs[] = {"null", "zero", "full", "random", "urandom", "ptmx"};
    char path[64];
    size_t i;
    for (i = 0; i < sizeof devs / sizeof devs[0]; i++) {
        int fd;
        snprintf(path, sizeof path, "/dev/%s", devs[i]);
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
            set(r, "blocked", "%s:%s", devs[i], ename(errno));
            return;
        }
        close(fd);
    }
    set(r, "allowed", "ok");
}

/* Whether a buffer holds the marker. */
static int has_marker(const char *buf, ssize_t n)
{
    size_t len = params.marker ? strlen(params.marker) : 0;
    return len && n >= (ssize_t)len && memmem(buf, n, params.marker, len) != NULL;
}

/* Read an opened device: "marker" when it holds the marker, else what read said. */
static void read_marker(struct result *r, int fd)
{
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0)
        set(r, "blocked", "read:%s", ename(errno));
    else if (has_marker(buf, n))
        set(r, "allowed", "marker");
    else
        set(r, "allowed", "read:%zd bytes", n);
}

/* mknod a device node in the container's /tmp, open it (read-only), read the marker if asked.
 * The detail names the step that failed: "mknod:EPERM" (lamina's device cgroup allows mknod
 * only of allowed devices) differs from "open:EPERM" (docker's allows any mknod). */
static void mknod_and_open(struct result *r, mode_t type, dev_t dev, int want_marker)
{
    char dir[64], node[80];
    int fd;
    if (scratch_dir(dir, sizeof dir) < 0) {
        set(r, "error", "mkdtemp:%s", ename(errno));
        return;
    }
    snprintf(node, sizeof node, "%s/node", dir);
    if (mknod(node, type | 0600, dev) < 0) {
        set(r, "blocked", "mknod:%s", ename(errno));
    } else if ((fd = open(node, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
        set(r, "blocked", "open:%s", ename(errno));
    } else {
        if (want_marker)
            read_marker(r, fd);
        else
            set(r, "allowed", "opened");
        close(fd);
    }
    unlink(node);
    rmdir(dir);
}

static void p_mknod_null(struct result *r) { mknod_and_open(r, S_IFCHR, makedev(1, 3), 0); }
static void p_mknod_tun(struct result *r) { mknod_and_open(r, S_IFCHR, makedev(10, 200), 0); }
static void p_mknod_kmsg(struct result *r) { mknod_and_open(r, S_IFCHR, makedev(1, 11), 0); }

static void p_mknod_block(struct result *r)
{
    unsigned major, minor;
    if (!params.block || sscanf(params.block, "%u:%u", &major, &minor) != 2) {
        set(r, "skipped", "no --block MAJ:MIN");
        return;
    }
    mknod_and_open(r, S_IFBLK, makedev(major, minor), 1);
}

/* The host's /dev/kmsg, were it in the container's /dev (it is with --privileged). */
static void p_dev_kmsg(struct result *r)
{
    int fd = open("/dev/kmsg", O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        set(r, "blocked", "%s", ename(errno));
        return;
    }
    close(fd);
    set(r, "allowed", "opened");
}

/* The device given with --device: readable (it holds the marker)... */
static void p_device_read(struct result *r)
{
    int fd;
    if (!params.device) {
        set(r, "skipped", "no --device PATH");
        return;
    }
    if ((fd = open(params.device, O_RDONLY | O_CLOEXEC)) < 0) {
        set(r, "blocked", "open:%s", ename(errno));
        return;
    }
    read_marker(r, fd);
    close(fd);
}

/* ...and, given with ":r", not writable (opened for writing and closed, never written). */
static void p_device_write(struct result *r)
{
    if (!params.device) {
        set(r, "skipped", "no --device PATH");
        return;
    }
    open_for_writing(r, params.device);
}

/* ---- seccomp: namespaces and mounts ----------------------------------------------------- */

/* Reap a child made by clone/clone3 that exits at once. */
static void reap(long pid, struct result *r, int err)
{
    if (pid == 0)
        syscall(SYS_exit_group, 0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, __WALL);
    syscall_result(r, pid, err);
}

static void p_unshare_user(struct result *r)
{
    long rc = unshare(CLONE_NEWUSER);
    syscall_result(r, rc, errno);
}

static void p_clone_newuser(struct result *r)
{
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    reap(pid, r, errno);
}

/* clone3's flags sit in memory a seccomp filter cannot read, so docker's profile answers it
 * ENOSYS (libc then falls back to clone, whose flags it can check). */
struct clone_args_v0 {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static void p_clone3_newuser(struct result *r)
{
    struct clone_args_v0 args = {.flags = CLONE_NEWUSER, .exit_signal = SIGCHLD};
    long pid = syscall(SYS_clone3, &args, sizeof args);
    reap(pid, r, errno);
}

static void p_unshare_mnt(struct result *r)
{
    long rc = unshare(CLONE_NEWNS);
    syscall_result(r, rc, errno);
}

/* setns into the UTS namespace it is already in: harmless, and needs CAP_SYS_ADMIN. */
static void p_setns(struct result *r)
{
    int fd = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
    long rc;
    if (fd < 0) {
        set(r, "error", "/proc/self/ns/uts:%s", ename(errno));
        return;
    }
    rc = setns(fd, CLONE_NEWUTS);
    syscall_result(r, rc, errno);
    close(fd);
}

static void p_mount(struct result *r)
{
    char dir[64];
    long rc;
    if (scratch_dir(dir, sizeof dir) < 0) {
        set(r, "error", "mkdtemp:%s", ename(errno));
        return;
    }
    rc = mount("probe", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k");
    syscall_result(r, rc, errno);
    if (rc == 0)
        umount2(dir, MNT_DETACH);
    rmdir(dir);
}

/* umount2 of a directory that is not a mount point: EINVAL once permitted. */
static void p_umount(struct result *r)
{
    char dir[64];
    long rc;
    if (scratch_dir(dir, sizeof dir) < 0) {
        set(r, "error", "mkdtemp:%s", ename(errno));
        return;
    }
    rc = umount2(dir, 0);
    syscall_result(r, rc, errno);
    rmdir(dir);
}

static void p_pivot_root(struct result *r)
{
    long rc = syscall(SYS_pivot_root, "/lamina-probe-absent", "/lamina-probe-absent/old");
    syscall_result(r, rc, errno);
}

static void p_open_tree(struct result *r)
{
    fd_result(r, syscall(SYS_open_tree, AT_FDCWD, "/tmp", OPEN_TREE_CLONE | O_CLOEXEC));
}

static void p_fsopen(struct result *r)
{
    fd_result(r, syscall(SYS_fsopen, "tmpfs", 0));
}

/* ---- seccomp: the kernel, the clock, the hardware ----------------------------------------- */

static void p_swapon(struct result *r)
{
    long rc = syscall(SYS_swapon, "/lamina-probe-absent", 0);
    syscall_result(r, rc, errno);
}

/* An invalid magic: the kernel checks CAP_SYS_BOOT first, then answers EINVAL. */
static void p_reboot(struct result *r)
{
    long rc = syscall(SYS_reboot, 0, 0, 0, NULL);
    syscall_result(r, rc, errno);
}

static void p_init_module(struct result *r)
{
    long rc = syscall(SYS_init_module, NULL, 0, "");
    syscall_result(r, rc, errno);
}

static void p_finit_module(struct result *r)
{
    long rc = syscall(SYS_finit_module, -1, "", 0);
    syscall_result(r, rc, errno);
}

static void p_delete_module(struct result *r)
{
    long rc = syscall(SYS_delete_module, "lamina_probe_absent", O_NONBLOCK);
    syscall_result(r, rc, errno);
}

/* Too many segments, an unknown architecture and an unknown flag: EINVAL three times over
 * once CAP_SYS_BOOT is granted (zero segments would unload a loaded kernel: never). */
static void p_kexec_load(struct result *r)
{
    long rc = syscall(SYS_kexec_load, 0UL, 1000UL, NULL, 0xdead4000UL);
    syscall_result(r, rc, errno);
}

static void p_kexec_file_load(struct result *r)
{
    long rc = syscall(SYS_kexec_file_load, -1, -1, 0UL, "", 0xdead0000UL);
    syscall_result(r, rc, errno);
}

/* SYSLOG_ACTION_SIZE_BUFFER: a query, never a read or a clear of the kernel log. */
static void p_syslog(struct result *r)
{
    long rc = syscall(SYS_syslog, 10, NULL, 0);
    syscall_result(r, rc, errno);
}

static void p_acct(struct result *r)
{
    long rc = syscall(SYS_acct, "/lamina-probe-absent");
    syscall_result(r, rc, errno);
}

/* Neither a time nor a zone: a no-op that still needs CAP_SYS_TIME. */
static void p_settimeofday(struct result *r)
{
    long rc = syscall(SYS_settimeofday, NULL, NULL);
    syscall_result(r, rc, errno);
}

/* I/O port access for this child only (granted, never used). */
static void p_iopl(struct result *r)
{
    long rc = syscall(SYS_iopl, 3);
    syscall_result(r, rc, errno);
}

static void p_ioperm(struct result *r)
{
    long rc = syscall(SYS_ioperm, 0x80UL, 1UL, 1);
    syscall_result(r, rc, errno);
}

/* Q_GETFMT on a path that does not exist: ENOENT once the call is let through. */
static void p_quotactl(struct result *r)
{
    char fmt[8];
    long rc = syscall(SYS_quotactl, QCMD(Q_GETFMT, USRQUOTA), "/lamina-probe-absent", 0, fmt);
    syscall_result(r, rc, errno);
}

/* ---- seccomp: introspection and memory ---------------------------------------------------- */

/* A software clock that counts kernel time too: perf_event_paranoid alone forbids it to an
 * unprivileged user, so only capabilities (and seccomp) decide. */
static void p_perf_event_open(struct result *r)
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.disabled = 1;
    fd_result(r, syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC));
}

static void p_userfaultfd(struct result *r)
{
    fd_result(r, syscall(SYS_userfaultfd, O_CLOEXEC));
}

/* A one-entry array map: what any eBPF use starts with; needs CAP_BPF (or CAP_SYS_ADMIN)
 * unless kernel.unprivileged_bpf_disabled is 0. Closed at once. */
static void p_bpf(struct result *r)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    fd_result(r, syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
}

/* READ_IMPLIES_EXEC makes every readable mapping executable; docker allows only a few
 * personalities. Changes this child only. */
static void p_personality(struct result *r)
{
    long rc = syscall(SYS_personality, PER_LINUX | READ_IMPLIES_EXEC);
    syscall_result(r, rc, errno);
}

static void p_io_uring_setup(struct result *r)
{
    char params_buf[120]; /* struct io_uring_params */
    memset(params_buf, 0, sizeof params_buf);
    fd_result(r, syscall(SYS_io_uring_setup, 1, params_buf));
}

static void p_fanotify_init(struct result *r)
{
    fd_result(r, syscall(SYS_fanotify_init, FAN_CLASS_NOTIF | FAN_CLOEXEC, O_RDONLY));
}

/* A handle to /dev (the container's tmpfs, which supports handles). */
static int handle_of_dev(struct file_handle *h)
{
    int mount_id;
    h->handle_bytes = MAX_HANDLE_SZ;
    return name_to_handle_at(AT_FDCWD, "/dev", h, &mount_id, 0);
}

static void p_name_to_handle_at(struct result *r)
{
    static char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    long rc = handle_of_dev((struct file_handle *)buf);
    syscall_result(r, rc, errno);
}

/* The "shocker" escape: open_by_handle_at with a guessed handle reaches any file of the
 * mount; it needs CAP_DAC_READ_SEARCH. Tried with a real handle when one could be had. */
static void p_open_by_handle_at(struct result *r)
{
    static char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
    struct file_handle *h = (struct file_handle *)buf;
    int mount_fd = open("/dev", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (mount_fd < 0) {
        set(r, "error", "/dev:%s", ename(errno));
        return;
    }
    if (handle_of_dev(h) < 0) {
        h->handle_bytes = 8;
        h->handle_type = 1;
    }
    fd_result(r, open_by_handle_at(mount_fd, h, O_RDONLY | O_CLOEXEC));
    close(mount_fd);
}

/* Read this process's own memory through process_vm_readv. */
static void p_process_vm_readv(struct result *r)
{
    char src[8] = "probe", dst[8] = "";
    struct iovec local = {dst, sizeof dst}, remote = {src, sizeof src};
    long rc = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    syscall_result(r, rc, errno);
}

/* PTRACE_SEIZE a child of our own (then kill it): ptrace as a debugger inside would use it. */
static void p_ptrace(struct result *r)
{
    pid_t child = fork();
    long rc;
    int err;
    if (child == 0) {
        pause();
        _exit(0);
    }
    if (child < 0) {
        set(r, "error", "fork:%s", ename(errno));
        return;
    }
    rc = ptrace(PTRACE_SEIZE, child, NULL, NULL);
    err = errno;
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    syscall_result(r, rc, err);
}

/* ---- keyrings ---------------------------------------------------------------------------- */

static void p_keyctl(struct result *r)
{
    long rc = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
    syscall_result(r, rc, errno);
}

/* A key in this thread's keyring: gone when the probe's child exits. */
static void p_add_key(struct result *r)
{
    long rc = syscall(SYS_add_key, "user", "lamina-probe", "x", 1, KEY_SPEC_THREAD_KEYRING);
    syscall_result(r, rc, errno);
}

/* The session keyring is the container's own, not the one of whoever started it. */
static void p_key_session(struct result *r)
{
    long id;
    if (!params.host_session) {
        set(r, "skipped", "no --host-session SERIAL");
        return;
    }
    id = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
    if (id < 0)
        set(r, "blocked", "%s", ename(errno));
    else if (id == atol(params.host_session))
        set(r, "allowed", "host session");
    else
        set(r, "blocked", "own session");
}

/* Read a found key: allowed only when it holds the marker. `prefix` names the step in the
 * detail when an earlier step (the search) succeeded. */
static void read_key(struct result *r, long id, const char *prefix)
{
    char buf[256];
    long n = syscall(SYS_keyctl, KEYCTL_READ, id, buf, sizeof buf);
    if (n < 0)
        set(r, "blocked", "%s%s", prefix, ename(errno));
    else if (has_marker(buf, n < (long)sizeof buf ? n : (long)sizeof buf))
        set(r, "allowed", "marker");
    else
        set(r, "blocked", "%sother key", prefix);
}

/* Search host root's user keyring (@u: root inside is root outside without a user
 * namespace) for the host's key by description, linking what it finds into this child's
 * thread keyring (which makes the key "possessed", so that its possessor's read permission
 * applies; the thread keyring dies with the child), and read it. */
static void p_key_search(struct result *r)
{
    long id;
    if (!params.key) {
        set(r, "skipped", "no --key DESC");
        return;
    }
    id = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING, "user", params.key,
                 KEY_SPEC_THREAD_KEYRING);
    if (id < 0)
        set(r, "blocked", "%s", ename(errno));
    else
        read_key(r, id, "found, read:");
}

/* request_key searches the thread, process and session keyrings: finds nothing when the
 * session keyring is the container's own. */
static void p_key_request(struct result *r)
{
    long id;
    if (!params.key) {
        set(r, "skipped", "no --key DESC");
        return;
    }
    id = syscall(SYS_request_key, "user", params.key, NULL, 0);
    if (id < 0)
        set(r, "blocked", "%s", ename(errno));
    else
        read_key(r, id, "found, read:");
}

/* Read the host's key by its serial number, without finding it first. */
static void p_key_read_id(struct result *r)
{
    if (!params.key_id) {
        set(r, "skipped", "no --key-id SERIAL");
        return;
    }
    read_key(r, atol(params.key_id), "");
}

/* /proc/keys lists every key the caller may view, the host's included, unless masked. */
static void p_proc_keys(struct result *r)
{
    static char buf[65536];
    struct stat st;
    if (stat("/proc/keys", &st) < 0) {
        set(r, "blocked", "%s", ename(errno));
        return;
    }
    if (S_ISCHR(st.st_mode)) {
        set(r, "blocked", "masked");
        return;
    }
    if (read_file("/proc/keys", buf, sizeof buf) < 0) {
        set(r, "blocked", "%s", ename(errno));
        return;
    }
    if (!params.key)
        set(r, "allowed", "readable");
    else
        set(r, strstr(buf, params.key) ? "allowed" : "blocked",
            strstr(buf, params.key) ? "visible" : "absent");
}

/* ---- stdio ------------------------------------------------------------------------------- */

/* TIOCSTI pushes a character into a terminal's input: through an inherited terminal it
 * would type commands into the caller's shell. The pointer is NULL, so even a terminal that
 * lets it through answers EFAULT and receives nothing. */
static void p_stdio_tiocsti(struct result *r)
{
    char out[DETAIL_MAX] = "";
    int fd, reached = 0;
    for (fd = 0; fd <= 2; fd++) {
        int rc = ioctl(fd, TIOCSTI, NULL);
        int err = errno;
        if (rc == 0 || err == EFAULT)
            reached = 1;
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", fd ? "," : "",
                 rc == 0 ? "ok" : ename(err));
    }
    set(r, reached ? "allowed" : "blocked", "%s", out);
}

static const char *kind(mode_t mode)
{
    return S_ISFIFO(mode) ? "fifo" : S_ISCHR(mode) ? "chr" : S_ISREG(mode) ? "file"
         : S_ISSOCK(mode) ? "socket" : S_ISBLK(mode) ? "blk" : "other";
}

/* Reopen stdout and stderr through /proc/self/fd (for writing; never written): a relayed
 * pipe gives a pipe, an inherited descriptor would give the caller's own file. */
static void p_stdio_reopen(struct result *r)
{
    char out[DETAIL_MAX] = "", path[32];
    unsigned long long dev = 0, ino = 0;
    int fd, reached = 0;
    if (params.caller_stdout)
        sscanf(params.caller_stdout, "%llu:%llu", &dev, &ino);
    for (fd = 1; fd <= 2; fd++) {
        struct stat st;
        int again, callers;
        const char *sep = fd > 1 ? "," : "";
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        again = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (again < 0) {
            snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", sep, ename(errno));
            continue;
        }
        fstat(again, &st);
        close(again);
        callers = params.caller_stdout && st.st_dev == dev && st.st_ino == ino;
        if (callers || S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))
            reached = 1;
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", sep,
                 callers ? "caller's" : kind(st.st_mode));
    }
    set(r, reached ? "allowed" : "blocked", "%s", out);
}

/* Descriptors above 2 open when the program started: any would be a leak from the caller
 * or the engine. */
static void p_fds_inherited(struct result *r)
{
    if (params.fds_at_start[0])
        set(r, "allowed", "%s", params.fds_at_start);
    else
        set(r, "blocked", "none");
}

/* ---- cgroups ----------------------------------------------------------------------------- */

/* The first of a v1 and a v2 path that exists. */
static const char *first_existing(const char *v1, const char *v2)
{
    return access(v1, F_OK) == 0 ? v1 : access(v2, F_OK) == 0 ? v2 : NULL;
}

static const char *pids_max(void)
{
    return first_existing("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max");
}

static const char *memory_limit(void)
{
    return first_existing("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory.max");
}

/* /proc/self/cgroup: "/" everywhere in a cgroup namespace; else the host's paths. */
static void p_cgroup_host_path(struct result *r)
{
    static char buf[4096];
    char *line;
    if (read_file("/proc/self/cgroup", buf, sizeof buf) < 0) {
        set(r, "error", "/proc/self/cgroup:%s", ename(errno));
        return;
    }
    for (line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        char *path = strrchr(line, ':');
        if (path && strcmp(path, ":/") != 0) {
            set(r, "allowed", "%s", path + 1);
            return;
        }
    }
    set(r, "blocked", "/");
}

static void strip_newline(char *s)
{
    s[strcspn(s, "\n")] = 0;
}

/* The container's own limits, as it sees them under /sys/fs/cgroup. */
static void p_cgroup_limits(struct result *r)
{
    char pids[64] = "absent", memory[64] = "absent";
    const char *p = pids_max(), *m = memory_limit();
    if (p && read_file(p, pids, sizeof pids) < 0)
        snprintf(pids, sizeof pids, "%s", ename(errno));
    if (m && read_file(m, memory, sizeof memory) < 0)
        snprintf(memory, sizeof memory, "%s", ename(errno));
    strip_newline(pids);
    strip_newline(memory);
    set(r, "info", "pids=%s memory=%s", pids, memory);
}

/* The mount holding its cgroup files: read-only unless privileged. */
static void p_cgroup_ro(struct result *r)
{
    struct statvfs sv;
    const char *p = pids_max();
    if (!p) {
        set(r, "blocked", "no cgroup files");
        return;
    }
    if (statvfs(p, &sv) < 0) {
        set(r, "error", "statvfs:%s", ename(errno));
        return;
    }
    if (sv.f_flag & ST_RDONLY)
        set(r, "blocked", "ro");
    else
        set(r, "allowed", "rw");
}

static void p_cgroup_pids_write(struct result *r)
{
    const char *p = pids_max();
    if (p)
        open_for_writing(r, p);
    else
        set(r, "blocked", "ENOENT");
}

static void p_cgroup_memory_write(struct result *r)
{
    const char *m = memory_limit();
    if (m)
        open_for_writing(r, m);
    else
        set(r, "blocked", "ENOENT");
}

/* Any release_agent under /sys/fs/cgroup (a v1 hierarchy's root only has one). */
static void p_cgroup_release_agent(struct result *r)
{
    char path[300];
    struct dirent *e;
    DIR *d = opendir("/sys/fs/cgroup");
    set(r, "blocked", "ENOENT");
    if (!d)
        return;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/sys/fs/cgroup/%s/release_agent", e->d_name);
        if (access(path, F_OK) == 0) {
            open_for_writing(r, path);
            if (strcmp(r->outcome, "allowed") == 0)
                break;
        }
    }
    closedir(d);
}

/* The v1 hierarchies this process is in, as mount options ("freezer", "cpu,cpuacct",
 * "none,name=systemd"), from /proc/self/cgroup. */
static int v1_hierarchies(char opts[][64], int max)
{
    static char buf[4096];
    char *line, *save = NULL;
    int n = 0;
    if (read_file("/proc/self/cgroup", buf, sizeof buf) < 0)
        return 0;
    for (line = strtok_r(buf, "\n", &save); line && n < max; line = strtok_r(NULL, "\n", &save)) {
        char *ctrl = strchr(line, ':'), *end;
        if (!ctrl || !(end = strchr(++ctrl, ':')) || end == ctrl)
            continue;
        *end = 0;
        snprintf(opts[n++], 64, "%s%s", strncmp(ctrl, "name=", 5) == 0 ? "none," : "", ctrl);
    }
    return n;
}

/* Mount a v1 hierarchy afresh on a scratch directory (privileged containers may), run
 * `look` on it, unmount. Returns the mount's errno, 0 when mounted. */
static int with_v1_mount(const char *opts, void (*look)(struct result *, const char *),
                         struct result *r)
{
    char dir[64];
    int err = 0;
    if (scratch_dir(dir, sizeof dir) < 0)
        return errno;
    if (mount("cgroup", dir, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0) {
        err = errno;
    } else {
        look(r, dir);
        umount2(dir, MNT_DETACH);
    }
    rmdir(dir);
    return err;
}

static void look_release_agent(struct result *r, const char *dir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/release_agent", dir);
    open_for_writing(r, path);
}

/* The classic escape (CVE-2022-0492 and before it "notify_on_release"): mount a v1
 * hierarchy and write its release_agent, which the host's kernel runs as root. In a cgroup
 * namespace the mount's root is the container's own cgroup, where there is no such file.
 * Every hierarchy it is in is tried: one whose namespace root is the host's root is enough. */
static void p_cgroup_mount_release_agent(struct result *r)
{
    char opts[16][64];
    int i, n = v1_hierarchies(opts, 16), err = 0, mounted = 0;
    for (i = 0; i < n; i++) {
        struct result one;
        set(&one, "blocked", "ENOENT");
        if ((err = with_v1_mount(opts[i], look_release_agent, &one)) != 0)
            continue;
        if (strcmp(one.outcome, "allowed") == 0) {
            set(r, "allowed", "opened in %s", opts[i]);
            return;
        }
        mounted = 1;
        *r = one;
    }
    if (n == 0)
        set(r, "blocked", "no v1 hierarchy");
    else if (!mounted)
        set(r, "blocked", "mount:%s", ename(err));
}

static const char *other_rel_path;

static void look_other_freezer(struct result *r, const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/freezer.state", dir, other_rel_path);
    open_for_writing(r, path);
}

/* Another container's freezer.state (freezing it would be a denial of service): at the
 * host's path, then through a freshly mounted freezer hierarchy. */
static void p_cgroup_other_freezer(struct result *r)
{
    char path[512], first[32];
    int err;
    if (!params.other_cgroup) {
        set(r, "skipped", "no --other-cgroup REL");
        return;
    }
    other_rel_path = params.other_cgroup;
    snprintf(path, sizeof path, "/sys/fs/cgroup/freezer/%s/freezer.state", params.other_cgroup);
    open_for_writing(r, path);
    if (strcmp(r->outcome, "allowed") == 0)
        return;
    snprintf(first, sizeof first, "%.31s", r->detail);
    set(r, "blocked", "ENOENT");
    err = with_v1_mount("freezer", look_other_freezer, r);
    if (err)
        set(r, "blocked", "%s,mount:%s", first, ename(err));
    else if (strcmp(r->outcome, "allowed") == 0)
        set(r, "allowed", "through a mount");
    else {
        char second[32];
        snprintf(second, sizeof second, "%.31s", r->detail);
        set(r, "blocked", "%s,%s", first, second);
    }
}

/* ---- /proc and /sys ---------------------------------------------------------------------- */

/* The kernel's core_pattern: a pipe there runs a host program as root on every crash. */
static void p_proc_sys_write(struct result *r)
{
    open_for_writing(r, "/proc/sys/kernel/core_pattern");
}

static void p_proc_sysrq_write(struct result *r)
{
    open_for_writing(r, "/proc/sysrq-trigger");
}

/* /proc/kcore is the host's memory as an ELF core: masked (/dev/null bound over it). */
static void p_proc_kcore(struct result *r)
{
    struct stat st;
    int fd = open("/proc/kcore", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set(r, "blocked", "%s", ename(errno));
        return;
    }
    fstat(fd, &st);
    close(fd);
    if (S_ISCHR(st.st_mode))
        set(r, "blocked", "masked");
    else
        set(r, "allowed", "opened");
}

/* /proc/interrupts: per-CPU interrupt counts, a side channel on the host's activity
 * (docker masks it since 2025, GHSA-6fw5-f8r9-fgfm). */
static void p_proc_interrupts(struct result *r)
{
    char buf[64];
    struct stat st;
    if (stat("/proc/interrupts", &st) < 0) {
        set(r, "blocked", "%s", ename(errno));
        return;
    }
    if (S_ISCHR(st.st_mode))
        set(r, "blocked", "masked");
    else if (read_file("/proc/interrupts", buf, sizeof buf) < 0)
        set(r, "blocked", "%s", ename(errno));
    else
        set(r, "allowed", "readable");
}

/* /sys/firmware (ACPI tables, EFI variables, memory maps): an empty tmpfs when masked. */
static void p_sys_firmware(struct result *r)
{
    struct statfs sf;
    if (statfs("/sys/firmware", &sf) < 0) {
        set(r, "blocked", "%s", ename(errno));
        return;
    }
    if (sf.f_type == TMPFS_MAGIC_NUMBER)
        set(r, "blocked", "masked");
    else
        set(r, "allowed", "readable");
}

static void p_sys_ro(struct result *r)
{
    struct statvfs sv;
    if (statvfs("/sys", &sv) < 0) {
        set(r, "error", "statvfs:%s", ename(errno));
        return;
    }
    if (sv.f_flag & ST_RDONLY)
        set(r, "blocked", "ro");
    else
        set(r, "allowed", "rw");
}

/* lo's MTU: with --network host that is the host's interface. */
static void p_sys_net_write(struct result *r)
{
    open_for_writing(r, "/sys/class/net/lo/mtu");
}

/* ---- the suite --------------------------------------------------------------------------- */

struct probe {
    const char *name;
    void (*run)(struct result *);
};

static const struct probe probes[] = {
    /* capabilities, no_new_privs, seccomp */
    {"status_seccomp", p_status_seccomp},
    {"status_nonewprivs", p_status_nonewprivs},
    {"status_capeff", p_status_capeff},
    {"status_capbnd", p_status_capbnd},
    {"status_capinh", p_status_capinh},
    /* devices */
    {"dev_nodes", p_dev_nodes},
    {"dev_allowlist", p_dev_allowlist},
    {"mknod_null", p_mknod_null},
    {"mknod_tun", p_mknod_tun},
    {"mknod_kmsg", p_mknod_kmsg},
    {"mknod_block", p_mknod_block},
    {"dev_kmsg", p_dev_kmsg},
    {"device_read", p_device_read},
    {"device_write", p_device_write},
    /* seccomp: namespaces and mounts */
    {"unshare_user", p_unshare_user},
    {"clone_newuser", p_clone_newuser},
    {"clone3_newuser", p_clone3_newuser},
    {"unshare_mnt", p_unshare_mnt},
    {"setns", p_setns},
    {"mount", p_mount},
    {"umount", p_umount},
    {"pivot_root", p_pivot_root},
    {"open_tree", p_open_tree},
    {"fsopen", p_fsopen},
    /* seccomp: the kernel, the clock, the hardware */
    {"swapon", p_swapon},
    {"reboot", p_reboot},
    {"init_module", p_init_module},
    {"finit_module", p_finit_module},
    {"delete_module", p_delete_module},
    {"kexec_load", p_kexec_load},
    {"kexec_file_load", p_kexec_file_load},
    {"syslog", p_syslog},
    {"acct", p_acct},
    {"settimeofday", p_settimeofday},
    {"iopl", p_iopl},
    {"ioperm", p_ioperm},
    {"quotactl", p_quotactl},
    /* seccomp: introspection and memory */
    {"perf_event_open", p_perf_event_open},
    {"userfaultfd", p_userfaultfd},
    {"bpf", p_bpf},
    {"personality", p_personality},
    {"io_uring_setup", p_io_uring_setup},
    {"fanotify_init", p_fanotify_init},
    {"name_to_handle_at", p_name_to_handle_at},
    {"open_by_handle_at", p_open_by_handle_at},
    {"process_vm_readv", p_process_vm_readv},
    {"ptrace", p_ptrace},
    /* keyrings */
    {"keyctl", p_keyctl},
    {"add_key", p_add_key},
    {"key_session", p_key_session},
    {"key_search", p_key_search},
    {"key_request", p_key_request},
    {"key_read_id", p_key_read_id},
    {"proc_keys", p_proc_keys},
    /* stdio */
    {"stdio_tiocsti", p_stdio_tiocsti},
    {"stdio_reopen", p_stdio_reopen},
    {"fds_inherited", p_fds_inherited},
    /* cgroups */
    {"cgroup_host_path", p_cgroup_host_path},
    {"cgroup_limits", p_cgroup_limits},
    {"cgroup_ro", p_cgroup_ro},
    {"cgroup_pids_write", p_cgroup_pids_write},
    {"cgroup_memory_write", p_cgroup_memory_write},
    {"cgroup_release_agent", p_cgroup_release_agent},
    {"cgroup_mount_release_agent", p_cgroup_mount_release_agent},
    {"cgroup_other_freezer", p_cgroup_other_freezer},
    /* /proc and /sys */
    {"proc_sys_write", p_proc_sys_write},
    {"proc_sysrq_write", p_proc_sysrq_write},
    {"proc_kcore", p_proc_kcore},
    {"proc_interrupts", p_proc_interrupts},
    {"sys_firmware", p_sys_firmware},
    {"sys_ro", p_sys_ro},
    {"sys_net_write", p_sys_net_write},
};

#define NPROBES (sizeof probes / sizeof probes[0])

/* Write all of a buffer (a pipe may take it in pieces). */
static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

/* What a child that sent no result died of. SIGSYS is a seccomp filter's kill: blocked. */
static void died(struct result *r, int status)
{
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
        set(r, "blocked", "signal:SIGSYS");
    else if (WIFSIGNALED(status))
        set(r, "error", "signal:%s", sigabbrev_np(WTERMSIG(status)) ?: "?");
    else
        set(r, "error", "exit:%d", WEXITSTATUS(status));
}

/* Run one probe in a child of its own, with a timeout; print its line. */
static void run_one(const struct probe *p)
{
    struct result res;
    char line[DETAIL_MAX + 64];
    size_t got = 0;
    ssize_t n;
    int fds[2], status = 0;
    pid_t pid;
    if (pipe2(fds, O_CLOEXEC) < 0) {
        set(&res, "error", "pipe:%s", ename(errno));
    } else if ((pid = fork()) == 0) {
        close(fds[0]);
        alarm(PROBE_TIMEOUT_S);
        memset(&res, 0, sizeof res);
        set(&res, "error", "no result");
        p->run(&res);
        write_all(fds[1], &res, sizeof res);
        _exit(0);
    } else if (pid < 0) {
        set(&res, "error", "fork:%s", ename(errno));
        close(fds[0]);
        close(fds[1]);
    } else {
        close(fds[1]);
        while (got < sizeof res && (n = read(fds[0], (char *)&res + got, sizeof res - got)) != 0)
            if (n > 0)
                got += (size_t)n;
            else if (errno != EINTR)
                break;
        close(fds[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (got < sizeof res)
            died(&res, status);
    }
    res.outcome[sizeof res.outcome - 1] = 0;
    res.detail[sizeof res.detail - 1] = 0;
    snprintf(line, sizeof line, "%s\t%s\t%s\n", p->name, res.outcome, res.detail);
    write_all(1, line, strlen(line));
}

/* Descriptors above 2 open now, without opening any (fcntl only asks). */
static void note_open_fds(void)
{
    int fd;
    for (fd = 3; fd < MAX_FDS; fd++)
        if (fcntl(fd, F_GETFD) >= 0)
            snprintf(params.fds_at_start + strlen(params.fds_at_start),
                     sizeof params.fds_at_start - strlen(params.fds_at_start), "%s%d",
                     params.fds_at_start[0] ? "," : "", fd);
}

static int usage(void)
{
    fprintf(stderr, "usage: probe [--marker TEXT] [--block MAJ:MIN] [--device PATH] "
                    "[--key DESC] [--key-id SERIAL] [--host-session SERIAL] "
                    "[--other-cgroup REL] [--caller-stdout DEV:INO] [--list] [NAME...]\n");
    return 2;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *flag;
        const char **value;
    } options[] = {
        {"--marker", &params.marker},         {"--block", &params.block},
        {"--device", &params.device},         {"--key", &params.key},
        {"--key-id", &params.key_id},         {"--host-session", &params.host_session},
        {"--other-cgroup", &params.other_cgroup}, {"--caller-stdout", &params.caller_stdout},
    };
    const char *only[NPROBES];
    size_t nonly = 0, i, j;
    int a;
    note_open_fds();
    for (a = 1; a < argc; a++) {
        int matched = 0;
        if (strcmp(argv[a], "--list") == 0) {
            for (i = 0; i < NPROBES; i++)
                printf("%s\n", probes[i].name);
            return 0;
        }
        for (j = 0; j < sizeof options / sizeof options[0]; j++)
            if (strcmp(argv[a], options[j].flag) == 0) {
                if (++a >= argc)
                    return usage();
                *options[j].value = argv[a];
                matched = 1;
            }
        if (matched)
            continue;
        if (argv[a][0] == '-' || nonly >= NPROBES)
            return usage();
        only[nonly++] = argv[a];
    }
    for (j = 0; j < nonly; j++) {
        for (i = 0; i < NPROBES && strcmp(probes[i].name, only[j]) != 0; i++)
            ;
        if (i == NPROBES) {
            fprintf(stderr, "probe: no probe named %s\n", only[j]);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    for (i = 0; i < NPROBES; i++) {
        int wanted = nonly == 0;
        for (j = 0; j < nonly && !wanted; j++)
            wanted = strcmp(probes[i].name, only[j]) == 0;
        if (wanted)
            run_one(&probes[i]);
    }
    return 0;
}
