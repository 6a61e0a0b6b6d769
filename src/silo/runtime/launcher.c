/* silo-runtime's launcher: hands a small verb to the warm interpreter (the zygote, see
 * src/silo/runtime/zygote.py), and runs everything else -- and every call the zygote refuses
 * or cannot take -- in a fresh interpreter, exactly as the Python launcher would.
 *
 * Built by scripts/setup with three paths fixed at compile time:
 *   SILO_PYTHON      the venv's interpreter
 *   SILO_PYLAUNCHER  the Python launcher script (sys.path + silo.runtime.main.run)
 *   SILO_ZYGOTE      the zygote's socket
 * SILO_RUNTIME_NO_ZYGOTE=1 in the environment turns the zygote off for one call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Keep in step with VERBS in zygote.py: verbs that start no process the caller must parent. */
static const char *const ZYGOTE_VERBS[] = {
    "start", "state", "kill", "delete", "list", "ps", "pause", "resume", "update", "features",
    NULL};
/* Global flags that take a value as the next argument (runc's and ours). */
static const char *const VALUE_FLAGS[] = {"--root", "--log", "--log-format", "--criu",
                                          "--rootless", NULL};

static int in_list(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0) return 1;
    return 0;
}

static const char *find_verb(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') return a;
        if (strcmp(a, "--") == 0) return i + 1 < argc ? argv[i + 1] : NULL;
        if (!strchr(a, '=') && in_list(a, VALUE_FLAGS)) i++;
    }
    return NULL;
}

static void run_fresh(int argc, char **argv) {
    char **args = calloc((size_t)argc + 3, sizeof(char *));
    if (!args) { perror("silo-runtime"); _exit(1); }
    args[0] = SILO_PYTHON;
    args[1] = "-IS";
    args[2] = SILO_PYLAUNCHER;
    for (int i = 1; i < argc; i++) args[i + 2] = argv[i];
    execv(SILO_PYTHON, args);
    fprintf(stderr, "silo-runtime: cannot run %s: %s\n", SILO_PYTHON, strerror(errno));
    _exit(1);
}

/* Start a zygote, detached from us (its own session, stdio on /dev/null, cwd /). */
static void spawn_zygote(void) {
    pid_t pid = fork();
    if (pid < 0) return;
    if (pid == 0) {
        setsid();
        if (fork() != 0) _exit(0);
        int null = open("/dev/null", O_RDWR);
        if (null < 0) _exit(1);
        dup2(null, 0); dup2(null, 1); dup2(null, 2);
        if (chdir("/") != 0) _exit(1);
        for (int fd = 3; fd < 1024; fd++) close(fd);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        char *args[] = {SILO_PYTHON, "-IS", SILO_PYLAUNCHER, "--zygote-serve", SILO_ZYGOTE, NULL};
        execv(SILO_PYTHON, args);
        _exit(127);
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
}

static volatile pid_t child_pid;

static void forward(int sig) {
    if (child_pid > 0) kill(child_pid, sig);
}

static int append(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t n = strlen(s) + 1;
    if (*len + n > *cap) {
        size_t cap2 = (*cap + n) * 2;
        char *b = realloc(*buf, cap2);
        if (!b) return -1;
        *buf = b; *cap = cap2;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    return 0;
}

/* The exit status of the verb run by the zygote, or -1 when the call must run fresh
 * (nothing has happened yet in that case). */
static int run_in_zygote(int argc, char **argv) {
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0) return -1;     /* closed stdio: not ours to fake */
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, SILO_ZYGOTE, sizeof(addr.sun_path) - 1);
    if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        if (errno == ENOENT || errno == ECONNREFUSED) spawn_zygote();
        close(s);
        return -1;
    }
    char cwd[4096];
    if (!getcwd(cwd, sizeof(cwd))) { close(s); return -1; }
    mode_t um = umask(0);
    umask(um);
    char num[32];
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int bad = append(&buf, &len, &cap, "SILO1") || append(&buf, &len, &cap, cwd);
    snprintf(num, sizeof(num), "%o", (unsigned)um);
    bad = bad || append(&buf, &len, &cap, num);
    snprintf(num, sizeof(num), "%d", argc);
    bad = bad || append(&buf, &len, &cap, num);
    for (int i = 0; i < argc && !bad; i++) bad = append(&buf, &len, &cap, argv[i]);
    int envc = 0;
    for (char **e = environ; *e; e++) envc++;
    snprintf(num, sizeof(num), "%d", envc);
    bad = bad || append(&buf, &len, &cap, num);
    for (char **e = environ; *e && !bad; e++) bad = append(&buf, &len, &cap, *e);
    if (bad || len > (1 << 20)) { free(buf); close(s); return -1; }

    int fds[3] = {0, 1, 2};
    char control[CMSG_SPACE(sizeof(fds))];
    memset(control, 0, sizeof(control));
    struct iovec iov = {.iov_base = buf, .iov_len = len - 1};   /* no trailing NUL */
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = control, .msg_controllen = sizeof(control)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(fds));
    memcpy(CMSG_DATA(cm), fds, sizeof(fds));
    ssize_t sent = sendmsg(s, &msg, MSG_NOSIGNAL);
    free(buf);
    if (sent < 0) { close(s); return -1; }

    int pid = 0;
    ssize_t n;
    while ((n = recv(s, &pid, sizeof(pid), 0)) < 0 && errno == EINTR) {}
    if (n != (ssize_t)sizeof(pid) || pid <= 0) { close(s); return -1; }
    /* From here on the verb is running: its status is ours, whatever happens. */
    child_pid = pid;
    struct sigaction sa = {.sa_handler = forward};
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) sigaction(sigs[i], &sa, NULL);
    int status = 0;
    while ((n = recv(s, &status, sizeof(status), 0)) < 0 && errno == EINTR) {}
    close(s);
    if (n != (ssize_t)sizeof(status)) {
        fprintf(stderr, "silo-runtime: the runtime process %d ended without a status\n", pid);
        return 1;
    }
    return status & 0xff;
}

int main(int argc, char **argv) {
    const char *verb = find_verb(argc, argv);
    const char *off = getenv("SILO_RUNTIME_NO_ZYGOTE");
    if (verb && in_list(verb, ZYGOTE_VERBS) && !(off && *off && strcmp(off, "0") != 0)) {
        int status = run_in_zygote(argc, argv);
        if (status >= 0) return status;
    }
    run_fresh(argc, argv);
    return 1;
}
