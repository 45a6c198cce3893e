/*
 * A container main process with threads, for the exit probe's tests: which thread's exit ends
 * the process (the kernel's group_dead), and which status the parent reaps.
 *
 *   threads_exit <how> <delay_ms> <code> [threads]
 *
 * SIGTERM is blocked in every thread (the mask is inherited) and taken with sigwait() by the
 * group leader, so a pid namespace's init still receives it (a blocked signal is not dropped,
 * kernel/signal.c sig_ignored()). Then:
 *   leader-first-thread-exit  the leader leaves (pthread_exit); delay_ms later the last thread
 *                             calls SYS_exit(code). The parent reaps the leader's status 0
 *                             (kernel/exit.c wait_task_zombie(): no group exit, so p->exit_code
 *                             of the leader), and the process ends at the last thread's exit.
 *   leader-first-group-exit   the leader leaves; delay_ms later the last thread calls
 *                             exit(code) (exit_group): the parent reaps code.
 *   leader-first-hang         the leader leaves; the last thread never ends (SIGKILL does).
 *   all-exit-group            `threads` threads run; delay_ms after SIGTERM one of them calls
 *                             exit(code), and the kernel ends every thread at once.
 *   all-hang                  `threads` threads run until SIGKILL ends them all at once.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int go[2];
static const char *how;
static long delay_ms;
static int code;

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}

static void *last_thread(void *arg)
{
	char c;
	(void)arg;
	if (read(go[0], &c, 1) != 1)
		_exit(100);
	sleep_ms(delay_ms);
	if (!strcmp(how, "leader-first-thread-exit"))
		syscall(SYS_exit, code);
	if (!strcmp(how, "leader-first-group-exit") || !strcmp(how, "all-exit-group"))
		exit(code);
	for (;;)
		pause();
}

static void *idle_thread(void *arg)
{
	for (;;)
		pause();
	return arg;
}

int main(int argc, char **argv)
{
	sigset_t term;
	int sig, i, threads;
	pthread_t t;

	if (argc < 4)
		return 2;
	how = argv[1];
	delay_ms = atol(argv[2]);
	code = atoi(argv[3]);
	threads = argc > 4 ? atoi(argv[4]) : 2;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &term, NULL) != 0 || pipe(go) != 0)
		return 2;
	if (pthread_create(&t, NULL, last_thread, NULL) != 0)
		return 2;
	for (i = 2; i < threads; i++)
		if (pthread_create(&t, NULL, idle_thread, NULL) != 0)
			return 2;
	if (!strncmp(how, "all-", 4)) {
		/* Every thread stays; SIGTERM (if any) starts the countdown to exit_group. */
		sigwait(&term, &sig);
		if (write(go[1], "x", 1) != 1)
			return 2;
		for (;;)
			pause();
	}
	sigwait(&term, &sig);
	if (write(go[1], "x", 1) != 1)
		return 2;
	pthread_exit(NULL);
}
