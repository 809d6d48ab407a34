/*
 * lamina-join: an exec's J and E (adapters/runtime/exec.py) as a small native program.
 *
 * Why C: J and E were forks of the ~45 MB Python process that runs the command. Each fork
 * copied its page tables and took copy-on-write faults, E ran ~10 ms of Python between its
 * fork and its exec, and the exec then tore the whole image down: about 15 ms of an
 * `exec true` that takes ~45 ms in all. The command now starts this program with
 * posix_spawn (a vfork: nothing copied) and it does what J and E did, in the same order
 * and with the same messages on the error pipe. Every decision stays in Python: the
 * command resolves the user in the container's own files, merges the environment, picks
 * the capabilities and compiles the seccomp filter, and hands this program a plan.
 *
 * Descriptors on entry (posix_spawn puts them there; every other one is close-on-exec):
 *   0-2  the process's stdio (with -t a socket for E to send the terminal it makes)
 *   3    a pidfd of the container's init
 *   4    the error pipe's write end   5  J's exit code pipe (when the plan says so)
 *   6    the plan (a memfd)           7.. the container's cgroup.procs files, opened by
 *                                         the command in the host's mount namespace
 * The plan: NUL-terminated fields (see adapters/runtime/nativejoin.py `plan`).
 *
 * J: no longer dumpable (its /proc files and memory out of a container process's reach,
 * as runc's), setns into the init's namespaces in one call and check each was left, the
 * container root's ids on a remapped root, the cgroup joins, the init still alive, then
 * fork E (only a child enters the PID namespace) and pass its exit status back. Any
 * failure here is "not-running": the container is not running for this exec (but one
 * to read its plan, which names the joiner: a build older than the command's Python).
 * E: a session of its own (the pty as its terminal with -t), then init.exec_process's
 * steps: working directory, rlimits, stdio's owner, keyring, bounding set, user,
 * capabilities, no_new_privs and seccomp (init.become's order), no other descriptor,
 * every signal at its default, and the exec, searched in the plan's PATH as Python's
 * os.execvpe does. Its failures: "CODE step: error" with docker's codes (127, 126).
 *
 * The same program is a container's init when its plan says so (init.c; the plan's first
 * field names the role): the two share the plan's process part and E's steps (joiner.h).
 *
 * Built by `make` (the `joiner` target) into the venv's bin/lamina-join, static: it runs on
 * in the container's mount namespace, where the host's libraries are out of reach.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#include "joiner.h"

#define FD_PIDFD 3
#define FD_DONE 5
#define FD_CGROUPS 7

#define KEYCTL_JOIN_SESSION_KEYRING 1
#define BPF_MAXINSNS_ 4096

/* --- the plan -------------------------------------------------------------------------- */


static char *cursor, *end;
static const char *reading = "joiner";  /* the step a bad plan fails with */

void begin(char *buf, size_t len, const char *step) {
    cursor = buf;
    end = buf + len;
    reading = step;
}

char *field(void) {
    char *s = cursor;
    char *nul = memchr(cursor, '\0', (size_t)(end - cursor));
    if (nul == NULL)
        fail(reading, CANNOT_START, "the plan ends early");
    cursor = nul + 1;
    return s;
}

long number(void) {
    char *s = field(), *after;
    errno = 0;
    long n = strtol(s, &after, 10);
    if (errno || *s == '\0' || *after != '\0')
        fail(reading, CANNOT_START, "not a number in the plan: %.20s", s);
    return n;
}

char **strings(long n) {
    if (n < 0 || n > 1 << 20)
        fail(reading, CANNOT_START, "a bad count in the plan");
    char **v = calloc((size_t)n + 1, sizeof *v);
    if (v == NULL)
        fail(reading, CANNOT_START, "out of memory");
    for (long i = 0; i < n; i++)
        v[i] = field();
    return v;
}

char *load_plan(size_t *len) {
    struct stat st;
    if (fstat(FD_PLAN, &st) < 0 || st.st_size <= 0)
        fail("joiner", CANNOT_START, "no plan");
    char *buf = malloc((size_t)st.st_size);
    if (buf == NULL)
        fail("joiner", CANNOT_START, "out of memory");
    ssize_t got = pread(FD_PLAN, buf, (size_t)st.st_size, 0);
    if (got != st.st_size)
        fail("joiner", CANNOT_START, "the plan could not be read");
    close(FD_PLAN);
    *len = (size_t)st.st_size;
    return buf;
}

