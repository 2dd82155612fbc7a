/*
 * Load generator for bench/fanout.py: N TLS clients on one epoll loop.
 *
 * Compiled C so that it is not the bottleneck: a Python client spends more
 * CPU per received line than the servers under test spend per delivery.
 *
 *   loadgen --port P --ca FILE --proto chat|irc --clients N --senders S
 *           (--window W | --rate R | --idle) --duration SECONDS [--password PW]
 *
 * It connects all clients and waits until each one is in the room (chat:
 * the welcome line, then it sends "/pong" as its first line and answers
 * pings; irc: the end of the channel's NAMES), prints
 * "ready connect_s=...", then waits for a line on stdin. With --idle it
 * just holds the clients (answering PINGs) until stdin closes or says
 * anything. Otherwise the first S clients send 100-byte messages for
 * --duration seconds, closed loop (each keeps W messages in flight until
 * every other client got them) or at R messages/s in total; it prints
 * "stop" when sending ends, drains for up to 5 s, and prints one "result"
 * line of key=value pairs.
 *
 * A payload is "B<sender>.<seq>.<send time ns>" padded with "x" to 100
 * bytes. Every delivery to a client other than the sender is checked:
 * duplicates and reorderings per (receiver, sender) pair, losses at the end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD 100
#define INBUF 65536
#define HIST_US 10            /* histogram bucket width, microseconds */
#define HIST_N 1000000        /* 10 s of buckets */
#define MAX_HANDSHAKES 64     /* connections being set up at once */
#define SETUP_TIMEOUT_S 300
#define MAX_RETRIES 1000

enum { PROTO_CHAT, PROTO_IRC };
enum { ST_CONNECTING, ST_HANDSHAKE, ST_LOGIN, ST_READY };

typedef struct {
    int fd;
    SSL *ssl;
    int state;
    char *in;
    size_t in_len;
    char *out;
    size_t out_len, out_cap;
    int pollout;
} client_t;

typedef struct {
    uint8_t *seen;       /* bitmap of sequence numbers received */
    uint32_t cap_bits;
    int64_t max_seq;
    uint64_t distinct;
} pair_t;

static int proto = PROTO_CHAT, nclients = 10, nsenders = 1, window = 0, idle = 0;
static double rate = 0, duration = 5;
static int port = 0;
static const char *ca = NULL, *password = "bench";
static client_t *clients;
static int epfd;
static SSL_CTX *ctx;
static pair_t *pairs;           /* nclients * nsenders */
static uint64_t *sent;          /* per sender */
static uint32_t *remaining;     /* per sender * window: receivers still due */
static int *inflight;
static uint32_t *hist;
static uint64_t deliveries, latency_samples, echoes, dups, reorders, overflow_lat;
/* Successful SSL_reads while sending: about one a TLS record (one server write). */
static uint64_t reads;
static int64_t max_lat_ns;
static int64_t t_start, t_stop;
static int sending;
static int nready, nstarted, retries;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    ERR_print_errors_fp(stderr);
    exit(2);
}

static void want_out(client_t *c, int on) {
    if (c->pollout == on) return;
    c->pollout = on;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write what we can of c->out; keep the rest for EPOLLOUT. */
static void flush_out(client_t *c) {
    size_t done = 0;
    while (done < c->out_len) {
        int n = SSL_write(c->ssl, c->out + done, (int)(c->out_len - done));
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
            fprintf(stderr, "loadgen: client %ld: write failed\n", (long)(c - clients));
            exit(3);
        }
        done += (size_t)n;
    }
    memmove(c->out, c->out + done, c->out_len - done);
    c->out_len -= done;
    want_out(c, c->out_len > 0);
}

