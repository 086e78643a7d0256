// Command pause is the test cluster's sandbox image: it holds a pod's
// namespaces until told to stop. Two extra modes give tests a listener and
// a client without needing a shell in the image.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "", "accept TCP connections on this address, answering each with \"ok\"")
	dial := flag.String("dial", "", "connect to this TCP address, print the answer and exit 0, or exit 1")
	version := flag.Bool("v", false, "print the version and exit")
	flag.Parse()

	switch {
	case *version:
		fmt.Println("pause 3.10 (sandboxd)")
		return
	case *dial != "":
		os.Exit(dialOnce(*dial))
	case *listen != "":
		go serve(*listen)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}

func serve(addr string) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		c.Write([]byte("ok\n"))
		c.Close()
	}
}

func dialOnce(addr string) int {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Print(string(buf[:n]))
	return 0
}
