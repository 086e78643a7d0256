package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// counts are what a leak would show in.
type counts struct {
	goroutines, fds, containers, socketDirs, danglingVolumes int
}

func (d *daemon) counts(tb testing.TB) counts {
	tb.Helper()
	fds, _ := os.ReadDir("/proc/self/fd")
	dirs, _ := os.ReadDir(d.socketDir)
	out, err := exec.Command("docker", "volume", "ls", "-q", "--filter", "dangling=true").Output()
	if err != nil {
		tb.Fatal(err)
	}
	return counts{
		goroutines:      runtime.NumGoroutine(),
		fds:             len(fds),
		containers:      d.containers(tb),
		socketDirs:      len(dirs),
		danglingVolumes: len(strings.Fields(string(out))),
	}
}

// Many create/execute/delete cycles, then 200 clients at once on 20
// contexts: every request is answered once and rightly, and nothing leaks
// (the counts before and after are logged). SANDBOXD_SOAK_CYCLES sets the
// number of cycles (make test-soak runs 1,000).
func TestSoak(t *testing.T) {
	cycles := 40
	if n, err := strconv.Atoi(os.Getenv("SANDBOXD_SOAK_CYCLES")); err == nil {
		cycles = n
	}
	d := startDaemon(t, "--max-contexts", "0")
	// Warm up what starts lazily (keep-alive connections, the Docker client).
	id := d.create(t)
	d.execute(t, id, "1", 0)
	d.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil)
	d.waitPoolFull(t)
	before := d.counts(t)

	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= cycles && !t.Failed(); i = int(next.Add(1)) {
				id := d.create(t)
				if e := d.execute(t, id, fmt.Sprintf("print(%d)", i), 60); e.Output.Stdout != fmt.Sprintf("%d\n", i) {
					t.Errorf("cycle %d: %+v", i, e)
				}
				if status := d.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil); status != http.StatusNoContent {
					t.Errorf("cycle %d: delete %d", i, status)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d create/execute/delete cycles in %v", cycles, time.Since(start).Round(time.Second))

	ids := make([]string, 20)
	for i := range ids {
		ids[i] = d.create(t)
	}
	start = time.Now()
	var answered atomic.Int64
	for c := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 3 {
				token := fmt.Sprintf("client%d-req%d", c, r)
				if e := d.execute(t, ids[c%len(ids)], fmt.Sprintf("print(%q)", token), 120); e.Output.Stdout != token+"\n" {
					t.Errorf("%s got %q", token, e.Output.Stdout)
				}
				answered.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("200 clients on 20 contexts: %d of 600 requests answered rightly in %v", answered.Load(), time.Since(start).Round(time.Millisecond))
	for _, id := range ids {
		d.call(t, "DELETE", "/api/v1/contexts/"+id, nil, nil)
	}

	// Connections and the pool's refill wind down asynchronously.
	d.waitPoolFull(t)
	var after counts
	deadline := time.Now().Add(15 * time.Second)
	for {
		http.DefaultClient.CloseIdleConnections()
		after = d.counts(t)
		if after.goroutines <= before.goroutines+2 && after.fds <= before.fds+2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("before: %+v", before)
	t.Logf("after:  %+v", after)
	if after.goroutines > before.goroutines+2 || after.fds > before.fds+2 || after.containers != before.containers ||
		after.socketDirs != before.socketDirs || after.danglingVolumes > before.danglingVolumes {
		t.Errorf("leak: before %+v, after %+v", before, after)
	}
}
