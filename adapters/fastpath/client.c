/*
 * The `lamina` command as a native program: adapters/fastpath/client.py's protocol, without the
 * ~14 ms a Python interpreter spends starting before it can say anything.
 *
 * Why C: with `lamina serve` up, a command's own work in the fork server's warm child is a
 * few milliseconds (a pause: one freezer write and one fsynced append), so the client's
 * start-up is most of what a user waits for; a pause + unpause pair through the Python
 * client cannot get under ~40 ms here, through this one it takes about half that.
 * Mercurial's chg does the same for hg's command server. This file only forwards: it
 * finds the fork server's socket (<root>/cli.sock), sends the request exactly as
 * adapters.fastpath.client.encode_request does (cwd, umask, argv, environment) with fds 0-2
 * attached, forwards our signals to the command's process, and exits with its code.
 * When none answers and the root has an event log, it starts one as client.py does
 * (start_server: `python -m adapters.cli.served --ready-fd 3`, detached, logging to
 * <root>/serve.log, under <root>/cli.start's flock) and runs this command itself while the
 * server warms up; the next command finds it.
 * Everything else, including running the command when no server serves it, is Python: we
 * exec the interpreter lamina was installed with (LAMINA_PYTHON, fixed at build time).
 *
 * Built by `make` (the `client` target) into the venv's bin/lamina; tests/unit/
 * test_client_contract.py holds both clients to the same requests and behaviour.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef LAMINA_PYTHON
#error "build with -DLAMINA_PYTHON='\"/path/to/venv/bin/python3\"'"
#endif

#define SOCKET_NAME "cli.sock"
#define START_LOCK "cli.start"
#define SERVER_LOG "serve.log"
#define READY_SECONDS 60
#define DEFAULT_ROOT "/var/lib/lamina"
#define MAX_REQUEST (1 << 20)
#define REFUSED 125
#define RUN_HERE 0 /* the server's answer instead of a pid: run the command yourself */

extern char **environ;

/* HUP INT QUIT USR1 USR2 TERM WINCH, as adapters/fastpath/client.py's FORWARDED_SIGNALS. */
static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTERM, SIGWINCH};
#define NFORWARDED (sizeof forwarded / sizeof forwarded[0])

static volatile sig_atomic_t command_pid;   /* the command's process, once known */
static volatile sig_atomic_t pending[NSIG]; /* signals that came before it was */

static void on_signal(int sig) {
    if (command_pid > 0)
        kill(command_pid, sig);
    else
        pending[sig] = 1;
}

static int takes_value(const char *word) {
    return !strcmp(word, "--root") || !strcmp(word, "--log-format") ||
           !strcmp(word, "--log-level");
}

/* The global options without a value (adapters/cmdline.py's GLOBAL_FLAGS). */
static int global_flag(const char *word) {
    return !strcmp(word, "--quiet") || !strcmp(word, "--no-server");
}

/* The command word, skipping the global options before it; NULL for -h and friends. */
static const char *command_name(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *word = argv[i];
        if (takes_value(word))
            i++;
        else if (word[0] != '-')
            return word;
        else if (!global_flag(word) && (strncmp(word, "--", 2) != 0 || !strchr(word, '=')))
            return NULL;
    }
    return NULL;
}

/* --no-server among the global options. */
static int no_server(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *word = argv[i];
        if (!strcmp(word, "--no-server"))
            return 1;
        if (takes_value(word))
            i++;
        else if (word[0] != '-')
            return 0;
    }
    return 0;
}

/* The value of a --root given before the command word. */
static const char *root_option(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *word = argv[i];
        if (!strcmp(word, "--root"))
            return i + 1 < argc ? argv[i + 1] : NULL;
        if (!strncmp(word, "--root=", 7))
            return word + 7;
        if (takes_value(word))
            i++;
        else if (word[0] != '-')
            return NULL;
    }
    return NULL;
}

/* Run the command in this process's place, in Python (adapters.cli), as bin/lamina does
 * when no server answers. -P: the working directory must not shadow lamina's modules. */
static void run_here(int argc, char **argv) {
    char **args = calloc((size_t)argc + 5, sizeof *args);
    if (args == NULL) {
        perror("lamina: error");
        exit(REFUSED);
    }
    args[0] = LAMINA_PYTHON;
    args[1] = "-P";
    args[2] = "-c";
    args[3] = "import sys; sys.argv[0] = sys.argv.pop(1); from adapters.cli import main; main()";
    for (int i = 0; i < argc; i++)
        args[4 + i] = argv[i];
    execv(LAMINA_PYTHON, args);
    fprintf(stderr, "lamina: error: cannot run %s: %s\n", LAMINA_PYTHON, strerror(errno));
    exit(127);
}

/* A growable byte buffer for the request. */
struct buf {
    char *data;
    size_t len, cap;
};

