package fileproto

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Process is a process of the container, as OpProcesses read it from /proc.
type Process struct {
	PID, PPID int
	// Session is the id of the process's session: the pid of its leader.
	Session int
	UID     int
	// User is the name /etc/passwd gives UID, "" where it gives none.
	User string
	// Name is the command's name as the kernel keeps it: 15 bytes at most.
	Name string
	// State is the kernel's letter for it: R running, S sleeping, D in
	// uninterruptible sleep, Z zombie, T stopped, and so on.
	State byte
	// Cmdline is the command line, its arguments joined by spaces: the
	// first 2 KiB of it.
	Cmdline string
	// StartTicks is when it started, in clock ticks after boot: with PID,
	// it names the process for good, as a pid is reused.
	StartTicks uint64
	Started    time.Time
	CPU        time.Duration // user and system time
	RSS        int64         // resident memory, in bytes
}

// Processes is what OpProcesses printed.
type Processes struct {
	// Self is the pid of the exec that listed them, which leads a session
	// of its own: what is in it is the listing's.
	Self int
	List []Process
}

// ParseProcesses reads what OpProcesses printed: a header of five fields
// (the listing's pid, the boot time, clock ticks a second, the page size,
// /etc/passwd), then four fields for each process (pid, uid, the line of
// /proc/PID/stat, the command line), each field ended by a NUL.
func ParseProcesses(out string) (Processes, error) {
	f := strings.Split(out, "\x00")
	if len(f) < 6 || f[len(f)-1] != "" || (len(f)-6)%4 != 0 {
		return Processes{}, fmt.Errorf("bad process listing of %d fields", len(f)-1)
	}
	self, err1 := strconv.Atoi(f[0])
	boot, err2 := strconv.ParseInt(f[1], 10, 64)
	hz, err3 := strconv.ParseUint(f[2], 10, 64)
	page, err4 := strconv.ParseInt(f[3], 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil || hz == 0 {
		return Processes{}, fmt.Errorf("bad process listing header %q: %v", f[:4], err)
	}
	users := parsePasswd(f[4])
	ticks := func(n uint64) time.Duration {
		return time.Duration(n/hz)*time.Second + time.Duration(n%hz)*time.Second/time.Duration(hz)
	}
	ps := Processes{Self: self, List: []Process{}}
	for rec := f[5 : len(f)-1]; len(rec) > 0; rec = rec[4:] {
		p, err := parseStat(rec[2])
		if err != nil {
			return Processes{}, err
		}
		if strconv.Itoa(p.PID) != rec[0] {
			return Processes{}, fmt.Errorf("the stat of process %s names %d", rec[0], p.PID)
		}
		if p.UID, err = strconv.Atoi(rec[1]); err != nil {
			return Processes{}, fmt.Errorf("bad uid %q of process %d", rec[1], p.PID)
		}
		p.User = users[p.UID]
		p.Cmdline = strings.TrimRight(rec[3], " ")
		p.Started = time.Unix(boot, 0).Add(ticks(p.StartTicks)).UTC()
		p.CPU = ticks(p.cpuTicks)
		p.RSS *= page
		ps.List = append(ps.List, p.Process)
	}
	return ps, nil
}

type stat struct {
	Process
	cpuTicks uint64
}

// parseStat reads a line of /proc/PID/stat. The command's name is in
// parentheses and may hold anything, spaces and parentheses too: the fields
// after it start after the last ")".
func parseStat(s string) (stat, error) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return stat{}, fmt.Errorf("bad stat %q", s)
	}
	var p stat
	var err error
	if p.PID, err = strconv.Atoi(strings.TrimSpace(s[:open])); err != nil {
		return stat{}, fmt.Errorf("bad stat %q", s)
	}
	p.Name = s[open+1 : end]
	// From the state on: the 3rd field of the line is rest[0].
	rest := strings.Fields(s[end+1:])
	if len(rest) < 22 || len(rest[0]) != 1 {
		return stat{}, fmt.Errorf("bad stat %q", s)
	}
	p.State = rest[0][0]
	num := func(i int) uint64 {
		n, e := strconv.ParseUint(rest[i], 10, 64)
		err = errors.Join(err, e)
		return n
	}
	p.PPID, p.Session = int(num(1)), int(num(3))
	p.cpuTicks = num(11) + num(12)
	p.StartTicks = num(19)
	p.RSS = int64(num(21)) // pages, until the caller knows their size
	if err != nil {
		return stat{}, fmt.Errorf("bad stat %q: %w", s, err)
	}
	return p, nil
}

// parsePasswd maps the uids of /etc/passwd to their names.
func parsePasswd(s string) map[int]string {
	users := map[int]string{}
	for line := range strings.Lines(s) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) < 3 {
			continue
		}
		if uid, err := strconv.Atoi(f[2]); err == nil {
			if _, seen := users[uid]; !seen {
				users[uid] = f[0]
			}
		}
	}
	return users
}
