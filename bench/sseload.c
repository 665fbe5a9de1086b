/* A lean SSE load client for bench/fanout.py (--client c): one epoll loop, raw sockets.
 *
 *   sseload PORT PATH COUNT CONCURRENCY
 *
 * Opens COUNT connections to 127.0.0.1:PORT (at most CONCURRENCY connecting at once, 3
 * attempts each), sends `GET PATH`, skips the response head and, on every read, timestamps
 * (CLOCK_REALTIME, as Python's time.time()) each new "seq":N seen on that socket.
 * Commands on stdin, one per line; replies on stdout, one line each unless said:
 *   (start)      up PID
 *   go           ready READY FAILED T0 T1
 *   progress     progress SEQ:COUNT ...
 *   collect      arrivals N, then N lines "SEQ T", then lost K
 *   reconnect    every socket closes, all reopen at once with Last-Event-ID: <last seq>;
 *                reconnected READY FAILED T0 T1
 *   close        closed (and exit)
 * Every wait is bounded: connect 10 s, first frame 20 s; the command loop ends on EOF.
 * Build: cc -O2 -o sseload sseload.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { IDLE, CONNECTING, HEAD, LIVE };
#define BUF 4096

typedef struct {
    int fd, state, attempts, started;
    long last;       /* last seq seen on this socket */
    long resume;     /* Last-Event-ID sent, or -1 */
    double since;    /* when the current attempt began */
    int len;
    char buf[BUF];
} Conn;

static Conn *conns;
static int count, concurrency, port, inflight, next_start, ready, failed, lost, ep;
static const char *path;
static long *rec_seq;
static double *rec_t;
static size_t nrec, caprec;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void record(long seq, double t) {
    if (nrec == caprec) {
        caprec = caprec ? caprec * 2 : 65536;
        rec_seq = realloc(rec_seq, caprec * sizeof *rec_seq);
        rec_t = realloc(rec_t, caprec * sizeof *rec_t);
        if (!rec_seq || !rec_t) { perror("realloc"); exit(2); }
    }
    rec_seq[nrec] = seq;
    rec_t[nrec++] = t;
}

static void drop(Conn *c) {
    if (c->fd >= 0) { epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL); close(c->fd); }
    c->fd = -1;
}

static void attempt(Conn *c);

static void give_up_or_retry(Conn *c) {
    drop(c);
    if (c->attempts >= 3) { c->state = IDLE; failed++; inflight--; return; }
    attempt(c);
}

static void attempt(Conn *c) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->attempts++;
    c->since = now();
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) { c->attempts = 3; give_up_or_retry(c); return; }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS)
        give_up_or_retry(c);
}

static void start_more(void) {
    while (inflight < concurrency && next_start < count) {
        Conn *c = &conns[next_start++];
        c->attempts = 0;
        c->started = 0;
        inflight++;
        attempt(c);
    }
}

static void became_ready(Conn *c) {
    c->started = 1;
    ready++;
    inflight--;
}

static void on_writable(Conn *c) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) { give_up_or_retry(c); return; }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\n",
                     path, port);
    if (c->resume >= 0) n += snprintf(req + n, sizeof req - n, "Last-Event-ID: %ld\r\n", c->resume);
    n += snprintf(req + n, sizeof req - n, "\r\n");
    if (write(c->fd, req, n) != n) { give_up_or_retry(c); return; }
    c->state = HEAD;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void scan(Conn *c, double t) {
    /* frames end on a blank line: look only up to the last "\n\n" */
    int end = -1;
    for (int i = c->len - 2; i >= 0; i--)
        if (c->buf[i] == '\n' && c->buf[i + 1] == '\n') { end = i + 2; break; }
    if (end < 0) {
        if (c->len == BUF) c->len = 0; /* a frame larger than the buffer: skip it */
        return;
    }
    if (c->resume >= 0 && !c->started) became_ready(c); /* the opening retry: arrived */
    char *p = c->buf, *stop = c->buf + end;
    while ((p = memmem(p, stop - p, "\"seq\":", 6)) != NULL) {
        p += 6;
        long seq = strtol(p, &p, 10);
        if (seq > c->last) {
            c->last = seq;
            record(seq, t);
            if (!c->started) became_ready(c);
        }
    }
    memmove(c->buf, c->buf + end, c->len - end);
    c->len -= end;
}

