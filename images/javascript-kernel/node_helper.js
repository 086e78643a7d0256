'use strict';
// The node side of the javascript kernel (javascript_kernel.py starts it).
//
// Requests come on a socket the kernel holds the other end of (its fd is
// the first argument), as JSON lines: {"code": "...", "file": "cell1"}.
// Each is evaluated with the eval of a repl.REPLServer, as in Node's own
// REPL: var, let, const, functions and classes stay defined for later
// cells, and `await` works at top level. The answer is one JSON line on the
// socket, written only after all the cell printed is in the stdout and
// stderr pipes:
//   {"status": "ok", "result": "<util.inspect of the value>" | null, "cwd", "env"}
//   {"status": "error", "ename", "evalue", "traceback": [...], "cwd", "env"}
// cwd and env let the kernel start a new node where this one left off.

const net = require('net');
const repl = require('repl');
const util = require('util');
const { PassThrough } = require('stream');

const control = new net.Socket({ fd: Number(process.argv[2]), readable: true, writable: true });

// The REPL reads nothing and what it writes (prompts, its own error
// printout) is dropped: requests and answers go over the control socket.
const sink = new PassThrough();
sink.resume();
const server = repl.start({
  input: new PassThrough(),
  output: sink,
  prompt: '',
  terminal: false,
  useGlobal: true,
  ignoreUndefined: true,
  // SIGINT stops a running script (V8's watchdog) and, through the
  // server's SIGINT event, a pending top-level await.
  breakEvalOnSigint: true,
});
// The REPL must not close (it does on a second idle SIGINT): the kernel
// decides when node ends.
server.close = () => {};

// The server's eval runs in a domain and hands errors thrown by the code,
// sync or awaited, to the domain's error handlers, not to its callback.
const domain = server._domain;
if (!domain || typeof domain.on !== 'function') {
  throw new Error('this Node.js REPL has no domain to catch errors with');
}

let current = null; // the request running: {done(err, value)}

domain.on('error', (err) => {
  if (current) {
    current.done(err);
  } else {
    // An error of a timer or callback a past cell left behind.
    process.stderr.write('Uncaught ' + describe(err).traceback.join('\n') + '\n');
  }
});

// SIGINT stops a cell. While the cell's code runs synchronously, V8's SIGINT
// watchdog, which the server's eval starts, stops it. The watchdog is kept
// started all along, so its handler stays on SIGINT: when the last user
// stops it, it leaves SIGINT to end node, as does a JavaScript listener
// when it is taken off, which vm does while a script runs. Between scripts
// the watchdog only notes a SIGINT: a cell waiting on a promise looks for
// one, and ends through the server's SIGINT event, which rejects what it
// awaits. A SIGINT that comes before the cell's code runs is dropped; the
// kernel sends it again until the cell stops.
const contextify = (() => {
  const quiet = process.noDeprecation;
  process.noDeprecation = true; // process.binding warns, into the cell's output
  try {
    return process.binding('contextify');
  } finally {
    process.noDeprecation = quiet;
  }
})();
contextify.startSigintWatchdog();

// takeSigint reports whether SIGINT came since it was last called: the
// watchdog forgets it when stopped while still started by another.
function takeSigint() {
  contextify.startSigintWatchdog();
  return contextify.stopSigintWatchdog();
}

function describe(err) {
  if (err instanceof repl.Recoverable) err = err.err; // incomplete input
  if (err !== null && typeof err === 'object' && typeof err.stack === 'string' && 'message' in err) {
    // Named as other kernels name an interrupt.
    const interrupted = err.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED';
    return {
      ename: interrupted ? 'KeyboardInterrupt' : String(err.name || 'Error'),
      evalue: String(err.message),
      traceback: traceback(err),
    };
  }
  const text = util.inspect(err);
  return { ename: 'Uncaught', evalue: text, traceback: ['Uncaught ' + text] };
}

// traceback splits a stack into lines without the frames of the REPL's
// machinery and of this file. A SyntaxError keeps none: its frames are the
// parser's, and its first lines point at the code.
function traceback(err) {
  const frame = /^\s+at /;
  const ours = /\(node:|\bnode:(repl|vm|domain|internal)|node_helper\.js|^\s+at new Promise \(<anonymous>\)$/;
  const syntax = err.name === 'SyntaxError';
  return err.stack.replace(/\n+$/, '').split('\n').filter((l) => !frame.test(l) || (!syntax && !ours.test(l)));
}

// sandboxd's per-execution env keeps the values it replaced here until it
// puts them back (see Override in internal/contexts/languages.go).
const SAVED_ENV = Symbol.for('sandboxd.savedEnv');

// contextEnv is the env without a per-execution env: the env a new node
// gets if this one ends.
function contextEnv() {
  const env = { ...process.env };
  for (const [k, v] of Object.entries(process[SAVED_ENV] || {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

function flushed(stream) {
  return new Promise((resolve) => stream.write('', resolve));
}

function run(req) {
  return new Promise((resolve) => {
    takeSigint(); // not for this cell: it came before
    const awaiting = setInterval(() => {
      if (takeSigint()) server.emit('SIGINT');
    }, 50);
    let finished = false;
    const request = {
      done(err, value) {
        if (finished) return;
        finished = true;
        clearInterval(awaiting);
        if (current === request) current = null;
        resolve(err === null || err === undefined ? { status: 'ok', result: value } : { status: 'error', ...describe(err) });
      },
    };
    current = request;
    try {
      server.eval(req.code, server.context, req.file || 'cell', (err, value) => request.done(err, value));
    } catch (err) {
      request.done(err);
    }
  });
}

// answer runs a request and answers it, whatever the code did: a request
// left unanswered would leave the kernel waiting.
async function answer(req) {
  let reply;
  try {
    reply = await run(req);
    if (reply.status === 'ok') {
      reply.result = reply.result === undefined ? null : util.inspect(reply.result);
    }
  } catch (err) {
    reply = { status: 'error', ...describe(err) };
  }
  try {
    reply.cwd = process.cwd();
  } catch {
    reply.cwd = null; // removed: the kernel keeps the last one it knew
  }
  reply.env = contextEnv();
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  control.write(JSON.stringify(reply) + '\n');
}

// Requests come one at a time: the next is read after the answer.
let buffered = '';
let queue = Promise.resolve();
control.setEncoding('utf8');
control.on('data', (chunk) => {
  buffered += chunk;
  let nl;
  while ((nl = buffered.indexOf('\n')) >= 0) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    queue = queue.then(() => answer(JSON.parse(line)));
  }
});
// The kernel went away: so does node.
control.on('end', () => process.exit(0));
control.on('error', () => process.exit(0));
control.write(JSON.stringify({ status: 'ready', version: process.version }) + '\n');
