/* Baselines for `cargo xtask bench zmtp`, built by the xtask against the system libzmq.
 *
 *   driver zmq local_thr|remote_thr|local_lat|remote_lat <endpoint> <size> <count>
 *   driver tcp local_thr|remote_thr|local_lat|remote_lat <endpoint> <size> <count>
 *
 * `zmq` is libzmq's own perf tools (PULL/PUSH, REP/REQ, same output format); `tcp` is raw TCP
 * with ZMTP-style frame headers (flags + 1 or 8 byte size), writes batched into 64 KiB, reads
 * from a 256 KiB buffer: the ceiling any ZMTP implementation can reach on this machine.
 *
 * With ZMTP_PERF_CURVE=1 in the environment, `zmq` sockets use CURVE with the fixed test key
 * pair of libzmq's zmq_curve(7) page (the Harmony perf tools use the same pair): the binding
 * side is the server, the connecting side the client. */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zmq.h>

static uint64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t) tv.tv_sec * 1000000 + tv.tv_usec;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void print_thr(size_t size, uint64_t count, uint64_t elapsed)
{
    if (elapsed == 0)
        elapsed = 1;
    uint64_t throughput = (uint64_t) ((double) count / (double) elapsed * 1000000);
    double megabits = (double) (throughput * size * 8) / 1000000;
    printf("message size: %zu [B]\n", size);
    printf("message count: %llu\n", (unsigned long long) count);
    printf("mean throughput: %llu [msg/s]\n", (unsigned long long) throughput);
    printf("mean throughput: %.3f [Mb/s]\n", megabits);
}

static void print_lat(size_t size, uint64_t count, uint64_t elapsed)
{
    printf("message size: %zu [B]\n", size);
    printf("roundtrip count: %llu\n", (unsigned long long) count);
    printf("average latency: %.3f [us]\n", (double) elapsed / (count * 2));
}

/* ---- libzmq ---- */

static const char test_server_secret[] = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6";
static const char test_client_secret[] = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs";

/* Sets up CURVE on `s` when ZMTP_PERF_CURVE is set (and not "0"). */
static void zmq_security(void *s, int server)
{
    const char *on = getenv("ZMTP_PERF_CURVE");
    if (!on || !*on || !strcmp(on, "0"))
        return;
    if (!zmq_has("curve")) {
        fprintf(stderr, "this libzmq has no CURVE\n");
        exit(1);
    }
    char server_public[41], client_public[41];
    if (zmq_curve_public(server_public, test_server_secret)
        || zmq_curve_public(client_public, test_client_secret))
        die("zmq_curve_public");
    int one = 1;
    if (server) {
        if (zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one)
            || zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, test_server_secret, 40))
            die("curve server options");
    } else if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_public, 40)
               || zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, client_public, 40)
               || zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, test_client_secret, 40)) {
        die("curve client options");
    }
}

