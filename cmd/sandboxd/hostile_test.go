package main

import (
	"strings"
	"testing"
)

// Code in a context cannot do what a sandbox must forbid; each attempt
// fails inside the container, and the context keeps serving.
func TestHostileCodeIsContained(t *testing.T) {
	d := startDaemon(t)
	id := d.create(t)
	for _, tt := range []struct {
		name, code, want string
	}{
		{"io_uring", "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.syscall(425, 8, ctypes.create_string_buffer(120)), ctypes.get_errno())", "-1 1\n"},
		{"write outside workspace", "try:\n    open('/etc/owned', 'w')\nexcept OSError as e:\n    print(e.errno)", "30\n"},
		{"mount", "import subprocess\nprint(subprocess.run(['mount', '-t', 'tmpfs', 'x', '/mnt'], capture_output=True).returncode != 0)", "True\n"},
		{"raw socket", "import socket\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\nexcept OSError as e:\n    print(e.errno)", "1\n"},
		{"network", "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=3)\nexcept OSError as e:\n    print(type(e).__name__)", "OSError\n"},
		{"ptrace", "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.ptrace(16, 1, 0, 0), ctypes.get_errno())", "-1 1\n"},
		{"host environ", "print(open('/proc/1/environ').read().count('SANDBOXD'))", "0\n"},
		{"connect to the host", "import socket\ntry:\n    socket.create_connection(('172.17.0.1', 2375), timeout=3)\nexcept OSError as e:\n    print(type(e).__name__)", "OSError\n"},
		{"fill /tmp", "import errno\ntry:\n    with open('/tmp/fill', 'wb') as f:\n        for _ in range(1024):\n            f.write(b'x' * (1 << 20))\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\nimport os; os.remove('/tmp/fill')", "ENOSPC\n"},
		{"one huge file in /workspace", "import errno\ntry:\n    with open('big', 'wb') as f:\n        f.seek((2 << 30) - 1)\n        f.write(b'x')\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\nimport os; os.remove('big')", "EFBIG\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := d.execute(t, id, tt.code, 30)
			if e.Output.Stdout != tt.want {
				t.Errorf("stdout %q (stderr %q), want %q", e.Output.Stdout, e.Output.Stderr, tt.want)
			}
		})
	}
	if e := d.execute(t, id, "print('still serving')", 30); !strings.Contains(e.Output.Stdout, "still serving") {
		t.Errorf("after the attempts: %+v", e)
	}
}

// A fork bomb and a memory bomb hit their context's limits, not the host:
// another context keeps answering, and the bombed one comes back.
func TestBombsHitLimits(t *testing.T) {
	d := startDaemon(t)
	bystander, bombed := d.create(t), d.create(t)

	fork := d.execute(t, bombed, "import os, time\n"+
		"for i in range(2000):\n"+
		"    try:\n"+
		"        if os.fork() == 0:\n"+
		"            time.sleep(5); os._exit(0)\n"+
		"    except OSError as e:\n"+
		"        print('stopped at the limit', e.errno); break", 60)
	if !strings.HasPrefix(fork.Output.Stdout, "stopped at the limit 11") {
		t.Errorf("fork bomb: %+v", fork)
	}
	if e := d.execute(t, bystander, "print(1)", 30); e.Output.Stdout != "1\n" {
		t.Errorf("bystander during the fork bomb: %+v", e)
	}

	mem := d.execute(t, bombed, "x = bytearray(4 << 30)\nprint('allocated')", 120)
	if mem.Success || mem.Error == nil || (mem.Error.Name != "MemoryError" && mem.Error.Name != "KernelDied") {
		t.Errorf("4 GiB allocation: %+v", mem)
	}
	if e := d.execute(t, bystander, "print(2)", 30); e.Output.Stdout != "2\n" {
		t.Errorf("bystander after the memory bomb: %+v", e)
	}
	if e := d.execute(t, bombed, "print(3)", 60); e.Output.Stdout != "3\n" {
		t.Errorf("bombed context afterwards: %+v", e)
	}
}