static void queue(client_t *c, const char *data, size_t len) {
    if (c->out_len + len > c->out_cap) {
        c->out_cap = (c->out_len + len) * 2;
        c->out = realloc(c->out, c->out_cap);
        if (!c->out) die("realloc");
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
}

static void send_message(int s) {
    client_t *c = &clients[s];
    char line[PAYLOAD + 64];
    int64_t t = now_ns();
    int n;
    if (proto == PROTO_IRC)
        n = snprintf(line, sizeof line, "PRIVMSG #bench :");
    else
        n = 0;
    int start = n;
    n += snprintf(line + n, sizeof line - n, "B%d.%llu.%lld", s, (unsigned long long)sent[s], (long long)t);
    while (n - start < PAYLOAD) line[n++] = 'x';
    line[n++] = '\r';
    line[n++] = '\n';
    if (window) {
        remaining[(size_t)s * window + sent[s] % window] = nclients - 1;
        inflight[s]++;
    }
    sent[s]++;
    queue(c, line, (size_t)n);
    flush_out(c);
}

static void pair_mark(pair_t *p, uint64_t seq) {
    if (seq >= p->cap_bits) {
        uint32_t cap = p->cap_bits ? p->cap_bits : 1024;
        while (cap <= seq) cap *= 2;
        p->seen = realloc(p->seen, cap / 8);
        if (!p->seen) die("realloc");
        memset(p->seen + p->cap_bits / 8, 0, (cap - p->cap_bits) / 8);
        p->cap_bits = cap;
    }
    if (p->seen[seq / 8] & (1u << (seq % 8))) {
        dups++;
        return;
    }
    p->seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
    p->distinct++;
    if ((int64_t)seq < p->max_seq) reorders++;
    else p->max_seq = (int64_t)seq;
}

static void on_payload(int r, const char *p, int64_t t_recv) {
    if (*p != 'B') return;
    char *end;
    long s = strtol(p + 1, &end, 10);
    if (*end != '.' || s < 0 || s >= nsenders) return;
    unsigned long long seq = strtoull(end + 1, &end, 10);
    if (*end != '.') return;
    long long t_send = strtoll(end + 1, &end, 10);
    if (r == s) {
        echoes++;
        return;
    }
    deliveries++;
    pair_mark(&pairs[(size_t)r * nsenders + s], seq);
    if (t_send >= t_start && t_send < t_stop) {
        latency_samples++;
        int64_t lat = t_recv - t_send;
        if (lat > max_lat_ns) max_lat_ns = lat;
        int64_t b = lat / (HIST_US * 1000);
        if (b >= HIST_N) overflow_lat++;
        else hist[b]++;
    }
    if (window) {
        uint32_t *left = &remaining[(size_t)s * window + seq % window];
        if (*left && --*left == 0) {
            inflight[s]--;
            if (sending) send_message((int)s);
        }
    }
}

static void become_ready(client_t *c) {
    if (c->state != ST_READY) {
        c->state = ST_READY;
        nready++;
    }
}

static void on_line(client_t *c, char *line, size_t len, int64_t t_recv) {
    int r = (int)(c - clients);
    line[len] = 0;
    if (len && line[len - 1] == '\r') line[--len] = 0;
    if (proto == PROTO_CHAT) {
        /* <timestamp> <kind> <source> [args] :<text> */
        char *kind = strchr(line, ' ');
        if (!kind) return;
        kind++;
        if (strncmp(kind, "message ", 8) == 0) {
            char *text = strstr(kind, " :");
            if (text) on_payload(r, text + 2, t_recv);
        } else if (strncmp(kind, "welcome ", 8) == 0) {
            /* A first line, as a real client sends, for the first-line timeout. */
            queue(c, "/pong\n", 6);
            flush_out(c);
            become_ready(c);
        } else if (strncmp(kind, "ping * ", 7) == 0) {
            char pong[300], *token = kind + 7, *end = strchr(token, ' ');
            if (!end || end - token > 200) return;
            int n = snprintf(pong, sizeof pong, "/pong %.*s\n", (int)(end - token), token);
            queue(c, pong, (size_t)n);
            flush_out(c);
        }
        return;
    }
    if (strncmp(line, "PING", 4) == 0) {
        char pong[600];
        int n = snprintf(pong, sizeof pong, "PONG%s\r\n", line + 4);
        queue(c, pong, (size_t)n);
        flush_out(c);
        return;
    }
    if (line[0] != ':') return;
    char *cmd = strchr(line, ' ');
    if (!cmd) return;
    cmd++;
    if (strncmp(cmd, "PRIVMSG ", 8) == 0) {
        char *text = strstr(cmd, " :");
        if (text) on_payload(r, text + 2, t_recv);
    } else if (strncmp(cmd, "001 ", 4) == 0) {
        const char *join = "JOIN #bench\r\n";
        queue(c, join, strlen(join));
        flush_out(c);
    } else if (strncmp(cmd, "366 ", 4) == 0) {
        become_ready(c);
    } else if (strncmp(cmd, "ERROR", 5) == 0 || strncmp(cmd, "464 ", 4) == 0 || strncmp(cmd, "433 ", 4) == 0) {
        fprintf(stderr, "loadgen: client %d: %s\n", r, line);
        exit(3);
    }
}

static void start_login(client_t *c) {
    c->state = ST_LOGIN;
    if (proto == PROTO_IRC) {
        char hello[256];
        int i = (int)(c - clients);
        int n = snprintf(hello, sizeof hello, "PASS %s\r\nNICK c%d\r\nUSER c%d 0 * :bench client\r\n", password, i, i);
        queue(c, hello, (size_t)n);
    }
    flush_out(c);
}

static void lost(client_t *c) {
    fprintf(stderr, "loadgen: client %ld: connection lost (state %d)\n", (long)(c - clients), c->state);
    exit(3);
}

static void on_readable(client_t *c) {
    for (;;) {
        int n = SSL_read(c->ssl, c->in + c->in_len, (int)(INBUF - 1 - c->in_len));
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
            lost(c);
        }
        int64_t t = now_ns();
        if (sending) reads++;
        c->in_len += (size_t)n;
        char *start = c->in, *nl;
        char *end = c->in + c->in_len;
        while ((nl = memchr(start, '\n', (size_t)(end - start)))) {
            on_line(c, start, (size_t)(nl - start), t);
            start = nl + 1;
        }
        c->in_len = (size_t)(end - start);
        if (c->in_len == INBUF - 1) {
            fprintf(stderr, "loadgen: client %ld: line too long\n", (long)(c - clients));
            exit(3);
        }
        memmove(c->in, start, c->in_len);
    }
}