void parse_process(struct plan *p) {
    if (strcmp(field(), "lamina-join 2") != 0)
        fail(reading, CANNOT_START, "a plan of another version");
    p->flags = number();
    p->remapped = (int)number();
    p->ncgroups = (int)number();
    p->done = (int)number();
    p->tty = (int)number();
    p->rows = (int)number();
    p->cols = (int)number();
    p->uid = (uid_t)number();
    p->gid = (gid_t)number();
    p->ngroups = (int)number();
    if (p->ngroups < 0 || p->ngroups > 65536)
        fail(reading, CANNOT_START, "a bad count in the plan");
    p->groups = calloc((size_t)p->ngroups + 1, sizeof *p->groups);
    for (int i = 0; i < p->ngroups; i++)
        p->groups[i] = (gid_t)number();
    p->caps = (uint64_t)strtoull(field(), NULL, 10);
    p->nnp = (int)number();
    p->nrlimits = (int)number();
    if (p->nrlimits < 0 || p->nrlimits > 64)
        fail(reading, CANNOT_START, "a bad count in the plan");
    p->rlimits = calloc((size_t)p->nrlimits * 3 + 1, sizeof *p->rlimits);
    for (int i = 0; i < p->nrlimits * 3; i++)
        p->rlimits[i] = number();
    p->cwd = field();
    p->argv = strings(number());
    if (p->argv[0] == NULL)
        fail(reading, CANNOT_START, "no command in the plan");
    p->envp = strings(number());
    p->path = field();
    p->seccomp_len = (size_t)number();
    if (p->seccomp_len > (size_t)(end - cursor))
        fail(reading, CANNOT_START, "the plan ends early");
    p->seccomp = (unsigned char *)cursor;
}

/* --- failing --------------------------------------------------------------------------- */

void fail(const char *step, int code, const char *fmt, ...) {
    char msg[1024];
    int n = snprintf(msg, sizeof msg, strcmp(step, NOT_RUNNING) == 0 ? "%d %s " : "%d %s: ",
                     code, step);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof msg)
        n += vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof msg - 1)
        n = (int)sizeof msg - 1;
    if (n > 0 && write(FD_ERR, msg, (size_t)n) < 0) {
        /* nobody to tell: the exit code says it */
    }
    _exit(code);
}

/* --- J ----------------------------------------------------------------------------------- */

static const struct { const char *name, *joined_as; long flag; } NAMESPACES[] = {
    {"user", "user", CLONE_NEWUSER}, {"mnt", "mnt", CLONE_NEWNS},
    {"uts", "uts", CLONE_NEWUTS}, {"ipc", "ipc", CLONE_NEWIPC},
    {"net", "net", CLONE_NEWNET}, {"pid", "pid_for_children", CLONE_NEWPID},
    {"cgroup", "cgroup", CLONE_NEWCGROUP},
};
#define NNS (sizeof NAMESPACES / sizeof NAMESPACES[0])

static void inodes(int ns_dir, ino_t *out) {
    struct stat st;
    for (size_t i = 0; i < NNS; i++) {
        if (fstatat(ns_dir, NAMESPACES[i].joined_as, &st, 0) < 0)
            fail(NOT_RUNNING, CANNOT_START, "setns: " OSERR, errno, strerror(errno));
        out[i] = st.st_ino;
    }
}

