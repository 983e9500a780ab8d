package main

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times: 100 on
// every Linux the stack runs on.
const clockTicks = 100

// server is one of the stack's servers whose CPU time the bench reads.
type server struct {
	name string
	pid  int
}

// stackServers finds the processes listening on the endpoints' ports (the
// stack's MinIO, dynalite and Toxiproxy), so a run's CPU can be split by
// process: on two shared cores, a tool's speed is the CPU its files cost
// everyone. A server not found is left out.
func stackServers(endpoints map[string]string) []server {
	var out []server
	for _, name := range []string{"MinIO", "dynalite", "Toxiproxy"} {
		u, err := url.Parse(endpoints[name])
		if err != nil || u.Port() == "" {
			continue
		}
		if pid := listener(u.Port()); pid > 0 {
			out = append(out, server{name, pid})
		}
	}
	return out
}

// listener returns the PID of the process with a socket listening on the
// loopback TCP port, or 0.
func listener(port string) int {
	p, err := strconv.Atoi(port)
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return 0
	}
	defer f.Close()
	inode := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// local_address is HEXIP:HEXPORT, st 0A is LISTEN.
		if len(fields) > 9 && strings.HasSuffix(fields[1], fmt.Sprintf(":%04X", p)) && fields[3] == "0A" {
			inode = fields[9]
			break
		}
	}
	if inode == "" {
		return 0
	}
	want := "socket:[" + inode + "]"
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && target == want {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid
		}
	}
	return 0
}

// cpuTime is a process's user + system CPU time so far; 0 when it cannot
// be read (the WAN table then shows no cost for that server).
func cpuTime(pid int) time.Duration {
	d, _ := procCPU(pid)
	return d
}

// procCPU reads a process's user + system CPU time from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name (in parentheses, and it may hold
	// spaces), from field 3 (state): utime and stime are fields 14 and 15.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// selfCPU is this process's CPU time so far (the raw SDK upload runs in it).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
