/*
 * A TCP server that drains on its stop signal, and its clients, for the traffic accounting's
 * kernel-matrix scenarios (tests/vm/scenarios.sh `traffic` and `hostnet`): every connection
 * is held open, so what the kernel counts at the stop signal, SIGKILL and exit is exact.
 *
 *   tcp_hold serve PORT AFTER_STOP DIR
 *       Installs a SIGTERM handler, listens on 127.0.0.1:PORT (0: a free port the kernel
 *       picks) and writes DIR/port (the port it got) when both are done. Accepts every
 *       connection and keeps it open, writing DIR/accepted (how many so far) after each
 *       accept(2). At SIGTERM it writes DIR/stopped, accepts AFTER_STOP more connections,
 *       closes its listening socket, writes DIR/closed, and holds its connections until
 *       SIGKILL. (Counted, not timed: a drain of "0.5 s" would race an emulated CPU's clients.)
 *   tcp_hold connect PORT
 *       Connects to 127.0.0.1:PORT and holds the connection until killed; exits 2 if
 *       connect(2) fails.
 *
 * Each file is written whole and renamed into place: a reader never sees half of one. The
 * handler only writes a byte to a pipe that poll(2) watches beside the listener (SIGTERM is
 * never blocked: it meets the handler whenever it comes, so it is delivered as "handled").
 * Exits 1 on any other failure, with the call on stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int wake[2];
static const char *dir;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void on_term(int sig)
{
	int saved = errno;
	(void)sig;
	if (write(wake[1], "t", 1) < 0) {
		/* The pipe is full only after 64 KiB of signals: one is enough. */
	}
	errno = saved;
}

/* DIR/NAME holds VALUE and a newline, written to DIR/.NAME and renamed. */
static void put(const char *name, long value)
{
	char tmp[4096], path[4096], line[32];
	int fd, n;
	snprintf(tmp, sizeof tmp, "%s/.%s", dir, name);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	n = snprintf(line, sizeof line, "%ld\n", value);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die(tmp);
	if (write(fd, line, n) != n)
		die("write");
	if (close(fd) != 0)
		die("close");
	if (rename(tmp, path) != 0)
		die("rename");
}

static struct sockaddr_in loopback(long port)
{
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((unsigned short)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static void __attribute__((noreturn)) serve(long port, long after_stop)
{
	struct sigaction sa;
	struct sockaddr_in a = loopback(port);
	socklen_t len = sizeof a;
	int one = 1, lfd, stopped = 0;
	long accepted = 0, since_stop = 0;

	if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0)
		die("pipe2");
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_term;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) != 0)
		die("sigaction");
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		die("socket");
	if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
		die("SO_REUSEADDR");
	if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0)
		die("bind");
	if (listen(lfd, 64) != 0)
		die("listen");
	if (getsockname(lfd, (struct sockaddr *)&a, &len) != 0)
		die("getsockname");
	put("port", ntohs(a.sin_port));
	for (;;) {
		struct pollfd p[2] = { { lfd, POLLIN, 0 }, { wake[0], POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (p[1].revents & POLLIN) {
			char c[16];
			while (read(wake[0], c, sizeof c) > 0)
				;
			if (!stopped) {
				stopped = 1;
				put("stopped", accepted);
			}
		}
		if (p[0].revents & POLLIN) {
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (c < 0) {
				if (errno == EINTR || errno == EAGAIN)
					continue;
				die("accept4");
			}
			/* Held open: never closed, never read. */
			(void)c;
			put("accepted", ++accepted);
			if (stopped)
				since_stop++;
		}
		if (stopped && since_stop >= after_stop)
			break;
	}
	/* No connection is left unaccepted (the script waits for each): closing the listener
	 * resets nothing. */
	if (close(lfd) != 0)
		die("close listener");
	put("closed", accepted);
	for (;;)
		pause();
}

static int hold(long port)
{
	struct sockaddr_in a = loopback(port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		perror("connect");
		return 2;
	}
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "serve")) {
		dir = argv[4];
		serve(atol(argv[2]), atol(argv[3]));
	}
	if (argc == 3 && !strcmp(argv[1], "connect"))
		return hold(atol(argv[2]));
	fprintf(stderr, "usage: tcp_hold serve PORT AFTER_STOP DIR | tcp_hold connect PORT\n");
	return 64;
}