static void join(const struct plan *p) {
    int mine = open("/proc/self/ns", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (mine < 0)
        fail(NOT_RUNNING, CANNOT_START, "setns: " OSERR, errno, strerror(errno));
    ino_t before[NNS], after[NNS];
    inodes(mine, before);
    if (p->flags && setns(FD_PIDFD, (int)p->flags) < 0)
        fail(NOT_RUNNING, CANNOT_START, "setns: " OSERR, errno, strerror(errno));
    inodes(mine, after);
    close(mine);
    for (size_t i = 0; i < NNS; i++)
        if ((p->flags & NAMESPACES[i].flag) && after[i] == before[i])
            fail(NOT_RUNNING, CANNOT_START, "still in our %s namespace after setns",
                 NAMESPACES[i].name);
    if (p->remapped && (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0
                        || setresuid(0, 0, 0) < 0))
        fail(NOT_RUNNING, CANNOT_START, OSERR, errno, strerror(errno));
    for (int i = 0; i < p->ncgroups; i++) {
        if (write(FD_CGROUPS + i, "0", 1) != 1)
            fail(NOT_RUNNING, CANNOT_START, OSERR, errno, strerror(errno));
        close(FD_CGROUPS + i);
    }
    struct pollfd init = {.fd = FD_PIDFD, .events = POLLIN};
    if (poll(&init, 1, 0) != 0)
        fail(NOT_RUNNING, CANNOT_START, "its init exited");
    close(FD_PIDFD);
}

/* --- E ----------------------------------------------------------------------------------- */

static int failed_code(int err) {  /* exec_process: PermissionError 126, else 127 */
    return err == EACCES || err == EPERM ? 126 : 127;
}

/* Python's os.makedirs(name, mode, exist_ok=True), error for error: the parents first
 * (made 0777; one that exists as something else is left to the mkdir below to fail on),
 * then the name itself, whose failure counts only if it is not a directory now. -1 with
 * errno and the path that failed in `failed`. */
static char failed[4096];

static int made(const char *name, mode_t mode, int parent) {
    char head[4096];
    if (snprintf(head, sizeof head, "%s", name) >= (int)sizeof head) {
        snprintf(failed, sizeof failed, "%s", name);
        errno = ENAMETOOLONG;
        return -1;
    }
    size_t n = strlen(head);
    while (n > 1 && head[n - 1] == '/')
        head[--n] = '\0';
    char *cut = strrchr(head, '/');
    if (cut != NULL && cut[1] != '\0') {
        while (cut > head && cut[-1] == '/')
            cut--;
        struct stat st;
        if (cut > head) {
            *cut = '\0';
            if (stat(head, &st) < 0 && made(head, 0777, 1) < 0)
                return -1;
        }
    }
    if (mkdir(name, mode) < 0) {
        int err = errno;
        struct stat st;
        if ((stat(name, &st) == 0 && S_ISDIR(st.st_mode)) || (parent && err == EEXIST))
            return 0;
        snprintf(failed, sizeof failed, "%s", name);
        errno = err;
        return -1;
    }
    return 0;
}

void makedirs(const char *name, mode_t mode, const char *step) {
    if (made(name, mode, 0) < 0) {
        int err = errno;
        fail(step, strcmp(step, "workdir") == 0 ? failed_code(err) : 127, OSERR ": '%s'", err,
             strerror(err), failed);
    }
}

static void workdir(const char *cwd) {
    makedirs(cwd, 0777, "workdir");
    if (chdir(cwd) < 0) {
        int err = errno;
        fail("workdir", failed_code(err), OSERR ": '%s'", err, strerror(err), cwd);
    }
}

static void limits(const struct plan *p) {
    for (int i = 0; i < p->nrlimits; i++) {
        long *r = p->rlimits + 3 * i;
        struct rlimit lim = {r[1] < 0 ? RLIM_INFINITY : (rlim_t)r[1],
                             r[2] < 0 ? RLIM_INFINITY : (rlim_t)r[2]};
        if (setrlimit((int)r[0], &lim) < 0)  /* Python's resource.setrlimit's words */
            fail("rlimits", 127, "%s", errno == EINVAL ? "current limit exceeds maximum limit"
                 : errno == EPERM ? "not allowed to raise maximum limit" : strerror(errno));
    }
}

static int made_for_it(int fd) {  /* init.made_for_it: a pipe or a pty slave */
    struct stat st;
    if (fstat(fd, &st) < 0)
        return 0;
    return S_ISFIFO(st.st_mode) || (S_ISCHR(st.st_mode) && major(st.st_rdev) >= 136
                                    && major(st.st_rdev) < 144);
}

#define SECURITY_FAIL(what) \
    fail("security", failed_code(errno), what OSERR, errno, strerror(errno))

static void seccomp(const struct plan *p) {
    size_t insns = p->seccomp_len / sizeof(struct sock_filter);
    if (p->seccomp_len % sizeof(struct sock_filter) || insns == 0 || insns > BPF_MAXINSNS_)
        fail("security", 127, "seccomp: not a BPF program (%zu bytes)", p->seccomp_len);
    struct sock_filter *filter = malloc(p->seccomp_len);
    if (filter == NULL)
        fail("security", 127, "out of memory");
    memcpy(filter, p->seccomp, p->seccomp_len);  /* aligned, whatever the plan's offset */
    struct sock_fprog prog = {.len = (unsigned short)insns, .filter = filter};
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        fail("security", failed_code(errno), "[Errno %d] installing the seccomp filter: %s",
             errno, strerror(errno));
}

static void become(const struct plan *p) {  /* init.become, runc's order */
    if (p->uid != 0 || p->gid != 0)  /* init.own_stdio */
        for (int fd = 0; fd < 3; fd++)
            if (made_for_it(fd) && fchown(fd, p->uid, p->gid) < 0)
                SECURITY_FAIL("");
    if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0)
        SECURITY_FAIL("keyctl(JOIN_SESSION_KEYRING): ");
    for (int cap = 0; cap < 64; cap++) {  /* the bounding set: up to the kernel's last */
        int has = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (has < 0 && errno == EINVAL)
            break;
        if (has < 0)
            SECURITY_FAIL("");
        if (has && !(p->caps & (1ULL << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            SECURITY_FAIL("");
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        SECURITY_FAIL("");
    if (p->seccomp_len && !p->nnp)
        seccomp(p);
    if (setgroups((size_t)p->ngroups, p->groups) < 0 || setgid(p->gid) < 0
        || setuid(p->uid) < 0)
        SECURITY_FAIL("");
    struct __user_cap_header_struct head = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    if (syscall(SYS_capget, &head, data) < 0)
        SECURITY_FAIL("");
    uint64_t permitted = data[0].permitted | ((uint64_t)data[1].permitted << 32);
    uint64_t kept = p->caps & permitted;
    for (int i = 0; i < 2; i++) {
        data[i].effective = data[i].permitted = (uint32_t)(kept >> (32 * i));
        data[i].inheritable = 0;
    }
    if (syscall(SYS_capset, &head, data) < 0)
        SECURITY_FAIL("");
    if (p->nnp) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            SECURITY_FAIL("");
        if (p->seccomp_len)
            seccomp(p);
    }
}

static void clean_signals(void) {  /* init.clean_signals */
    /* the kernel's sigaction, not glibc's: glibc refuses 32 and 33 (its own), which a
     * caller may have left ignored, and an ignored signal stays ignored across exec */
    struct { void (*handler)(int); unsigned long flags; void *restorer; uint64_t mask; }
        dfl = {SIG_DFL, 0, NULL, 0};
    for (int sig = 1; sig < _NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof dfl.mask);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Python's os.execvpe: a name with a slash as is, else each directory of PATH in turn; the
 * first error that is not "no such file" is the one told, else the last; named by the
 * path that was tried, as Python's OSError names it. */
static __attribute__((noreturn)) void exec_in_path(const struct plan *p) {
    const char *file = p->argv[0];
    char tried[4096], told[4096];
    int err = ENOENT, saved = 0;
    snprintf(told, sizeof told, "%s", file);
    if (strchr(file, '/') != NULL) {
        execve(file, p->argv, p->envp);
        err = errno;
    } else {
        for (const char *dir = p->path;;) {
            const char *colon = strchrnul(dir, ':');
            int len = (int)(colon - dir);
            if (snprintf(tried, sizeof tried, len ? "%.*s/%s" : "%.*s%s", len, dir, file)
                < (int)sizeof tried) {
                execve(tried, p->argv, p->envp);
                if (!saved) {
                    err = errno;
                    memcpy(told, tried, sizeof told);
                    saved = err != ENOENT && err != ENOTDIR;
                }
            }
            if (*colon == '\0')
                break;
            dir = colon + 1;
        }
    }
    if (err == ENOENT)
        fail("exec", 127, "\"%s\": executable file not found in $PATH", file);
    if (err == EACCES || err == EPERM)
        fail("exec", 126, "\"%s\": permission denied", file);
    fail("exec", 127, OSERR ": '%s'", err, strerror(err), told);
}

#define SETUP_FAIL(what) \
    fail("setup", CANNOT_START, what OSERR, errno, strerror(errno))

/* /dev/console: a bind of the container's terminal, as runc's mountConsole makes it. */
static void bind_console(int master) {
    int n;
    char pts[64];
    if (ioctl(master, TIOCGPTN, &n) < 0)
        SETUP_FAIL("the pty's number: ");
    snprintf(pts, sizeof pts, "/dev/pts/%d", n);
    int fd = open("/dev/console", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        SETUP_FAIL("/dev/console: ");
    close(fd);
    if (mount(pts, "/dev/console", NULL, MS_BIND, NULL) < 0)
        SETUP_FAIL("binding /dev/console: ");
}

/* TTY_CONSOLE, TTY_BOUND: a pty from the container's /dev/ptmx (its own devpts: the
 * process sees itself on /dev/pts/N, as under runc), at the plan's size before the
 * process can read it, bound on /dev/console for a container's init (TTY_BOUND); the
 * master goes to whoever relays it over the socket on fd 0, the slave onto 0-2. */
static void console(const struct plan *p) {
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        SETUP_FAIL("/dev/ptmx: ");
    int unlock = 0;
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        SETUP_FAIL("unlocking the pty: ");
    int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
    if (slave < 0)
        SETUP_FAIL("opening the pty's slave: ");
    struct winsize size = {.ws_row = (unsigned short)p->rows, .ws_col = (unsigned short)p->cols};
    if (p->rows > 0 && p->cols > 0 && ioctl(master, TIOCSWINSZ, &size) < 0)
        SETUP_FAIL("sizing the pty: ");
    if (p->tty == TTY_BOUND)
        bind_console(master);
    char byte = 'M';
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union { struct cmsghdr align; char buf[CMSG_SPACE(sizeof(int))]; } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &master, sizeof master);
    if (sendmsg(0, &msg, MSG_NOSIGNAL) != 1)
        SETUP_FAIL("passing the pty on: ");
    close(master);
    for (int fd = 0; fd < 3; fd++)
        if (dup2(slave, fd) < 0)
            SETUP_FAIL("");
    if (slave > 2)
        close(slave);
}

void execer(const struct plan *p) {
    if (p->tty)  /* TTY_CONSOLE or TTY_BOUND: every terminal is made here */
        console(p);
    if (setsid() < 0 || (p->tty && ioctl(0, TIOCSCTTY, 0) < 0))
        fail("setup", CANNOT_START, OSERR, errno, strerror(errno));
    workdir(p->cwd);
    limits(p);
    become(p);
    syscall(SYS_close_range, 3, FD_ERR - 1, 0);
    syscall(SYS_close_range, FD_ERR + 1, ~0U, 0);
    clean_signals();
    exec_in_path(p);
}

int main(void) {
    /* the error pipe goes no further than E's exec, the exit code pipe no further than J */
    if (fcntl(FD_ERR, F_SETFD, FD_CLOEXEC) < 0)
        _exit(CANNOT_START);
    size_t len;
    char *buf = load_plan(&len);
    begin(buf, len, "joiner");
    if (len > 13 && memcmp(buf, "lamina-init 2", 14) == 0)
        init_main();
    prctl(PR_SET_NAME, "lamina-join", 0, 0, 0);  /* started as /proc/self/fd/N: its name */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        fail(NOT_RUNNING, CANNOT_START, "prctl(PR_SET_DUMPABLE): " OSERR, errno,
             strerror(errno));
    struct plan p;
    parse_process(&p);
    if (p.done)
        fcntl(FD_DONE, F_SETFD, FD_CLOEXEC);
    join(&p);
    pid_t child = fork();
    if (child < 0)
        fail(NOT_RUNNING, CANNOT_START, OSERR, errno, strerror(errno));
    if (child == 0) {
        if (p.done)
            close(FD_DONE);
        execer(&p);
    }
    close(FD_ERR);
    int status;
    while (waitpid(child, &status, 0) < 0)
        if (errno != EINTR)
            _exit(CANNOT_START);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (p.done) {
        char said[16];
        int n = snprintf(said, sizeof said, "%d", code);
        if (write(FD_DONE, said, (size_t)n) < 0) {
            /* a watcher gone is no reason not to exit with the code */
        }
    }
    _exit(code);
}