static int put(struct buf *b, const char *bytes, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *data = realloc(b->data, cap);
        if (data == NULL)
            return -1; /* errno is ENOMEM */
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    return 0;
}

/* A field and the NUL that ends it (the last field's NUL is dropped afterwards). */
static int field(struct buf *b, const char *text) {
    return put(b, text, strlen(text) + 1);
}

/* 4-byte big-endian length, then cwd, umask, argc, argv..., K=V... separated by NULs. */
static int encode_request(struct buf *b, int argc, char **argv, const char *cwd) {
    char number[32];
    mode_t mask = umask(0);
    umask(mask);
    if (put(b, "\0\0\0\0", 4) || field(b, cwd))
        return -1;
    snprintf(number, sizeof number, "%u", (unsigned)mask);
    if (field(b, number))
        return -1;
    snprintf(number, sizeof number, "%d", argc - 1);
    if (field(b, number))
        return -1;
    for (int i = 1; i < argc; i++)
        if (field(b, argv[i]))
            return -1;
    for (char **e = environ; *e != NULL; e++) /* as posix.environ: K=V with K not empty */
        if ((*e)[0] != '\0' && strchr(*e + 1, '=') != NULL && field(b, *e))
            return -1;
    size_t size = b->len - 4 - 1; /* no NUL after the last field */
    if (size > MAX_REQUEST) {
        errno = E2BIG;
        return -1;
    }
    b->len--;
    b->data[0] = (char)(size >> 24);
    b->data[1] = (char)(size >> 16);
    b->data[2] = (char)(size >> 8);
    b->data[3] = (char)size;
    return 0;
}

/* The request with fds 0, 1 and 2 attached to its first bytes. */
static int send_request(int sock, const struct buf *b) {
    int fds[3] = {0, 1, 2};
    char control[CMSG_SPACE(sizeof fds)];
    struct iovec iov = {.iov_base = b->data, .iov_len = b->len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(cmsg), fds, sizeof fds);
    ssize_t sent;
    do
        sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    if (sent < 0)
        return -1;
    for (size_t done = (size_t)sent; done < b->len; done += (size_t)sent) {
        do
            sent = send(sock, b->data + done, b->len - done, MSG_NOSIGNAL);
        while (sent < 0 && errno == EINTR);
        if (sent <= 0)
            return -1;
    }
    return 0;
}

/* A signed 4-byte big-endian number; -1 (with *ok = 0) when the server hung up. */
static int recv_int(int sock, int *ok) {
    unsigned char data[4];
    size_t got = 0;
    while (got < sizeof data) {
        ssize_t n = recv(sock, data + got, sizeof data - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            *ok = 0;
            return -1;
        }
        got += (size_t)n;
    }
    *ok = 1;
    return (int)((unsigned)data[0] << 24 | (unsigned)data[1] << 16 | (unsigned)data[2] << 8 |
                 data[3]);
}

/* <root>/<name> as an absolute path in `out`; -1 when it doesn't fit. */
static int root_path(char *out, size_t size, const char *root, const char *name) {
    char cwd[4096];
    const char *sep = "";
    cwd[0] = '\0';
    if (root[0] != '/') {
        if (getcwd(cwd, sizeof cwd) == NULL)
            return -1;
        sep = "/";
    }
    int n = snprintf(out, size, "%s%s%s/%s", cwd, sep, root, name);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Connect to <root>/cli.sock; -1 when nobody serves it (no socket, or a stale one). */
static int connect_server(const char *root) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (root_path(addr.sun_path, sizeof addr.sun_path, root, SOCKET_NAME) < 0)
        return -1; /* too long for a unix socket: no server can have bound it */
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return -1;
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0) {
        close(sock);
        return -1;
    }
    return sock;
}

/* The started server's word on the pipe: "ready" once it listens; EOF or silence for
 * READY_SECONDS, it did not come up (serve.log says why). */
static int server_ready(int fd) {
    char said[64];
    size_t got = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (got < sizeof said) {
        int n = poll(&p, 1, READY_SECONDS * 1000);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        ssize_t r = read(fd, said + got, sizeof said - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    return got >= 5 && !memcmp(said, "ready", 5);
}

/* `python -m adapters.cli.served --root ROOT --ready-fd 3` detached from us, as client.py's
 * _spawn: a session of its own, stdin /dev/null, stdout and stderr appended to
 * <root>/serve.log, no other descriptor of ours, in /; 1 once it listens. */
static int spawn_server(const char *root) {
    char path[4096], absroot[4096];
    if (root_path(path, sizeof path, root, SERVER_LOG) < 0 ||
        root_path(absroot, sizeof absroot, root, "") < 0)
        return 0;
    absroot[strlen(absroot) - 1] = '\0'; /* the '/' before the empty name */
    int log = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log < 0)
        return 0;
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0) {
        close(log);
        return 0;
    }
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        if (fork() != 0)
            _exit(0); /* the server is nobody's child: it can't become our zombie */
        int null = open("/dev/null", O_RDWR);
        if (chdir("/") < 0 || null < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 ||
            dup2(log, 2) < 0 || dup2(ready[1], 3) < 0)
            _exit(127);
        close_range(4, ~0U, 0);
        char *args[] = {LAMINA_PYTHON, "-P", "-m", "adapters.cli.served", "--root", absroot,
                        "--ready-fd", "3", NULL};
        execv(LAMINA_PYTHON, args);
        _exit(127);
    }
    close(ready[1]);
    close(log);
    if (pid < 0) {
        close(ready[0]);
        return 0;
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return server_ready(ready[0]);
}

