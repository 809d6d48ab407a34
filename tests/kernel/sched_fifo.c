/*
 * Asks the kernel for SCHED_FIFO (priority 1) for itself and says what it answered: "ok" or
 * the errno's name. Inside a container, EPERM means its cgroup has no real-time budget
 * (cpu.rt_runtime_us 0) or it lacks CAP_SYS_NICE. Static (cc -static) so it runs in any
 * image; built by tests/kernel/test_cpu_rt.py.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    struct sched_param param = {.sched_priority = 1};
    if (sched_setscheduler(0, SCHED_FIFO, &param) == 0 && sched_getscheduler(0) == SCHED_FIFO) {
        puts("ok");
        return 0;
    }
    puts(errno == EPERM ? "EPERM" : errno == EINVAL ? "EINVAL" : strerror(errno));
    return 1;
}