static int zmq_mode(const char *mode, const char *ep, size_t size, uint64_t count)
{
    void *ctx = zmq_ctx_new();
    int bind = !strcmp(mode, "local_thr") || !strcmp(mode, "local_lat");
    int type = !strcmp(mode, "local_thr")    ? ZMQ_PULL
               : !strcmp(mode, "remote_thr") ? ZMQ_PUSH
               : !strcmp(mode, "local_lat")  ? ZMQ_REP
                                             : ZMQ_REQ;
    void *s = zmq_socket(ctx, type);
    zmq_security(s, bind);
    if ((bind ? zmq_bind(s, ep) : zmq_connect(s, ep)) != 0)
        die("bind/connect");
    zmq_msg_t msg;
    if (!strcmp(mode, "local_thr")) {
        zmq_msg_init(&msg);
        if (zmq_recvmsg(s, &msg, 0) < 0)
            die("recv");
        uint64_t start = now_us();
        for (uint64_t i = 1; i < count; i++)
            if (zmq_recvmsg(s, &msg, 0) < 0 || zmq_msg_size(&msg) != size)
                die("recv");
        print_thr(size, count, now_us() - start);
        zmq_msg_close(&msg);
    } else if (!strcmp(mode, "remote_thr")) {
        for (uint64_t i = 0; i < count; i++) {
            zmq_msg_init_size(&msg, size);
            if (zmq_sendmsg(s, &msg, 0) < 0)
                die("send");
        }
    } else if (!strcmp(mode, "local_lat")) {
        zmq_msg_init(&msg);
        for (uint64_t i = 0; i < count; i++) {
            if (zmq_recvmsg(s, &msg, 0) < 0 || zmq_sendmsg(s, &msg, 0) < 0)
                die("echo");
        }
        zmq_msg_close(&msg);
    } else {
        zmq_msg_init_size(&msg, size);
        memset(zmq_msg_data(&msg), 0, size);
        uint64_t start = now_us();
        for (uint64_t i = 0; i < count; i++) {
            if (zmq_sendmsg(s, &msg, 0) < 0 || zmq_recvmsg(s, &msg, 0) < 0
                || zmq_msg_size(&msg) != size)
                die("roundtrip");
        }
        print_lat(size, count, now_us() - start);
        zmq_msg_close(&msg);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
}

/* ---- raw framed TCP ---- */

static int tcp_socket(const char *ep, int listening)
{
    const char *hp = strstr(ep, "://");
    hp = hp ? hp + 3 : ep;
    char host[64];
    const char *colon = strrchr(hp, ':');
    if (!colon || (size_t) (colon - hp) >= sizeof host)
        die("endpoint");
    memcpy(host, hp, colon - hp);
    host[colon - hp] = 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        die("address");
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (listening) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *) &a, sizeof a) || listen(fd, 1))
            die("bind");
        int c = accept(fd, NULL, NULL);
        close(fd);
        fd = c;
    } else {
        for (int tries = 0; connect(fd, (struct sockaddr *) &a, sizeof a); tries++) {
            if (tries > 200)
                die("connect");
            usleep(10000);
            close(fd);
            fd = socket(AF_INET, SOCK_STREAM, 0);
        }
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static size_t put_header(unsigned char *p, size_t size)
{
    if (size > 255) {
        p[0] = 2;
        for (int i = 0; i < 8; i++)
            p[1 + i] = (unsigned char) ((uint64_t) size >> (56 - 8 * i));
        return 9;
    }
    p[0] = 0;
    p[1] = (unsigned char) size;
    return 2;
}

static void write_all(int fd, const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            die("write");
        p += w;
        n -= (size_t) w;
    }
}

/* Reads frames from a big buffer; returns the number of whole frames consumed. */
typedef struct {
    int fd;
    unsigned char *buf;
    size_t cap, start, end;
} reader_t;

static size_t frame_len(reader_t *r, size_t *hdr)
{
    size_t avail = r->end - r->start;
    unsigned char *p = r->buf + r->start;
    if (avail < 2)
        return (size_t) -1;
    if (p[0] & 2) {
        if (avail < 9)
            return (size_t) -1;
        uint64_t n = 0;
        for (int i = 0; i < 8; i++)
            n = (n << 8) | p[1 + i];
        *hdr = 9;
        return (size_t) n;
    }
    *hdr = 2;
    return p[1];
}

/* Next frame's body size (its bytes are consumed). Large bodies are read straight into a
 * scratch buffer of their own, so no byte is copied twice. */
