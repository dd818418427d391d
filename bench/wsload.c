/* wsload: a WebSocket echo load client in C, for bench/ws_bench.py (--client c).
 *
 * Usage: wsload PORT PATH CONNECTIONS SECONDS SIZE [INFLIGHT]
 *
 * Opens CONNECTIONS WebSockets to 127.0.0.1:PORT PATH (loopback only, by construction), then
 * runs a closed loop for SECONDS: each socket has INFLIGHT (default 1, at most 64) masked text
 * messages of SIZE bytes (1-125) in flight and sends one more for each echo that is back
 * whole. Prints one JSON
 * line: messages echoed, elapsed seconds, this process's CPU seconds (user + system).
 * It exists because the Python client of bench/ws_bench.py needs about as much CPU per
 * message as the servers it measures, so no server was ever CPU-bound with it.
 * Bounded: SECONDS is capped at 60, CONNECTIONS at 10,000; any error ends it with status 1.
 * Build: cc -O2 -o wsload wsload.c (bench/ws_bench.py does this into bench/out/).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 10000
#define MAX_SECONDS 60.0

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "wsload: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* One blocking handshake: the upgrade request, then the whole response head. */
static int open_ws(int port, const char *path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct linger lin = {1, 0};  /* close with a reset: no TIME_WAIT pile-up */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof lin);
    char request[512];
    int len = snprintf(request, sizeof request,
                       "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n", path);
    if (write(fd, request, (size_t)len) != len) die("write handshake");
    char head[4096];
    size_t got = 0;
    while (got < sizeof head - 1) {
        ssize_t n = read(fd, head + got, sizeof head - 1 - got);
        if (n <= 0) die("read handshake");
        got += (size_t)n;
        head[got] = 0;
        if (strstr(head, "\r\n\r\n")) break;
    }
    if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
        fprintf(stderr, "wsload: handshake refused: %.60s\n", head);
        exit(1);
    }
    return fd;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: wsload PORT PATH CONNECTIONS SECONDS SIZE [INFLIGHT]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *path = argv[2];
    int conns = atoi(argv[3]);
    double seconds = atof(argv[4]);
    int size = atoi(argv[5]);
    int inflight = argc == 7 ? atoi(argv[6]) : 1;
    if (inflight <= 0 || inflight > 64) {
        fprintf(stderr, "wsload: INFLIGHT out of range\n");
        return 2;
    }
    if (port <= 0 || port > 65535 || conns <= 0 || conns > MAX_CONNECTIONS || seconds <= 0
        || seconds > MAX_SECONDS || size <= 0 || size > 125) {
        fprintf(stderr, "wsload: out of range\n");
        return 2;
    }
    /* The message: FIN + text, masked, a 7-bit length; the reply: unmasked, 2 + size. */
    unsigned char message[6 + 125];
    const unsigned char mask[4] = {1, 2, 3, 4};
    message[0] = 0x81;
    message[1] = (unsigned char)(0x80 | size);
    memcpy(message + 2, mask, 4);
    for (int i = 0; i < size; i++) message[6 + i] = (unsigned char)('m' ^ mask[i & 3]);
    size_t message_len = (size_t)(6 + size), reply_len = (size_t)(2 + size);

    int *fds = calloc((size_t)conns, sizeof *fds);
    size_t *pending = calloc((size_t)conns, sizeof *pending);  /* bytes of a partial reply */
    if (!fds || !pending) die("calloc");
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    for (int i = 0; i < conns; i++) {
        fds[i] = open_ws(port, path);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) die("epoll_ctl");
    }
    for (int i = 0; i < conns; i++)
        for (int k = 0; k < inflight; k++)
            if (write(fds[i], message, message_len) != (ssize_t)message_len) die("write");

    static unsigned char buf[65536];
    static unsigned char batch[65536];
    struct epoll_event events[1024];
    long long count = 0;
    double started = now(), end = started + seconds;
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    while (now() < end) {
        int ready = epoll_wait(ep, events, 1024, 1000);
        if (ready < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int k = 0; k < ready; k++) {
            int i = (int)events[k].data.u32;
            ssize_t n = read(fds[i], buf, sizeof buf);
            if (n <= 0) {
                fprintf(stderr, "wsload: connection %d closed by the server\n", i);
                return 1;
            }
            size_t total = pending[i] + (size_t)n;
            size_t done = total / reply_len;
            pending[i] = total % reply_len;
            count += (long long)done;
            if (done) {  /* one message per reply that came whole, in one write */
                size_t len = 0;
                for (size_t d = 0; d < done && len + message_len <= sizeof batch; d++) {
                    memcpy(batch + len, message, message_len);
                    len += message_len;
                }
                if (write(fds[i], batch, len) != (ssize_t)len) die("write");
            }
        }
    }
    double elapsed = now() - started;
    getrusage(RUSAGE_SELF, &r1);
    double cpu = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) + (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec)
                 + ((r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec)) / 1e6;
    printf("{\"messages\": %lld, \"elapsed\": %.6f, \"cpu\": %.6f}\n", count, elapsed, cpu);
    for (int i = 0; i < conns; i++) close(fds[i]);
    return 0;
}
