/*
 * lamina-join's other role: a container's init (adapters/runtime/init.py's `run`) as native
 * code, up to its exec.
 *
 * Why: init was a fork of the monitor's Python process. The fork copied its page tables,
 * init then ran ~15 ms of Python (cgroups, namespaces, the root's mounts, the user, the
 * capabilities, seccomp, descriptors, signals) and its exec tore that image down: a third
 * of a `run --rm true`. The monitor now starts this program with posix_spawn (a vfork) as
 * PID 1 of the namespace it made, and every decision stays in Python: the start computes
 * the root's plan (adapters/runtime/nativeinit.py: which mounts, nodes, files, masks, with
 * rootfs.py's own lists), and once the root is built the monitor resolves the user in the
 * container's own files through /proc/PID/root and answers with the process's plan,
 * nativejoin.py's, which the end shared with exec's joiner (joiner.c `execer`) runs.
 *
 * Descriptors on entry (posix_spawn puts them there; every other one is close-on-exec):
 *   0-2  the process's stdio (with -t a socket to send the monitor the terminal it makes)
 *   3    a SOCK_SEQPACKET socket to the monitor (the ask)
 *   4    the error pipe's write end   5  the go pipe (the view is mounted: "g")
 *   6    the plan (a memfd)           7  the network namespace made for it, if any
 *   8..  the container's cgroup.procs files, opened by the monitor
 *
 *   8+n  the detached trees its mounts attach (a volume's subpath, a shared bind), after
 *        the n cgroup.procs files
 *
 * The steps and their names are init.py's (cgroup, view, namespaces, rootfs, user), the
 * root's build is rootfs.py's `build`; a --userns-remap root's init is cloned into its user
 * namespace and execs this from the view (nativeinit.py `_remapped`). Failures: "127 STEP:
 * message" on the error pipe, exit 127, as init.py's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "joiner.h"

#define FD_ASK 3
#define FD_GO 5
#define FD_NETNS 7
#define FD_CGROUPS 8

#define NOSUID_NODEV_NOEXEC (MS_NOSUID | MS_NODEV | MS_NOEXEC)
#define SETUP 127

/* a node of /dev: made (mknod), or on a remapped root a bind of the host's node, a detached
 * tree at fd `tree` (a user namespace may not mknod) */
struct node { char *path, *type; long major, minor, mode, uid, gid, tree; };
struct pair { char *a, *b; };
/* a file bound over the container's (hostname, hosts, resolv.conf): a host path, or a
 * detached tree at fd `tree` (-1: none) */
struct file { char *inside, *host; long tree; };
struct cgmount { char *name, *fstype, *data; };
/* one of -v/--mount/--tmpfs, as rootfs.py's mount_points mounts it: kind "tmpfs", "bind"
 * (a host path) or "tree" (a detached tree at fd `tree`); `flags` the mount's own, then
 * the propagation and the read-only remount made through the view again (0: none) */
struct point { char *target, *kind, *source, *data; int tree, is_dir;
               long flags, propagation, remount; };

/* nativeinit.py `plan`'s fields, in its order */
struct root {
    int ncgroups, go, netns;
    long unshare_flags;
    int set_hostname;
    char *hostname;
    int loopback;
    char *rootfs;           /* "." on a remapped root: the monitor starts init in the view */
    int remapped;
    int privileged;
    char *ipc;              /* "host", "none", or anything else: its own */
    char *shm_data;         /* /dev/shm's tmpfs options */
    int nnodes;
    struct node *nodes;
    int nlinks;
    struct pair *links;     /* /dev's symlinks: name, target */
    int nfiles;
    struct file *files;
    int ncg;
    struct cgmount *cgs;
    int nmasked;
    char **masked;
    int nreadonly;
    char **readonly;
    int read_only;
    int npoints;
    struct point *points;   /* a parent before what is mounted below it */
    long root_propagation;  /* after pivot_root (0: private, as it is) */
};

static const char *step = "start";

#define STEP_FAIL(fmt, ...) fail(step, SETUP, fmt, __VA_ARGS__)