static size_t next_frame(reader_t *r)
{
    static unsigned char *scratch;
    static size_t scratch_cap;
    for (;;) {
        size_t hdr, len = frame_len(r, &hdr);
        if (len != (size_t) -1 && r->end - r->start >= hdr + len) {
            r->start += hdr + len;
            return len;
        }
        if (len != (size_t) -1 && len >= (16 << 10)) {
            size_t have = r->end - r->start - hdr, left = len - have;
            if (scratch_cap < len) {
                scratch_cap = len;
                scratch = realloc(scratch, scratch_cap);
            }
            memcpy(scratch, r->buf + r->start + hdr, have);
            r->start = r->end = 0;
            while (left) {
                ssize_t n = read(r->fd, scratch + (len - left), left);
                if (n <= 0)
                    die("read");
                left -= (size_t) n;
            }
            return len;
        }
        if (r->start > 0 && (len == (size_t) -1 || r->cap - r->start < hdr + len)) {
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        if (len != (size_t) -1 && hdr + len > r->cap) {
            r->cap = hdr + len;
            r->buf = realloc(r->buf, r->cap);
        }
        ssize_t n = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (n <= 0)
            die("read");
        r->end += (size_t) n;
    }
}

static int tcp_mode(const char *mode, const char *ep, size_t size, uint64_t count)
{
    int listening = !strcmp(mode, "local_thr") || !strcmp(mode, "local_lat");
    int fd = tcp_socket(ep, listening);
    reader_t r = {.fd = fd, .cap = 256 << 10};
    r.buf = malloc(r.cap);
    unsigned char *body = calloc(1, size + 1);
    if (!strcmp(mode, "local_thr")) {
        if (next_frame(&r) != size)
            die("size");
        uint64_t start = now_us();
        for (uint64_t i = 1; i < count; i++)
            if (next_frame(&r) != size)
                die("size");
        print_thr(size, count, now_us() - start);
    } else if (!strcmp(mode, "remote_thr")) {
        size_t cap = 64 << 10, used = 0;
        unsigned char *out = malloc(cap + 16);
        for (uint64_t i = 0; i < count; i++) {
            if (size + 9 > cap) {
                /* Large messages: up to 32 frames (header + body) per writev, no copy. */
                static unsigned char h[9];
                size_t hl = put_header(h, size);
                uint64_t batch = count - i < 32 ? count - i : 32;
                struct iovec iov[64];
                for (uint64_t j = 0; j < batch; j++) {
                    iov[2 * j] = (struct iovec) {h, hl};
                    iov[2 * j + 1] = (struct iovec) {body, size};
                }
                int first = 0, n = (int) (2 * batch);
                while (first < n) {
                    ssize_t w = writev(fd, iov + first, n - first);
                    if (w <= 0)
                        die("writev");
                    size_t k = (size_t) w;
                    while (first < n && k >= iov[first].iov_len) {
                        k -= iov[first].iov_len;
                        first++;
                    }
                    if (first < n) {
                        iov[first].iov_base = (char *) iov[first].iov_base + k;
                        iov[first].iov_len -= k;
                    }
                }
                i += batch - 1;
                continue;
            }
            if (used + size + 9 > cap) {
                write_all(fd, out, used);
                used = 0;
            }
            used += put_header(out + used, size);
            memcpy(out + used, body, size);
            used += size;
        }
        write_all(fd, out, used);
        shutdown(fd, SHUT_WR);
        char c;
        while (read(fd, &c, 1) > 0) {
        }
    } else {
        unsigned char *frame = malloc(size + 9);
        size_t flen = put_header(frame, size);
        memcpy(frame + flen, body, size);
        flen += size;
        int echo = !strcmp(mode, "local_lat");
        uint64_t start = now_us();
        for (uint64_t i = 0; i < count; i++) {
            if (echo) {
                if (next_frame(&r) != size)
                    die("size");
                write_all(fd, frame, flen);
            } else {
                write_all(fd, frame, flen);
                if (next_frame(&r) != size)
                    die("size");
            }
        }
        if (!echo)
            print_lat(size, count, now_us() - start);
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: driver zmq|tcp local_thr|remote_thr|local_lat|remote_lat "
                        "<endpoint> <size> <count>\n");
        return 1;
    }
    size_t size = (size_t) atol(argv[4]);
    uint64_t count = (uint64_t) atoll(argv[5]);
    if (!strcmp(argv[1], "zmq"))
        return zmq_mode(argv[2], argv[3], size, count);
    return tcp_mode(argv[2], argv[3], size, count);
}
