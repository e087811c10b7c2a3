/*
 * responder.c - the benchmark's ceiling: a bare UDP DNS responder.
 *
 * Answers every datagram on 127.0.0.1:PORT with one precomputed answer
 * (n0.bench.test. A 10.0.0.0, TTL 86400, as in the zone), patching only the 2-octet ID.
 * Single-threaded, blocking recvfrom/sendto, no parsing, no allocation: it
 * measures what the load generator and the kernel can carry on this machine.
 *
 * Build: gcc -O2 -o responder responder.c      Run: responder PORT
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const unsigned char answer[] = {
    0x00, 0x00, 0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, /* header */
    2, 'n', '0', 5, 'b', 'e', 'n', 'c', 'h', 4, 't', 'e', 's', 't', 0,      /* qname */
    0x00, 0x01, 0x00, 0x01,                                                   /* A IN */
    0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x01, 0x51, 0x80,               /* ptr, A IN, TTL */
    0x00, 0x04, 10, 0, 0, 0,                                                  /* rdata */
};

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s PORT\n", argv[0]); return 2; }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int size = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
    me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof me) != 0) { perror("bind"); return 1; }
    unsigned char in[512], out[sizeof answer];
    memcpy(out, answer, sizeof answer);
    for (;;) {
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)&peer, &len);
        if (n < 12) continue;
        out[0] = in[0];
        out[1] = in[1];
        sendto(fd, out, sizeof out, 0, (struct sockaddr *)&peer, len);
    }
}
