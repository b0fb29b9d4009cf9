package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTick is the unit of the CPU times in /proc: USER_HZ, what
// sysconf(_SC_CLK_TCK) returns. Linux fixes it at 100 for user space on
// every architecture, whatever the kernel's own HZ, and Go cannot call
// sysconf without cgo.
const clockTick = 10 * time.Millisecond

var errProcStat = errors.New("bench: unexpected /proc stat format")

// procCPU returns the CPU time, user and system, that process pid has
// used so far, all its threads together: fields 14 (utime) and 15 (stime)
// of /proc/<pid>/stat (proc(5)), in clock ticks.
func procCPU(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields from the last ')'. Field 3 is then the first.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errProcStat
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, 0, errProcStat
	}
	utime, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, errProcStat
	}
	return time.Duration(utime) * clockTick, time.Duration(stime) * clockTick, nil
}

// selfCPU returns the CPU time, user plus system, this process has used
// so far, with microsecond resolution (getrusage(2)).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy returns the CPU time all CPUs of the machine have spent
// doing anything but idling or waiting for I/O so far, and the part of it
// spent in softirqs, from the first line of /proc/stat (proc(5)). The
// kernel delivers a loopback packet in a softirq that mostly runs in the
// sender's context as it sends, and charges it to that process's system
// time too: softirq time is part of the processes' figures, not extra.
func machineBusy() (busy, softirq time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 9 || string(f[0]) != "cpu" {
		return 0, 0, errProcStat
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice]:
	// guest time is already counted in user.
	var total, soft uint64
	for j, v := range f[1:9] {
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			return 0, 0, errProcStat
		}
		if j != 3 && j != 4 { // idle, iowait
			total += n
		}
		if j == 6 {
			soft = n
		}
	}
	return time.Duration(total) * clockTick, time.Duration(soft) * clockTick, nil
}

// cpuSnap is the CPU accounting at one instant of a measurement.
type cpuSnap struct {
	at      time.Time
	server  time.Duration // the measured server process, user and system
	srvSys  time.Duration // its system part
	self    time.Duration // this process: the load generator
	machine time.Duration // every CPU of the machine
	softirq time.Duration // its softirq part
}

func takeCPUSnap(pid int) (cpuSnap, error) {
	s := cpuSnap{at: time.Now(), self: selfCPU()}
	user, sys, err := procCPU(pid)
	if err != nil {
		return s, fmt.Errorf("server CPU time: %w", err)
	}
	s.server, s.srvSys = user+sys, sys
	if s.machine, s.softirq, err = machineBusy(); err != nil {
		return s, fmt.Errorf("machine CPU time: %w", err)
	}
	return s, nil
}