static int count(long most) {
    long n = number();
    if (n < 0 || n > most)
        fail("joiner", CANNOT_START, "a bad count in the plan");
    return (int)n;
}

static void read_root(struct root *r) {
    if (strcmp(field(), "lamina-init 2") != 0)
        fail("joiner", CANNOT_START, "a plan of another version");
    r->ncgroups = count(64);
    r->go = (int)number();
    r->netns = (int)number();
    r->unshare_flags = number();
    r->set_hostname = (int)number();
    r->hostname = field();
    r->loopback = (int)number();
    r->rootfs = field();
    r->remapped = (int)number();
    r->privileged = (int)number();
    r->ipc = field();
    r->shm_data = field();
    r->nnodes = count(1 << 16);
    r->nodes = calloc((size_t)r->nnodes + 1, sizeof *r->nodes);
    for (int i = 0; i < r->nnodes; i++) {
        struct node *n = &r->nodes[i];
        n->path = field();
        n->type = field();
        n->major = number();
        n->minor = number();
        n->mode = number();
        n->uid = number();
        n->gid = number();
        n->tree = number();
    }
    r->nlinks = count(64);
    r->links = calloc((size_t)r->nlinks + 1, sizeof *r->links);
    for (int i = 0; i < r->nlinks; i++) {
        r->links[i].a = field();
        r->links[i].b = field();
    }
    r->nfiles = count(1024);
    r->files = calloc((size_t)r->nfiles + 1, sizeof *r->files);
    for (int i = 0; i < r->nfiles; i++) {
        r->files[i].inside = field();
        r->files[i].host = field();
        r->files[i].tree = number();
    }
    r->ncg = count(64);
    r->cgs = calloc((size_t)r->ncg + 1, sizeof *r->cgs);
    for (int i = 0; i < r->ncg; i++) {
        r->cgs[i].name = field();
        r->cgs[i].fstype = field();
        r->cgs[i].data = field();
    }
    r->nmasked = count(1024);
    r->masked = strings(r->nmasked);
    r->nreadonly = count(1024);
    r->readonly = strings(r->nreadonly);
    r->read_only = (int)number();
    r->npoints = count(1 << 12);
    r->points = calloc((size_t)r->npoints + 1, sizeof *r->points);
    for (int i = 0; i < r->npoints; i++) {
        struct point *m = &r->points[i];
        m->target = field();
        m->kind = field();
        m->source = field();
        m->tree = (int)number();
        m->is_dir = (int)number();
        m->flags = number();
        m->data = field();
        m->propagation = number();
        m->remount = number();
    }
    r->root_propagation = number();
}

/* --- what init.py does before the root ---------------------------------------------------- */

static void join_cgroups(const struct root *r) {
    step = "cgroup";
    for (int i = 0; i < r->ncgroups; i++) {
        if (write(FD_CGROUPS + i, "0", 1) != 1)
            STEP_FAIL(OSERR, errno, strerror(errno));
        close(FD_CGROUPS + i);
    }
}

static void await_view(const struct root *r) {
    if (!r->go)
        return;
    step = "view";
    char word = 0;
    ssize_t got;
    while ((got = read(FD_GO, &word, 1)) < 0 && errno == EINTR) {
    }
    close(FD_GO);
    if (got != 1 || word != 'g')
        STEP_FAIL("%s", "the start was given up before its view was mounted");
}

static void loopback_up(void) {  /* syscalls.loopback_up */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        STEP_FAIL(OSERR, errno, strerror(errno));
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        STEP_FAIL(OSERR, errno, strerror(errno));
    close(s);
}

static void namespaces(const struct root *r) {  /* namespaces.enter */
    step = "namespaces";
    if (r->netns) {
        if (setns(FD_NETNS, CLONE_NEWNET) < 0)
            STEP_FAIL("[Errno %d] setns: %s", errno, strerror(errno));
        close(FD_NETNS);
    }
    if (unshare((int)r->unshare_flags) < 0)
        STEP_FAIL("[Errno %d] unshare: %s", errno, strerror(errno));
    if (r->set_hostname && sethostname(r->hostname, strlen(r->hostname)) < 0)
        STEP_FAIL(OSERR, errno, strerror(errno));
    if (r->loopback)
        loopback_up();
}

