
/*
 * Copyright (C) ngx_segura_module authors
 */


/*
 * An LD_PRELOAD shim for t/session_highfd.t: TCP sockets above descriptor
 * 65535, as in a worker that holds that many connections, without making
 * that many.  Any thread may call it (the worker's event loop, pool
 * threads).  The environment is read once, when the library is loaded:
 * nginx gives its workers an environment of its own.
 *
 *   SEGURA_HIGHFD_MIN=<n>    each new AF_INET/AF_INET6 stream socket is
 *                            moved to the lowest free descriptor >= n
 *                            (fcntl F_DUPFD, the original closed, its
 *                            close-on-exec flag kept)
 *   SEGURA_HIGHFD_LOG=<file> one line per event, written with one write(2)
 *                            to an O_APPEND file:
 *                              <pid> socket <fd>
 *                              <pid> unmoved <fd> <errno>
 *                              <pid> connect <fd> <port>
 *
 * Without SEGURA_HIGHFD_MIN it changes nothing.  The descriptor limit
 * (RLIMIT_NOFILE) must be above n, or fcntl fails and the socket stays
 * where it was ("unmoved").
 */


#define _GNU_SOURCE

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>


typedef int (*socket_pt)(int domain, int type, int protocol);
typedef int (*connect_pt)(int fd, const struct sockaddr *sa, socklen_t len);


static void highfd_init(void) __attribute__((constructor));
static void highfd_log(const char *fmt, ...);


static long         highfd_min;
static const char  *highfd_file;


static void
highfd_init(void)
{
    const char  *v;

    v = getenv("SEGURA_HIGHFD_MIN");
    highfd_min = (v != NULL) ? strtol(v, NULL, 10) : 0;

    /* a copy: the environment may be rebuilt */
    v = getenv("SEGURA_HIGHFD_LOG");
    highfd_file = (v != NULL) ? strdup(v) : NULL;
}


int
socket(int domain, int type, int protocol)
{
    int           fd, nfd, err;
    socket_pt     real;

    real = (socket_pt) dlsym(RTLD_NEXT, "socket");
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }

    fd = real(domain, type, protocol);

    if (fd == -1 || highfd_min <= fd
        || (domain != AF_INET && domain != AF_INET6)
        || (type & 0xf) != SOCK_STREAM)
    {
        return fd;
    }

    nfd = fcntl(fd, (type & SOCK_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD,
                (int) highfd_min);

    if (nfd == -1) {
        err = errno;
        highfd_log("unmoved %d %d\n", fd, err);
        errno = err;

        /* the socket itself is fine: the caller goes on with it */
        return fd;
    }

    (void) close(fd);

    highfd_log("socket %d\n", nfd);

    return nfd;
}


int
connect(int fd, const struct sockaddr *sa, socklen_t len)
{
    int          port;
    connect_pt   real;

    real = (connect_pt) dlsym(RTLD_NEXT, "connect");
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }

    port = -1;

    if (sa != NULL && sa->sa_family == AF_INET
        && len >= sizeof(struct sockaddr_in))
    {
        port = ntohs(((const struct sockaddr_in *) sa)->sin_port);

    } else if (sa != NULL && sa->sa_family == AF_INET6
               && len >= sizeof(struct sockaddr_in6))
    {
        port = ntohs(((const struct sockaddr_in6 *) sa)->sin6_port);
    }

    if (port != -1) {
        highfd_log("connect %d %d\n", fd, port);
    }

    return real(fd, sa, len);
}


static void
highfd_log(const char *fmt, ...)
{
    int          fd, n, saved;
    char         line[128];
    va_list      args;

    if (highfd_file == NULL) {
        return;
    }

    saved = errno;

    n = snprintf(line, sizeof(line), "%ld ", (long) getpid());

    va_start(args, fmt);
    (void) vsnprintf(line + n, sizeof(line) - n, fmt, args);
    va_end(args);

    fd = open(highfd_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd != -1) {
        (void) write(fd, line, strlen(line));
        (void) close(fd);
    }

    errno = saved;
}
