"""Run one command and report its wall time, peak RSS and CPU time: `python bench/launch.py REPORT_FILE CMD...`.

The measured process is forked from this small launcher, not from the
suite's driver: on Linux a child's ru_maxrss starts from the RSS of the
process it was forked from (the high-water mark survives exec), so a child
of the large driver would report the driver's size. The launcher's own start
is not timed: the clock runs from fork to wait4. The CPU time is the child's user + system time (wait4's
rusage): on a machine shared with other work it moves far less than the wall time.
"""
import os
import sys
import time


def main():
    report, cmd = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    with open(report, "w") as fh:
        fh.write("%r %d %d %r\n" % (seconds, usage.ru_maxrss, os.waitstatus_to_exitcode(status),
                                     usage.ru_utime + usage.ru_stime))
    sys.exit(0)


if __name__ == "__main__":
    main()