/* A connection to the root's fork server, or -1: the root has no event log yet, none could
 * be started, or none listened and this call started one (the command then runs here while
 * it warms up: ~0.15 s in a fresh interpreter against ~0.6 s waiting for the server's
 * imports and first spare). Under <root>/cli.start's flock: of two commands that find no
 * server, one starts it and the other finds it. */
static int start_server(const char *root) {
    char path[4096];
    struct stat st;
    if (root_path(path, sizeof path, root, "events.db") < 0 || stat(path, &st) < 0)
        return -1; /* no log yet: the command makes it */
    if (root_path(path, sizeof path, root, START_LOCK) < 0)
        return -1;
    int lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0)
        return -1;
    int sock = -1;
    while (flock(lock, LOCK_EX) < 0)
        if (errno != EINTR)
            goto out;
    sock = connect_server(root);
    if (sock < 0 && !spawn_server(root))
        fprintf(stderr, "lamina: warning: could not start a server for %s (see %s/%s); "
                        "running the command here\n", root, root, SERVER_LOG);
out:
    close(lock);
    return sock;
}

static void forward_signals(void) {
    struct sigaction act = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&act.sa_mask);
    for (size_t i = 0; i < NFORWARDED; i++)
        sigaction(forwarded[i], &act, NULL);
}

/* From now on our signals go to the command; those that came before it follow. */
static void command_started(int pid) {
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    command_pid = pid;
    for (int sig = 1; sig < NSIG; sig++)
        if (pending[sig]) {
            pending[sig] = 0;
            kill(pid, sig);
        }
    sigprocmask(SIG_SETMASK, &old, NULL);
}

/* Run the command in the fork server; returns only when there is none to ask. */
static void via_server(int argc, char **argv) {
    const char *root = root_option(argc, argv);
    if (root == NULL || root[0] == '\0')
        root = getenv("LAMINA_ROOT");
    if (root == NULL || root[0] == '\0')
        root = DEFAULT_ROOT;
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd) == NULL)
        return; /* Python will say what is wrong with the working directory */
    int sock = connect_server(root);
    if (sock < 0)
        sock = start_server(root);
    if (sock < 0)
        return;
    forward_signals();
    struct buf request = {0};
    if (encode_request(&request, argc, argv, cwd)) {
        fprintf(stderr, "lamina: error: cannot send the command to the fork server: %s\n",
                strerror(errno));
        exit(REFUSED);
    }
    /* A connection closed before the pid came (a server going away: its spare took it as
     * it died) ran nothing: hand the command once more, to a server started afresh. */
    int ok = 0, pid = -1;
    if (send_request(sock, &request) == 0)
        pid = recv_int(sock, &ok);
    if (!ok) {
        close(sock);
        sock = start_server(root);
        if (sock >= 0 && send_request(sock, &request) == 0)
            pid = recv_int(sock, &ok);
    }
    if (!ok || pid == RUN_HERE) {
        if (sock >= 0)
            close(sock);
        free(request.data);
        return; /* run here: our signals are reset by the exec; one that came follows */
    }
    if (pid < 0) {
        fputs("lamina: error: the fork server refused the command\n", stderr);
        exit(REFUSED);
    }
    command_started(pid);
    int code = recv_int(sock, &ok);
    if (!ok) {
        fputs("lamina: error: the fork server went away\n", stderr);
        exit(REFUSED);
    }
    _exit(code);
}

int main(int argc, char **argv) {
    const char *local = getenv("LAMINA_NO_SERVER");
    const char *command = command_name(argc, argv);
    if ((local == NULL || local[0] == '\0') && command != NULL && strcmp(command, "serve") &&
        !no_server(argc, argv))
        via_server(argc, argv);
    for (int sig = 1; sig < NSIG; sig++) /* any that came before a RUN_HERE */
        if (pending[sig]) {
            signal(sig, SIG_DFL);
            raise(sig);
        }
    run_here(argc, argv);
    return REFUSED;
}
