# The egress forwarder of a context reached through exec (TransportExec):
# programs in the container connect to the proxy address, 127.0.0.1:3128,
# and each connection is carried to the daemon's egress proxy by a relay
# the daemon starts for it. It runs as the context's user:
#
#   python3 -S -c FORWARDER SOCKET
#
# Its stdin and stdout are the daemon's. It writes "ready" once it listens,
# then the number of each connection a program makes; the daemon starts a
# relay to SOCKET for it, which first sends that number back. When stdin
# ends, the daemon is gone, and so is the forwarder.
import asyncio, itertools, os, sys

path = sys.argv[1]
waiting = {}  # connection number -> the future its relay fulfils
numbers = itertools.count(1)

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass

async def program(reader, writer):
    n = next(numbers)
    relay = asyncio.get_running_loop().create_future()
    waiting[n] = relay
    sys.stdout.write("%d\n" % n)
    sys.stdout.flush()
    try:
        relay_reader, relay_writer = await asyncio.wait_for(relay, 30)
    except asyncio.TimeoutError:
        writer.close()
        return
    finally:
        waiting.pop(n, None)
    await asyncio.gather(pipe(reader, relay_writer), pipe(relay_reader, writer))
    relay_writer.close()
    writer.close()

async def relay(reader, writer):
    try:
        relay = waiting.get(int(await reader.readline()))
    except ValueError:
        relay = None
    if relay is None or relay.done():
        writer.close()
        return
    relay.set_result((reader, writer))

async def main():
    # The forwarder of a previous run of the daemon may not have gone yet.
    for _ in range(100):
        try:
            server = await asyncio.start_server(program, "127.0.0.1", 3128)
            break
        except OSError:
            await asyncio.sleep(0.1)
    else:
        sys.exit("127.0.0.1:3128 is taken")
    if os.path.exists(path):
        os.unlink(path)
    await asyncio.start_unix_server(relay, path)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)
    os._exit(0)

asyncio.run(main())