static void open_client(client_t *c);

/* A server too busy to accept lets the kernel drop connections from a full
 * listen queue (ngircd's is short): connect that client again, a bounded
 * number of times, and report how often. */
static void reconnect(client_t *c, const char *what) {
    if (++retries > MAX_RETRIES) die(what);
    SSL_free(c->ssl);
    close(c->fd);
    free(c->in);
    ERR_clear_error();
    open_client(c);
}

static void drive(client_t *c) {
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            errno = err;
            reconnect(c, "connect");
            return;
        }
        c->state = ST_HANDSHAKE;
    }
    if (c->state == ST_HANDSHAKE) {
        int n = SSL_connect(c->ssl);
        if (n != 1) {
            int e = SSL_get_error(c->ssl, n);
            if (e == SSL_ERROR_WANT_READ) want_out(c, 0);
            else if (e == SSL_ERROR_WANT_WRITE) want_out(c, 1);
            else if (e == SSL_ERROR_SYSCALL && (errno == ECONNRESET || errno == 0)) reconnect(c, "TLS handshake");
            else die("TLS handshake");
            return;
        }
        want_out(c, 0);
        start_login(c);
    }
    if (c->out_len) flush_out(c);
    on_readable(c);
}

static void open_client(client_t *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) die("connect");
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    SSL_set1_host(c->ssl, "localhost");
    c->in = malloc(INBUF);
    c->state = ST_CONNECTING;
    c->pollout = 1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
}

static void start_connect(int i) {
    open_client(&clients[i]);
    nstarted++;
}