static void on_readable(Conn *c) {
    for (int reads = 0; reads < 64; reads++) { /* bounded per wake-up */
        ssize_t n = read(c->fd, c->buf + c->len, BUF - c->len);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            if (c->state == LIVE && c->started) { lost++; drop(c); c->state = IDLE; }
            else give_up_or_retry(c);
            return;
        }
        if (n < 0) return;
        double t = now();
        c->len += n;
        if (c->state == HEAD) {
            char *h = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (!h) { if (c->len == BUF) { give_up_or_retry(c); return; } continue; }
            char *eol = memmem(c->buf, c->len, "\r\n", 2);
            if (!memmem(c->buf, eol - c->buf, " 200 ", 5)) { c->attempts = 3; give_up_or_retry(c); return; }
            int skip = h + 4 - c->buf;
            memmove(c->buf, c->buf + skip, c->len - skip);
            c->len -= skip;
            c->state = LIVE;
        }
        scan(c, t);
    }
}

static void check_timeouts(void) {
    double t = now();
    for (int i = 0; i < next_start; i++) {
        Conn *c = &conns[i];
        if (c->fd < 0 || c->started) continue;
        double limit = c->state == CONNECTING ? 10 : 20;
        if (t - c->since > limit) give_up_or_retry(c);
    }
}

/* run the loop until every started connection is ready or failed */
static void connect_all(void) {
    struct epoll_event evs[512];
    start_more();
    double last_check = now();
    while (ready + failed < count) {
        int n = epoll_wait(ep, evs, 512, 100);
        for (int i = 0; i < n; i++) {
            Conn *c = evs[i].data.ptr;
            if (c == NULL || c->fd < 0) continue; /* stdin: read after this command */
            if (c->state == CONNECTING) on_writable(c);
            else on_readable(c);
        }
        start_more();
        if (now() - last_check > 0.2) { check_timeouts(); last_check = now(); }
    }
}

static void pump_until_command(void) {
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) return; /* stdin has a command */
            Conn *c = evs[i].data.ptr;
            if (c->fd >= 0) on_readable(c);
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: sseload PORT PATH COUNT CONCURRENCY\n"); return 2; }
    port = atoi(argv[1]);
    path = argv[2];
    count = atoi(argv[3]);
    concurrency = atoi(argv[4]);
    conns = calloc(count ? count : 1, sizeof *conns);
    for (int i = 0; i < count; i++) { conns[i].fd = -1; conns[i].last = -1; conns[i].resume = -1; }
    ep = epoll_create1(0);
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &sev);
    setvbuf(stdout, NULL, _IOFBF, 1 << 20);
    printf("up %d\n", getpid());
    fflush(stdout);
    char line[64];
    for (int cmds = 0; cmds < 100000; cmds++) {
        if (!fgets(line, sizeof line, stdin)) break;
        if (!strncmp(line, "go", 2) || !strncmp(line, "reconnect", 9)) {
            int re = line[0] == 'r';
            double t0 = now();
            if (re) {
                for (int i = 0; i < count; i++) {
                    drop(&conns[i]);
                    conns[i].resume = conns[i].last >= 0 ? conns[i].last : 0;
                }
                concurrency = count; /* all at once */
            }
            ready = failed = inflight = next_start = 0;
            connect_all();
            printf("%s %d %d %.6f %.6f\n", re ? "reconnected" : "ready", ready, failed, t0, now());
        } else if (!strncmp(line, "progress", 8)) {
            long seqs[64]; long counts[64]; int k = 0;
            for (size_t i = 0; i < nrec; i++) {
                int j = 0;
                while (j < k && seqs[j] != rec_seq[i]) j++;
                if (j == k) { if (k == 64) continue; seqs[k] = rec_seq[i]; counts[k++] = 0; }
                counts[j]++;
            }
            printf("progress");
            for (int j = 0; j < k; j++) printf(" %ld:%ld", seqs[j], counts[j]);
            printf("\n");
        } else if (!strncmp(line, "collect", 7)) {
            printf("arrivals %zu\n", nrec);
            for (size_t i = 0; i < nrec; i++) printf("%ld %.6f\n", rec_seq[i], rec_t[i]);
            printf("lost %d\n", lost);
        } else if (!strncmp(line, "close", 5)) {
            break;
        }
        fflush(stdout);
        /* between commands: keep reading every socket until the next command */
        pump_until_command();
    }
    for (int i = 0; i < count; i++) drop(&conns[i]);
    printf("closed\n");
    fflush(stdout);
    return 0;
}
