# Carries one connection to a unix socket in the container over this
# process's stdin and stdout, for a daemon that cannot reach the socket
# itself: it shares no directory with the engine's host. It is run through
# the engine's exec API as the context's user, so it can reach nothing the
# context's own code cannot.
#
#   python3 -S -c RELAY PATH
#
# Once connected it writes one byte, "+", so that the daemon tells a refused
# connection (the server is not up yet) from a quiet one; then it copies
# both ways until either side ends.
import os, socket, sys, threading

sock = socket.socket(socket.AF_UNIX)
try:
    sock.connect(sys.argv[1])
except OSError as e:
    sys.stderr.write("connect %s: %s\n" % (sys.argv[1], e))
    sys.exit(1)

def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

write_all(1, b"+")

def upstream():
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            sock.sendall(data)
        # Passed on as a half-close: the server ends its side in turn.
        sock.shutdown(socket.SHUT_WR)
    except OSError as e:
        # Never half a relay: the daemon must see the connection go.
        sys.stderr.write("relay: %s\n" % e)
        os._exit(1)

threading.Thread(target=upstream, daemon=True).start()
try:
    while True:
        data = sock.recv(65536)
        if not data:
            break
        write_all(1, data)
except OSError:
    pass
