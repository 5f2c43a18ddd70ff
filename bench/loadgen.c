/* The benchmark's echo server and load generators, one small C program.
 *
 * Why C: the clients must never be what limits a measurement. A Python ping-pong client tops
 * out well below a direct loopback connection, so its numbers would measure Python, not the
 * tunnel. The same binary serves every setup, so the comparison stays fair. bench/loadgen.py
 * compiles it with gcc at run time and parses what it prints.
 *
 *   loadgen echo HOST PORT                     echo every byte back; hold idle connections;
 *                                              runs until SIGTERM
 *   loadgen pingpong HOST PORT SECONDS WARMUP  1-byte round trips on ONE connection
 *   loadgen connrate HOST PORT SECONDS WARMUP CONCURRENCY
 *                                              connect, send 64 bytes, read the 64-byte echo,
 *                                              close; CONCURRENCY threads in a loop
 *   loadgen idle HOST PORT COUNT               open COUNT connections, check each with a 1-byte
 *                                              echo, print "ready", hold them until stdin ends
 *   loadgen probe HOST PORT TIMEOUT            retry a 64-byte echo until it works or TIMEOUT
 *
 * Measuring modes print one JSON object on stdout. Latencies are reported in microseconds; a sample
 * starts before connect() (connrate) or send() (pingpong) and ends when the whole echo is in.
 * Samples during WARMUP seconds are not counted (pools fill, caches warm, TCP ramps up).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG_BYTES 64
#define IO_BYTES 65536

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static struct sockaddr_in address_of(const char *host, const char *port) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(port));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "loadgen: not an IPv4 address: %s\n", host);
        exit(2);
    }
    return sa;
}

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* connect() a new blocking socket; -1 (errno set) on failure. */
static int dial(const struct sockaddr_in *sa) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    set_nodelay(fd);
    return fd;
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Read exactly len bytes; -1 on error or early end of stream. */
static int read_all(int fd, char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n == 0) {
            errno = ECONNRESET;
            return -1;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One 64-byte round trip on a fresh connection; 0 when the echo came back intact. */
static int echo_once(const struct sockaddr_in *sa) {
    char out[MSG_BYTES], in[MSG_BYTES];
    memset(out, 'x', sizeof out);
    int fd = dial(sa);
    if (fd < 0) return -1;
    int rc = write_all(fd, out, sizeof out) || read_all(fd, in, sizeof in) ? -1 : 0;
    close(fd);
    return rc == 0 && memcmp(out, in, sizeof in) == 0 ? 0 : -1;
}

/* ---- latency samples ---- */

typedef struct {
    uint64_t *ns;
    size_t len, cap;
} samples_t;

static void add_sample(samples_t *s, double seconds) {
    if (s->len == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->ns = realloc(s->ns, s->cap * sizeof *s->ns);
        if (!s->ns) die("realloc");
    }
    s->ns[s->len++] = (uint64_t)(seconds * 1e9 + 0.5);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The q-quantile in microseconds (nearest rank on the sorted samples). */
static double percentile_us(const samples_t *s, double q) {
    if (s->len == 0) return 0;
    size_t i = (size_t)(q * (double)(s->len - 1) + 0.5);
    return (double)s->ns[i] / 1e3;
}

static void print_result(samples_t *s, double seconds, long errors, int concurrency) {
    qsort(s->ns, s->len, sizeof *s->ns, cmp_u64);
    double sum_ns = 0;
    for (size_t i = 0; i < s->len; i++) sum_ns += (double)s->ns[i];
    printf("{\"count\": %zu, \"errors\": %ld, \"seconds\": %.6f, \"concurrency\": %d, "
           "\"rate_per_s\": %.3f, \"latency_us\": {\"mean\": %.3f, \"p50\": %.3f, "
           "\"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"min\": %.3f, \"max\": %.3f}}\n",
           s->len, errors, seconds, concurrency, seconds > 0 ? (double)s->len / seconds : 0.0,
           s->len ? sum_ns / (double)s->len / 1e3 : 0.0, percentile_us(s, 0.5),
           percentile_us(s, 0.9), percentile_us(s, 0.99), percentile_us(s, 0.999),
           percentile_us(s, 0.0), percentile_us(s, 1.0));
}

/* ---- echo server ---- */

typedef struct {
    int fd;
    char *pending; /* bytes the kernel did not take yet; reading pauses until they are out */
    size_t pending_len, pending_off;
} conn_t;

static volatile sig_atomic_t stopping = 0;
static void on_term(int sig) {
    (void)sig;
    stopping = 1;
}

static void conn_close(conn_t *c) {
    close(c->fd);
    free(c->pending);
    free(c);
}

/* Write what is pending; 1 when it is all out, 0 when the kernel is full, -1 on error. */
static int conn_flush(conn_t *c) {
    while (c->pending_off < c->pending_len) {
        ssize_t n = send(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off,
                         MSG_NOSIGNAL);
        if (n < 0) return errno == EAGAIN ? 0 : -1;
        c->pending_off += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    c->pending_len = c->pending_off = 0;
    return 1;
}

static int run_echo(const char *host, const char *port) {
    struct sockaddr_in sa = address_of(host, port);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (lfd < 0) die("socket");
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    static char buf[IO_BYTES];
    struct epoll_event events[256];
    while (!stopping) {
        int n = epoll_wait(ep, events, 256, 200);
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    set_nodelay(fd);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (c->pending) {
                int r = conn_flush(c);
                if (r < 0) {
                    conn_close(c);
                } else if (r > 0) {
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
                }
                continue;
            }
            ssize_t got = recv(c->fd, buf, sizeof buf, 0);
            if (got < 0 && errno == EAGAIN) continue;
            if (got <= 0) {
                conn_close(c);
                continue;
            }
            ssize_t sent = send(c->fd, buf, (size_t)got, MSG_NOSIGNAL);
            if (sent < 0 && errno != EAGAIN) {
                conn_close(c);
                continue;
            }
            if (sent < 0) sent = 0;
            if (sent < got) {
                c->pending_len = (size_t)(got - sent);
                c->pending = malloc(c->pending_len);
                memcpy(c->pending, buf + sent, c->pending_len);
                struct epoll_event cev = {.events = EPOLLOUT, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
            }
        }
    }
    return 0;
}

/* ---- ping-pong ---- */

static int run_pingpong(const char *host, const char *port, double seconds, double warmup) {
    struct sockaddr_in sa = address_of(host, port);
    int fd = dial(&sa);
    if (fd < 0) die("connect");
    samples_t s = {0};
    long errors = 0;
    char byte = 'p';
    double start = now_s(), measured_from = start + warmup, end = measured_from + seconds;
    double t = start;
    while (t < end) {
        double t0 = t;
        if (write_all(fd, &byte, 1) < 0 || read_all(fd, &byte, 1) < 0) {
            errors++;
            break;
        }
        t = now_s();
        if (t0 >= measured_from) add_sample(&s, t - t0);
    }
    close(fd);
    print_result(&s, t - measured_from, errors, 1);
    return errors ? 1 : 0;
}

/* ---- connection rate ---- */

typedef struct {
    struct sockaddr_in sa;
    double measured_from, end;
    samples_t samples;
    long errors;
} worker_t;

static void *connrate_worker(void *arg) {
    worker_t *w = arg;
    char out[MSG_BYTES], in[MSG_BYTES];
    memset(out, 'c', sizeof out);
    for (double t0 = now_s(); t0 < w->end; t0 = now_s()) {
        int fd = dial(&w->sa);
        int ok = fd >= 0 && write_all(fd, out, sizeof out) == 0 &&
                 read_all(fd, in, sizeof in) == 0;
        double t1 = now_s();
        if (fd >= 0) close(fd);
        if (!ok) usleep(1000); /* a refused or reset connection: do not spin */
        if (t0 < w->measured_from) continue;
        if (ok) {
            add_sample(&w->samples, t1 - t0);
        } else {
            w->errors++;
        }
    }
    return NULL;
}

static int run_connrate(const char *host, const char *port, double seconds, double warmup,
                        int concurrency) {
    worker_t *workers = calloc((size_t)concurrency, sizeof *workers);
    pthread_t *threads = calloc((size_t)concurrency, sizeof *threads);
    double start = now_s();
    for (int i = 0; i < concurrency; i++) {
        workers[i].sa = address_of(host, port);
        workers[i].measured_from = start + warmup;
        workers[i].end = start + warmup + seconds;
        pthread_create(&threads[i], NULL, connrate_worker, &workers[i]);
    }
    samples_t all = {0};
    long errors = 0;
    for (int i = 0; i < concurrency; i++) {
        pthread_join(threads[i], NULL);
        for (size_t j = 0; j < workers[i].samples.len; j++) {
            add_sample(&all, (double)workers[i].samples.ns[j] / 1e9);
        }
        errors += workers[i].errors;
    }
    print_result(&all, now_s() - (start + warmup), errors, concurrency);
    return 0;
}

/* ---- idle connections ---- */

static int run_idle(const char *host, const char *port, int count) {
    struct sockaddr_in sa = address_of(host, port);
    int *fds = calloc((size_t)count, sizeof *fds);
    char byte = 'i';
    int opened = 0;
    for (; opened < count; opened++) {
        int fd = dial(&sa);
        if (fd < 0 || write_all(fd, &byte, 1) < 0 || read_all(fd, &byte, 1) < 0) {
            fprintf(stderr, "loadgen: idle connection %d of %d: %s\n", opened + 1, count,
                    strerror(errno));
            if (fd >= 0) close(fd);
            break;
        }
        fds[opened] = fd;
    }
    printf("ready %d\n", opened);
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
    }
    for (int i = 0; i < opened; i++) close(fds[i]);
    return opened == count ? 0 : 1;
}

/* ---- readiness probe ---- */

static int run_probe(const char *host, const char *port, double timeout) {
    struct sockaddr_in sa = address_of(host, port);
    double deadline = now_s() + timeout;
    while (echo_once(&sa) != 0) {
        if (now_s() >= deadline) {
            fprintf(stderr, "loadgen: no echo from %s:%s within %.1f s\n", host, port, timeout);
            return 1;
        }
        usleep(50000);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(mode, "echo") == 0 && argc == 4) return run_echo(argv[2], argv[3]);
    if (strcmp(mode, "pingpong") == 0 && argc == 6)
        return run_pingpong(argv[2], argv[3], atof(argv[4]), atof(argv[5]));
    if (strcmp(mode, "connrate") == 0 && argc == 7)
        return run_connrate(argv[2], argv[3], atof(argv[4]), atof(argv[5]), atoi(argv[6]));
    if (strcmp(mode, "idle") == 0 && argc == 5) return run_idle(argv[2], argv[3], atoi(argv[4]));
    if (strcmp(mode, "probe") == 0 && argc == 5)
        return run_probe(argv[2], argv[3], atof(argv[4]));
    fprintf(stderr, "usage: loadgen echo|pingpong|connrate|idle|probe ARGS (see loadgen.c)\n");
    return 2;
}
