/*
 * What the two roles of the native program share (joiner.c: an exec's J and E; init.c: a
 * container's init): the descriptors every start gives it, the process plan, failing on
 * the error pipe, and the end both roles take (E's steps, which init.py's exec_process
 * and nativejoin.py's plan describe).
 */
#ifndef LAMINA_JOINER_H
#define LAMINA_JOINER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FD_ERR 4    /* the error pipe's write end, in both roles */
#define FD_PLAN 6   /* the plan (a memfd), in both roles */

#define NOT_RUNNING "not-running"
#define CANNOT_START 126

/* Python's OSError text, which the Python code's messages carry: "[Errno N] text". */
#define OSERR "[Errno %d] %s"

/* plan.tty: no terminal; or fd 0 is a socket to send the master of a pty made in the
 * container's own devpts (/dev/ptmx), whose slave then becomes 0-2 (an exec's: runc's
 * console socket), and also /dev/console (TTY_BOUND: a container's init). */
enum { TTY_NONE = 0, TTY_CONSOLE = 2, TTY_BOUND = 3 };

/* The process to run: nativejoin.py `plan`'s fields, in its order. */
struct plan {
    long flags;           /* setns flags of the namespaces to join (J only) */
    int remapped;         /* take the container root's ids after the user namespace (J) */
    int ncgroups;         /* cgroup.procs fds to write (J) */
    int done;             /* J's exit code pipe is open (J) */
    int tty;              /* TTY_*: none, stdio is the terminal, or make it (CONSOLE) */
    int rows, cols;       /* the terminal's size, when this program makes it (0: none) */
    uid_t uid;
    gid_t gid;
    int ngroups;
    gid_t *groups;
    uint64_t caps;        /* kept: bounding, effective, permitted */
    int nnp;
    int nrlimits;
    long *rlimits;        /* which, soft, hard (-1: unlimited) each */
    char *cwd;
    char **argv;
    char **envp;
    char *path;           /* the environment's PATH, or Python's os.defpath */
    size_t seccomp_len;
    unsigned char *seccomp;
};

/* "CODE STEP: message" on the error pipe, then exit CODE; NOT_RUNNING's step is a tag. */
void fail(const char *step, int code, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* Reading a plan: NUL-terminated fields from `buf` on (begin), then each in turn; a plan
 * that ends early or holds a bad number fails with `step` (the role's). */
void begin(char *buf, size_t len, const char *step);
char *field(void);
long number(void);
char **strings(long n);
char *load_plan(size_t *len);     /* the whole of FD_PLAN, which is closed then */
void parse_process(struct plan *p);  /* nativejoin.py `plan`, from its version on */

/* Python's os.makedirs(name, mode, exist_ok=True), failing with `step`; the mode is the
 * leaf's, its parents get 0777 (both less the umask), as Python's. */
void makedirs(const char *name, mode_t mode, const char *step);

/* E's steps, then the exec: never returns. */
void execer(const struct plan *p) __attribute__((noreturn));

/* init.c: a container's init, given its plan (adapters/runtime/nativeinit.py). */
void init_main(void) __attribute__((noreturn));

#endif