static void poll_once(int timeout_ms) {
    struct epoll_event evs[256];
    int n = epoll_wait(epfd, evs, 256, timeout_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
        client_t *c = evs[i].data.ptr;
        if (c->state == ST_READY || c->state == ST_LOGIN) {
            if (evs[i].events & EPOLLOUT) flush_out(c);
            on_readable(c);
            if (evs[i].events & (EPOLLERR | EPOLLHUP) && c->state == ST_READY) lost(c);
        } else {
            drive(c);
        }
    }
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int stdin_has_line(void) {
    struct pollfd p = {.fd = 0, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

static double percentile(double q) {
    uint64_t total = latency_samples, want = (uint64_t)(q * (double)total), acc = 0;
    if (!total) return 0;
    for (int i = 0; i < HIST_N; i++) {
        acc += hist[i];
        if (acc > want) return (i + 0.5) * HIST_US / 1000.0;
    }
    return max_lat_ns / 1e6;
}

static void usage(void) {
    fprintf(stderr, "usage: loadgen --port P --ca FILE [--proto chat|irc] [--clients N] [--senders S]"
                    " (--window W | --rate R | --idle) [--duration S] [--password PW]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--idle")) { idle = 1; continue; }
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--ca")) ca = v;
        else if (!strcmp(a, "--proto")) proto = !strcmp(v, "irc") ? PROTO_IRC : PROTO_CHAT;
        else if (!strcmp(a, "--clients")) nclients = atoi(v);
        else if (!strcmp(a, "--senders")) nsenders = atoi(v);
        else if (!strcmp(a, "--window")) window = atoi(v);
        else if (!strcmp(a, "--rate")) rate = atof(v);
        else if (!strcmp(a, "--duration")) duration = atof(v);
        else if (!strcmp(a, "--password")) password = v;
        else usage();
    }
    if (!port || !ca || nclients < 2 || nsenders < 1 || nsenders > nclients) usage();
    if (!idle && !window && rate <= 0) usage();

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) die("CA file");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    epfd = epoll_create1(0);
    clients = calloc((size_t)nclients, sizeof *clients);
    pairs = calloc((size_t)nclients * nsenders, sizeof *pairs);
    sent = calloc((size_t)nsenders, sizeof *sent);
    inflight = calloc((size_t)nsenders, sizeof *inflight);
    remaining = calloc((size_t)nsenders * (window ? window : 1), sizeof *remaining);
    hist = calloc(HIST_N, sizeof *hist);
    if (!clients || !pairs || !sent || !inflight || !remaining || !hist) die("calloc");
    for (size_t i = 0; i < (size_t)nclients * nsenders; i++) pairs[i].max_seq = -1;

    /* Connect everyone, a few at a time so the listen backlog never overflows. */
    int64_t t0 = now_ns();
    while (nready < nclients) {
        while (nstarted < nclients && nstarted - nready < MAX_HANDSHAKES) start_connect(nstarted);
        poll_once(100);
        if (now_ns() - t0 > (int64_t)SETUP_TIMEOUT_S * 1000000000) {
            fprintf(stderr, "loadgen: only %d of %d clients in the room after %d s\n", nready, nclients, SETUP_TIMEOUT_S);
            return 3;
        }
    }
    double connect_s = (now_ns() - t0) / 1e9;
    printf("ready connect_s=%.3f retries=%d\n", connect_s, retries);
    fflush(stdout);

    /* Wait for the go (or, idle, the end), reading what the server sends meanwhile. */
    while (!stdin_has_line()) poll_once(50);
    if (idle) return 0;

    double cpu0 = cpu_s();
    t_start = now_ns();
    t_stop = t_start + (int64_t)(duration * 1e9);
    sending = 1;
    if (window) {
        for (int s = 0; s < nsenders; s++)
            for (int w = 0; w < window; w++) send_message(s);
    }
    double per_sender = rate / nsenders;
    while (now_ns() < t_stop) {
        int timeout = 1;
        if (rate > 0) {
            double elapsed = (now_ns() - t_start) / 1e9;
            for (int s = 0; s < nsenders; s++) {
                /* Sender s starts s/rate late so that sends spread evenly. */
                double since = elapsed - (double)s / rate;
                if (since < 0) continue;
                uint64_t due = (uint64_t)(since * per_sender) + 1;
                while (sent[s] < due) send_message(s);
            }
        }
        poll_once(timeout);
    }
    sending = 0;
    int64_t t_end = now_ns();
    double cpu1 = cpu_s();
    uint64_t in_window = deliveries, reads_in_window = reads;
    printf("stop\n");
    fflush(stdout);

    /* Drain: everything sent must arrive. */
    uint64_t total_sent = 0;
    for (int s = 0; s < nsenders; s++) total_sent += sent[s];
    uint64_t expected = total_sent * (uint64_t)(nclients - 1);
    int64_t drain_deadline = now_ns() + 5000000000LL;
    while (deliveries - dups < expected && now_ns() < drain_deadline) poll_once(10);
    uint64_t distinct = 0;
    for (size_t i = 0; i < (size_t)nclients * nsenders; i++) distinct += pairs[i].distinct;

    double secs = (t_end - t_start) / 1e9;
    printf("result seconds=%.3f sent=%llu deliveries=%llu deliveries_per_s=%.0f"
           " p50_ms=%.3f p99_ms=%.3f max_ms=%.3f lost=%llu reordered=%llu duplicated=%llu"
           " echoes=%llu loadgen_cpu=%.3f connect_s=%.3f reads=%llu\n",
           secs, (unsigned long long)total_sent, (unsigned long long)in_window, in_window / secs,
           percentile(0.50), percentile(0.99), max_lat_ns / 1e6,
           (unsigned long long)(expected - distinct), (unsigned long long)reorders, (unsigned long long)dups,
           (unsigned long long)echoes, (cpu1 - cpu0) / secs, connect_s, (unsigned long long)reads_in_window);
    fflush(stdout);
    return 0;
}