/* --- the root: rootfs.py's build ---------------------------------------------------------- */

static void mnt(const char *source, const char *target, const char *fstype,
                unsigned long flags, const char *data) {
    if (mount(source, target, fstype, flags, data) < 0)
        STEP_FAIL("[Errno %d] mount %s: %s", errno, target, strerror(errno));
}

static char *join2(const char *a, const char *b) {
    char *s;
    if (asprintf(&s, "%s%s", a, b) < 0)
        STEP_FAIL("%s", "out of memory");
    return s;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int isdir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int islink(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

static void touch(const char *path) {  /* open(path, "a").close() */
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd < 0)
        STEP_FAIL(OSERR ": '%s'", errno, strerror(errno), path);
    close(fd);
}

static void dirs(const char *path, mode_t mode) {
    makedirs(path, mode, step);
}

static void mount_proc_sys(const struct root *r) {
    char *proc = join2(r->rootfs, "/proc"), *sys = join2(r->rootfs, "/sys");
    dirs(proc, 0755);
    mnt("proc", proc, "proc", NOSUID_NODEV_NOEXEC, NULL);
    dirs(sys, 0755);
    mnt("sysfs", sys, "sysfs", NOSUID_NODEV_NOEXEC | (r->privileged ? 0 : MS_RDONLY), NULL);
}

static void mount_cgroups(const struct root *r) {
    char *target = join2(r->rootfs, "/sys/fs/cgroup");
    unsigned long flags = NOSUID_NODEV_NOEXEC | (r->privileged ? 0 : MS_RDONLY);
    if (r->ncg == 0 || !isdir(target))
        return;
    if (r->ncg == 1 && r->cgs[0].name[0] == '\0') {
        mnt("cgroup2", target, "cgroup2", flags, NULL);
        return;
    }
    mnt("tmpfs", target, "tmpfs", NOSUID_NODEV_NOEXEC, "mode=755");
    for (int i = 0; i < r->ncg; i++) {
        char *where;
        if (asprintf(&where, "%s/%s", target, r->cgs[i].name) < 0)
            STEP_FAIL("%s", "out of memory");
        dirs(where, 0755);
        mnt("cgroup", where, r->cgs[i].fstype, flags, r->cgs[i].data[0] ? r->cgs[i].data : NULL);
    }
    mnt(NULL, target, NULL, MS_REMOUNT | NOSUID_NODEV_NOEXEC | MS_RDONLY, "mode=755");
}

/* rootfs.bind: a host path's bind, or a detached tree attached (move_mount) at `target` */
static void attach(long tree, const char *source, const char *target) {
    if (tree < 0) {
        mnt(source, target, NULL, MS_BIND, NULL);
        return;
    }
    if (syscall(SYS_move_mount, (int)tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        STEP_FAIL("[Errno %d] cannot attach a mount at %s: %s", errno, target,
                  strerror(errno));
    close((int)tree);
}

/* rootfs.bind_nodes: each node a bind of the host's (an empty file made first as the
 * target), on a remapped root */
static void bind_nodes(const char *dev, const struct root *r) {
    for (int i = 0; i < r->nnodes; i++) {
        const struct node *n = &r->nodes[i];
        char *target = join2(dev, n->path + strlen("/dev")), *parent = strdup(target);
        *strrchr(parent, '/') = '\0';
        dirs(parent, 0755);
        int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            STEP_FAIL("cannot bind device node %s: %s", n->path, strerror(errno));
        close(fd);
        if (n->tree < 0)
            STEP_FAIL("cannot bind device node %s: no host node", n->path);
        if (syscall(SYS_move_mount, (int)n->tree, "", AT_FDCWD, target,
                    MOVE_MOUNT_F_EMPTY_PATH) < 0)
            STEP_FAIL("cannot bind device node %s: cannot attach a mount at %s: %s", n->path,
                      target, strerror(errno));
        close((int)n->tree);
    }
}

/* devices.make_nodes: each component opened in its parent with O_NOFOLLOW, so a symlink
 * fails the call instead of being followed; the umask 0 meanwhile. */
static void node_failed(const struct node *n, int err) {
    STEP_FAIL("cannot make device node %s: %s", n->path, strerror(err));
}

static void make_node(int dev_fd, const struct node *n) {
    char *rel = strdup(n->path + strlen("/dev/")), *part = rel, *slash;
    int fd = dup(dev_fd);
    if (fd < 0)
        node_failed(n, errno);
    while ((slash = strchr(part, '/')) != NULL) {
        *slash = '\0';
        if (mkdirat(fd, part, 0755) < 0 && errno != EEXIST)
            node_failed(n, errno);
        int next = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0)
            node_failed(n, errno);
        close(fd);
        fd = next;
        part = slash + 1;
    }
    mode_t kind = n->type[0] == 'c' ? S_IFCHR : S_IFBLK;
    struct stat st;
    if (mknodat(fd, part, kind | (mode_t)n->mode, makedev(n->major, n->minor)) < 0
        || fchownat(fd, part, (uid_t)n->uid, (gid_t)n->gid, AT_SYMLINK_NOFOLLOW) < 0
        || fstatat(fd, part, &st, AT_SYMLINK_NOFOLLOW) < 0)
        node_failed(n, errno);
    if ((long)(st.st_mode & 07777) != n->mode && fchmodat(fd, part, (mode_t)n->mode, 0) < 0)
        node_failed(n, errno);  /* chown may drop set-id bits */
    close(fd);
    free(rel);
}

static void make_nodes(const char *dev, const struct root *r) {
    int dev_fd = open(dev, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dev_fd < 0)
        STEP_FAIL("cannot open %s to make device nodes: %s", dev, strerror(errno));
    mode_t old = umask(0);
    for (int i = 0; i < r->nnodes; i++)
        make_node(dev_fd, &r->nodes[i]);
    umask(old);
    close(dev_fd);
}

static void mount_dev(const struct root *r) {
    char *dev = join2(r->rootfs, "/dev");
    dirs(dev, 0755);
    mnt("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
    if (r->remapped)
        bind_nodes(dev, r);
    else
        make_nodes(dev, r);
    for (int i = 0; i < r->nlinks; i++) {
        char *link;
        if (asprintf(&link, "%s/%s", dev, r->links[i].a) < 0)
            STEP_FAIL("%s", "out of memory");
        if (symlink(r->links[i].b, link) < 0)
            STEP_FAIL(OSERR ": '%s' -> '%s'", errno, strerror(errno), r->links[i].b, link);
    }
    char *pts = join2(dev, "/pts"), *shm = join2(dev, "/shm"), *mq = join2(dev, "/mqueue");
    dirs(pts, 0755);
    mnt("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5");
    dirs(shm, 01777);
    if (strcmp(r->ipc, "host") == 0)
        mnt("/dev/shm", shm, NULL, MS_BIND, NULL);
    else if (strcmp(r->ipc, "none") != 0)
        mnt("shm", shm, "tmpfs", NOSUID_NODEV_NOEXEC, r->shm_data);
    dirs(mq, 0755);
    if (!r->remapped || strcmp(r->ipc, "host") != 0)  /* the host IPC namespace's is not ours */
        mnt("mqueue", mq, "mqueue", NOSUID_NODEV_NOEXEC, NULL);
}

static void bind_files(const struct root *r) {
    for (int i = 0; i < r->nfiles; i++) {
        char *target = join2(r->rootfs, r->files[i].inside), *parent = strdup(target);
        char *cut = strrchr(parent, '/');
        if (cut != NULL)
            *(cut == parent ? cut + 1 : cut) = '\0';
        dirs(parent, 0755);
        if (!exists(target) || islink(target)) {
            if (islink(target) && unlink(target) < 0)
                STEP_FAIL(OSERR ": '%s'", errno, strerror(errno), target);
            touch(target);
        }
        attach(r->files[i].tree, r->files[i].host, target);
    }
}

/* --- the container's mounts: rootfs.py's mount_points, inroot.py's walk ------------------- */

#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_IN_ROOT 0x10
#define MAXSYMLINKS 40
#define MAX_STEPS (1 << 16)

struct how { uint64_t flags, mode, resolve; };

/* inroot.open_in_root: `path` resolved inside root_fd (absolute links restart there, ".."
 * stops there, magic links refused); EINTR and EAGAIN retried. -1 with errno. */
static int in_root(int root_fd, const char *path, int flags) {
    struct how how = {(uint64_t)(flags | O_CLOEXEC), 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    for (int i = 0; i < 64; i++) {
        long fd = syscall(SYS_openat2, root_fd, path[0] ? path : ".", &how, sizeof how);
        if (fd >= 0)
            return (int)fd;
        if (errno != EINTR && errno != EAGAIN)
            return -1;
    }
    return -1;
}

/* a stack of path components: `todo` is popped from its end */
struct parts { char **v; int n, cap; };

static void push(struct parts *p, char *part) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        p->v = realloc(p->v, (size_t)p->cap * sizeof *p->v);
        if (p->v == NULL)
            STEP_FAIL("%s", "out of memory");
    }
    p->v[p->n++] = part;
}

static void push_reversed(struct parts *todo, const char *path) {  /* _components[::-1] */
    struct parts in = {0};
    char *copy = strdup(path), *save = NULL;
    for (char *part = strtok_r(copy, "/", &save); part; part = strtok_r(NULL, "/", &save))
        if (strcmp(part, ".") != 0)
            push(&in, part);
    for (int i = in.n - 1; i >= 0; i--)
        push(todo, in.v[i]);
    free(in.v);
}

static char *joined(const struct parts *done, int upto) {  /* _join: "/" + "/".join */
    size_t len = 2;
    for (int i = 0; i < upto; i++)
        len += strlen(done->v[i]) + 1;
    char *s = malloc(len), *at = s;
    *at++ = '/';
    for (int i = 0; i < upto; i++)
        at += sprintf(at, i ? "/%s" : "%s", done->v[i]);
    *at = '\0';
    return s;
}

#define IN_ROOT_FAIL(err, path) STEP_FAIL(OSERR ": '%s'", err, strerror(err), path)

/* inroot.mkdirs_in_root: the directory at `path` inside root, its missing components made
 * (0755 less the umask) in their parents opened in root, symlinks on the way followed
 * inside root (a dangling one gets its target made); an O_RDONLY|O_DIRECTORY fd. */
static int mkdirs_in_root(int root_fd, const char *path) {
    struct parts todo = {0}, done = {0};
    push_reversed(&todo, path);
    int links = 0, steps = 0;
    while (todo.n) {
        char *part = todo.v[--todo.n];
        if (strcmp(part, "..") == 0) {
            if (done.n)
                done.n--;
            continue;
        }
        if (++steps > MAX_STEPS)
            STEP_FAIL("[Errno %d] path keeps changing while being resolved: '%s'", ELOOP, path);
        char *where = joined(&done, done.n);
        int parent = in_root(root_fd, where, O_PATH | O_DIRECTORY);
        if (parent < 0)
            IN_ROOT_FAIL(errno, where);
        char target[4096];
        ssize_t n = readlinkat(parent, part, target, sizeof target - 1);
        int err = errno;
        if (n < 0 && err == ENOENT && mkdirat(parent, part, 0755) < 0 && errno != EEXIST)
            IN_ROOT_FAIL(errno, part);  /* os.mkdir's words: the name in its parent */
        close(parent);
        if (n < 0) {
            if (err == ENOENT) {  /* made now (or meanwhile): look again */
                push(&todo, part);
                continue;
            }
            push(&done, part);
            if (err == EINVAL)  /* there, and not a symlink */
                continue;
            IN_ROOT_FAIL(err, joined(&done, done.n));
        }
        target[n] = '\0';
        if (++links > MAXSYMLINKS)
            STEP_FAIL(OSERR ": '%s'", ELOOP, strerror(ELOOP), path);
        if (target[0] == '/')
            done.n = 0;
        push_reversed(&todo, strdup(target));
    }
    char *found = joined(&done, done.n);
    int fd = in_root(root_fd, found, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        IN_ROOT_FAIL(errno, found);
    return fd;
}

/* syscalls.mount_target: an O_PATH fd of `path` inside the view, its missing directories
 * made there and, for a file's bind, an empty file as its target */
static int mount_target(const char *rootfs, const char *path, int is_dir) {
    int root_fd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0)
        STEP_FAIL(OSERR ": '%s'", errno, strerror(errno), rootfs);
    if (is_dir) {
        close(mkdirs_in_root(root_fd, path));
    } else {
        char *parent = strdup(path), *cut = strrchr(parent, '/');
        const char *name = cut ? cut + 1 : path;
        if (cut)
            *cut = '\0';
        int dir = mkdirs_in_root(root_fd, parent);
        int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST)
            STEP_FAIL(OSERR ": '%s'", errno, strerror(errno), name);
        if (fd >= 0)
            close(fd);
        close(dir);
    }
    int fd = in_root(root_fd, path, O_PATH);
    if (fd < 0)
        IN_ROOT_FAIL(errno, path);
    close(root_fd);
    return fd;
}

static void mount_points(const struct root *r) {
    char where[64];
    for (int i = 0; i < r->npoints; i++) {
        const struct point *m = &r->points[i];
        int fd = mount_target(r->rootfs, m->target, m->is_dir);
        snprintf(where, sizeof where, "/proc/self/fd/%d", fd);
        if (strcmp(m->kind, "tree") == 0) {  /* made read-only where it was cloned */
            if (syscall(SYS_move_mount, m->tree, "", fd, "",
                        MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
                STEP_FAIL("[Errno %d] cannot attach a mount at %d: %s", errno, fd,
                          strerror(errno));
            close(m->tree);
        } else {
            mnt(strcmp(m->kind, "tmpfs") == 0 ? "tmpfs" : m->source, where,
                strcmp(m->kind, "tmpfs") == 0 ? "tmpfs" : NULL, (unsigned long)m->flags,
                m->data[0] ? m->data : NULL);
        }
        close(fd);
        if (!m->propagation && !m->remount)
            continue;
        fd = mount_target(r->rootfs, m->target, m->is_dir);  /* now the new mount's root */
        snprintf(where, sizeof where, "/proc/self/fd/%d", fd);
        if (m->propagation)
            mnt(NULL, where, NULL, (unsigned long)m->propagation, NULL);
        if (m->remount)
            mnt(NULL, where, NULL, (unsigned long)m->remount, NULL);
        close(fd);
    }
}

static void mask(const char *rootfs, const char *full) {
    if (isdir(full) && !islink(full))
        mnt("tmpfs", full, "tmpfs", MS_RDONLY, NULL);
    else if (exists(full))
        mnt(join2(rootfs, "/dev/null"), full, NULL, MS_BIND, NULL);
}

static void mask_paths(const struct root *r) {  /* only the fresh /proc and /sys */
    for (int i = 0; i < r->nmasked; i++) {
        char *full = join2(r->rootfs, r->masked[i]);
        glob_t found;
        if (glob(full, 0, NULL, &found) == 0) {
            for (size_t k = 0; k < found.gl_pathc; k++)
                mask(r->rootfs, found.gl_pathv[k]);
            globfree(&found);
        } else {
            mask(r->rootfs, full);
        }
    }
}

static void readonly_paths(const struct root *r) {
    for (int i = 0; i < r->nreadonly; i++) {
        char *full = join2(r->rootfs, r->readonly[i]);
        if (!exists(full))
            continue;
        mnt(full, full, NULL, MS_BIND | MS_REC, NULL);
        mnt(NULL, full, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | NOSUID_NODEV_NOEXEC, NULL);
    }
}

static void pivot(const char *rootfs) {  /* runc's pivot_root(".", ".") */
    if (chdir(rootfs) < 0)
        STEP_FAIL(OSERR ": '%s'", errno, strerror(errno), rootfs);
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        STEP_FAIL("[Errno %d] pivot_root .: %s", errno, strerror(errno));
    if (umount2(".", MNT_DETACH) < 0)
        STEP_FAIL("[Errno %d] umount .: %s", errno, strerror(errno));
    if (chdir("/") < 0)
        STEP_FAIL(OSERR ": '/'", errno, strerror(errno));
}

/* rootfs.enter_bind_of_cwd: a remapped init's view (its cwd) bound onto itself by a
 * detached clone, and entered through it: a mount copied into a namespace of a less
 * privileged user namespace is locked, and pivot_root refuses it */
static void enter_bind_of_cwd(void) {
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, ".", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (fd < 0)
        STEP_FAIL("[Errno %d] cannot clone .: %s", errno, strerror(errno));
    if (syscall(SYS_move_mount, fd, "", AT_FDCWD, ".", MOVE_MOUNT_F_EMPTY_PATH) < 0)
        STEP_FAIL("[Errno %d] cannot attach a mount at .: %s", errno, strerror(errno));
    if (fchdir(fd) < 0)
        STEP_FAIL(OSERR, errno, strerror(errno));
    close(fd);
}

static void build(const struct root *r) {
    step = "rootfs";
    mnt(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);  /* before anything: nothing leaks out */
    if (r->remapped)
        enter_bind_of_cwd();
    else  /* pivot_root needs a mount */
        mnt(r->rootfs, r->rootfs, NULL, MS_BIND | MS_REC, NULL);
    mount_proc_sys(r);
    mount_cgroups(r);
    mount_dev(r);
    bind_files(r);
    mount_points(r);
    if (r->nmasked || r->nreadonly) {
        mask_paths(r);
        readonly_paths(r);
    }
    if (r->read_only)
        mnt(NULL, r->rootfs, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
    pivot(r->rootfs);
    if (r->root_propagation)  /* after pivot_root, which refuses a shared root */
        mnt(NULL, "/", NULL, (unsigned long)r->root_propagation, NULL);
}

/* --- the user, then the process ------------------------------------------------------------ */

/* Ask the monitor for the process's plan: it resolves the user in the files this root now
 * shows (/proc/PID/root) and answers "P" and nativejoin.py's plan, or "F" and the failure
 * as it goes on the error pipe ("CODE step: message"). */
static void ask(struct plan *p) {
    step = "user";
    if (send(FD_ASK, "?", 1, MSG_NOSIGNAL) != 1)
        STEP_FAIL(OSERR, errno, strerror(errno));
    ssize_t size;
    while ((size = recv(FD_ASK, NULL, 0, MSG_PEEK | MSG_TRUNC)) < 0 && errno == EINTR) {
    }
    if (size <= 0)
        STEP_FAIL("%s", "the monitor did not answer");
    char *buf = malloc((size_t)size);
    if (buf == NULL || recv(FD_ASK, buf, (size_t)size, 0) != size)
        STEP_FAIL("%s", "the monitor's answer could not be read");
    close(FD_ASK);
    if (buf[0] == 'F') {  /* said as it is, then its code */
        int code = atoi(buf + 1);
        if (write(FD_ERR, buf + 1, (size_t)size - 1) < 0) {
            /* the exit code says it */
        }
        _exit(code > 0 && code < 256 ? code : SETUP);
    }
    if (buf[0] != 'P')
        STEP_FAIL("%s", "the monitor's answer is not a plan");
    begin(buf + 1, (size_t)size - 1, "user");
    parse_process(p);
}

void init_main(void) {
    prctl(PR_SET_NAME, "lamina-init", 0, 0, 0);  /* started as /proc/self/fd/N: its name */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)  /* until its exec, as runc's init */
        STEP_FAIL("prctl(PR_SET_DUMPABLE): " OSERR, errno, strerror(errno));
    struct root r;
    read_root(&r);
    join_cgroups(&r);
    await_view(&r);
    namespaces(&r);
    build(&r);
    struct plan p;
    ask(&p);
    execer(&p);
}
